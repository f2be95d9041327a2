"""What each HTTP client is allowed and owns: its request rates (429 beyond) and its text conversations.

A client is its address as the server sees it (uvicorn puts a trusted proxy's X-Forwarded-For there). Both
stores are bounded: a rate window holds at most `limit` times per address, addresses idle for a whole window
are forgotten, and past `max_clients` the least recently seen address is dropped.
"""
from __future__ import annotations

import math
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable

WINDOW = 60.0   # seconds: limits are per minute


class TooManyRequests(RuntimeError):
    """A client went over one of its limits; `retry_after` says in how many seconds it may try again."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))


class RateWindow:
    """At most `limit` events per address in any `window` seconds (a sliding log of event times)."""

    def __init__(self, what: str, limit: int, max_clients: int, window: float = WINDOW,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.what = what
        self.limit = limit
        self.max_clients = max_clients
        self.window = window
        self._clock = clock
        self._times: OrderedDict[str, deque[float]] = OrderedDict()   # least recently seen first
        self._lock = threading.Lock()   # HTTP routes and data channels call from different loops

    def __len__(self) -> int:
        return len(self._times)

    def admit(self, client: str) -> None:
        """Count one event of `client`, or raise TooManyRequests without counting it."""
        with self._lock:
            self._admit(client, self._clock())

    def _admit(self, client: str, now: float) -> None:
        self._forget_idle(now)
        times = self._times.get(client)
        if times is None:
            times = self._times[client] = deque(maxlen=self.limit)
            while len(self._times) > self.max_clients:
                self._times.popitem(last=False)
        self._times.move_to_end(client)
        if len(times) == self.limit and now - times[0] < self.window:
            raise TooManyRequests(f"too many {self.what} from your address (at most {self.limit} a minute); "
                                  "try again later", self.window - (now - times[0]))
        times.append(now)

    def _forget_idle(self, now: float) -> None:
        while self._times:
            client, times = next(iter(self._times.items()))
            if times and now - times[-1] < self.window:
                return
            del self._times[client]


class ClientLimits:
    """Offers and chats per minute per address; `enabled=False` admits everything (tests on loopback)."""

    def __init__(self, offers_per_minute: int, chats_per_minute: int, max_clients: int,
                 enabled: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = enabled
        self.offers = RateWindow("offers", offers_per_minute, max_clients, clock=clock)
        self.chats = RateWindow("messages", chats_per_minute, max_clients, clock=clock)

    def admit_offer(self, client: str) -> None:
        if self.enabled:
            self.offers.admit(client)

    def admit_chat(self, client: str) -> None:
        if self.enabled:
            self.chats.admit(client)


class UnknownConversation(KeyError):
    """A conversation id this service did not hand out, or has forgotten."""


class Conversations:
    """Text conversations of clients without a live session, each under a random id (uuid4) handed out here.

    Only ids issued here are accepted, so one client cannot join another's conversation by naming it; the
    least recently used are forgotten past `capacity`, and `forget(id)` is called so the bot forgets too.
    """

    def __init__(self, capacity: int, forget: Callable[[str], None] | None = None) -> None:
        self.capacity = capacity
        self._forget = forget
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def open(self, conversation_id: str | None) -> str:
        """A new conversation's id for None, else `conversation_id` if it is one of ours."""
        if conversation_id is None:
            conversation_id = uuid.uuid4().hex
            self._ids[conversation_id] = None
            while len(self._ids) > self.capacity:
                forgotten, _ = self._ids.popitem(last=False)
                if self._forget is not None:
                    self._forget(forgotten)
        elif conversation_id not in self._ids:
            raise UnknownConversation(conversation_id)
        self._ids.move_to_end(conversation_id)
        return conversation_id
