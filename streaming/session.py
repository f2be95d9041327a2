"""One live viewer: a peer connection, its two tracks, its conversation and its barge-in rule.

A message starts a turn: the bot's reply (bot pool), then speech synthesis and motion planning (speech
pool), piece by piece, each piece placed on the session's timeline as soon as it is ready. A new message
interrupts the turn in progress at once: queued audio and video are dropped and the avatar goes back to
listening, and the pieces of the old reply still being prepared are not placed.
A message is checked (size, UTF-8, emptiness, the client's rate) before it is echoed or answered.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from aiortc import RTCDataChannel, RTCPeerConnection

from avatar.types import SAMPLE_RATE, Responder, Utterance
from streaming.alerts import ESCALATIONS, Alerts, respond
from streaming.clients import ClientLimits, TooManyRequests
from streaming.guarded import Engine, GuardedPerformer
from streaming.metrics import ServiceMetrics
from streaming.peer import Refused, watch_peer
from streaming.shared_idle import SharedIdle
from streaming.timeline import Placement, Timeline
from streaming.tracks import AvatarAudioTrack, AvatarVideoTrack, EncoderFrames, FrameLoad, SessionClock
from streaming.workers import Busy, Workers

log = logging.getLogger(__name__)

CHAT_LABEL = "chat"   # the data channel the page sends its text on


def _resolve(future: asyncio.Future, value: Any) -> None:
    if not future.done():
        future.set_result(value)


class SessionLimitReached(RuntimeError):
    """No room for one more live session."""


class ForeignSession(LookupError):
    """A session id made by another instance of the service: its requests must be routed there."""


class BadMessage(ValueError):
    """A chat message refused before it reaches the bot; the text says why, for the user."""


@dataclass(frozen=True)
class MessageRules:
    max_chars: int = 1000            # characters of text
    max_bytes: int = 256 * 1024      # bytes as received on the data channel


def check_text(text: str, max_chars: int) -> str:
    """`text` if it is something to answer, else BadMessage in plain words."""
    if not text.strip():
        raise BadMessage("The message is empty: please type something.")
    if len(text) > max_chars:
        raise BadMessage(f"The message is too long ({len(text)} characters; at most {max_chars}).")
    return text


def check_message(message: str | bytes | Refused, rules: MessageRules) -> str:
    """The text of a data-channel message, or BadMessage."""
    if isinstance(message, Refused):
        raise BadMessage(message.reason)
    if isinstance(message, bytes):
        if len(message) > rules.max_bytes:
            raise BadMessage(f"The message is too large ({len(message)} bytes; at most {rules.max_bytes}).")
        try:
            message = message.decode("utf-8")
        except UnicodeDecodeError:
            raise BadMessage("Messages must be UTF-8 text.") from None
    return check_text(message, rules.max_chars)


class Session:
    """A peer connection streaming one performer, with the conversation that drives it."""

    def __init__(self, pc: RTCPeerConnection, engine: Engine, responder: Responder, frames: EncoderFrames,
                 workers: Workers, executor: Executor | None = None, session_id: str | None = None, *,
                 client: str = "unknown", limits: ClientLimits | None = None,
                 rules: MessageRules = MessageRules(), alerts: Alerts | None = None,
                 load: FrameLoad | None = None, metrics: ServiceMetrics | None = None,
                 shared: SharedIdle | None = None) -> None:
        self.id = session_id or uuid.uuid4().hex
        self.pc = pc
        self.client = client                            # the peer's address, for per-client limits
        self.responder = responder
        self.workers = workers
        self.limits = limits
        self.rules = rules
        self.alerts = alerts
        self.metrics = metrics
        self.performer = GuardedPerformer(engine.performer(seed=int(uuid.uuid4().int % 2**31)))
        self.clock = SessionClock()
        self.timeline = Timeline(self.clock.elapsed)
        on_encode = None if metrics is None else metrics.frame_seconds.labels("encode_audio").observe
        self.audio = AvatarAudioTrack(self.clock, self.timeline, on_encode)
        on_render = None if metrics is None else metrics.frame_seconds.labels("render").observe
        self.video = AvatarVideoTrack(self.clock, self.timeline, self.performer, frames, executor, load, on_render,
                                      shared)
        self.closed = asyncio.Event()
        self.started = time.monotonic()
        self.messages = 0                               # chat messages taken for an answer
        self._channel: RTCDataChannel | None = None
        self._turn = 0                                  # bumped by every message: older turns stop
        self._speaking: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()

    # --- conversation -------------------------------------------------------------------------------

    async def converse(self, text: str) -> str:
        """Answer `text` and have the avatar speak the answer; interrupts whatever it was saying.

        Raises Busy at once when the bot's queue is full (nothing is interrupted then), and ValueError
        (the bot's InvalidMessage) for a message the bot refuses.
        """
        if self.workers.bot.full:
            raise Busy("busy, try again in a moment")
        arrived = time.monotonic()
        turn = self._barge_in()
        self.messages += 1
        self.send_event(type="user", text=text)
        reply, kind = await self.workers.bot.run(respond, self.responder, text, self.id)
        if self.metrics is not None:
            self.metrics.reply_seconds.observe(time.monotonic() - arrived)
            self.metrics.chats.labels(kind).inc()
        self.send_event(type="reply", text=reply)
        if kind in ESCALATIONS:               # urgent, or a request for a person: the page and a person are told
            self.send_event(type=kind, text=reply)
            if self.alerts is not None:
                self.alerts.raise_alert(kind, text, reply, session_id=self.id)
        if turn == self._turn and not self.closed.is_set():
            self._speaking = self._spawn(self._speak(reply, turn, arrived, time.monotonic()))
        return reply

    def _barge_in(self) -> int:
        self._turn += 1
        if self._speaking is not None and not self._speaking.done():
            # Speaking, or about to: its planning may have moved the planner already, so reset it too.
            self._speaking.cancel()
            self.timeline.clear()
            self.performer.interrupt()
            self.send_event(type="interrupted")
        return self._turn

    async def _speak(self, text: str, turn: int, arrived: float, replied: float) -> None:
        """Synthesise and plan `text` piece by piece on the speech pool, each piece placed on the timeline as soon
        as it is ready: the first clause is on air while the rest is prepared. The message arrived at `arrived`
        and its reply was ready at `replied` (time.monotonic()); the "speaking" event says where the time went."""
        loop = asyncio.get_running_loop()
        first: asyncio.Future[tuple[Placement, float]] = loop.create_future()
        epoch = self.timeline.epoch
        placement: Placement | None = None

        def accept(segment: Utterance, more: bool) -> bool:           # on the speech worker
            nonlocal placement
            if placement is None:
                placement = self.timeline.place(segment, more, epoch=epoch)
                if placement is not None:
                    loop.call_soon_threadsafe(_resolve, first, (placement, time.monotonic()))
                return placement is not None
            return self.timeline.extend(placement, segment, more) is not None

        job = asyncio.ensure_future(self.workers.speech.run(self.performer.speak, text, accept))
        try:
            await asyncio.wait({job, first}, return_when=asyncio.FIRST_COMPLETED)
            if first.done():
                self._on_air(text, *first.result(), arrived, replied)
            await job                                                   # the remaining pieces
            if not first.done() and placement is not None:              # placed as the job ended: not told yet
                first.cancel()
                self._on_air(text, placement, time.monotonic(), arrived, replied)
        except Busy:
            self.send_event(type="error", message="busy, try again in a moment")
        except ValueError as error:           # e.g. a reply with nothing speakable in it
            self.send_event(type="error", message=f"could not speak the reply: {error}")
        except asyncio.CancelledError:
            job.cancel()
            raise
        except Exception:
            log.exception("session %s: speaking failed", self.id)
            self.send_event(type="error", message="sorry, the avatar could not speak that reply")
        finally:
            if placement is not None:
                self.timeline.finish(placement)                         # no more pieces: hold no longer
        if placement is None or turn != self._turn:
            return
        await self.clock.sleep_until(placement.end_time)
        if turn == self._turn:
            self.send_event(type="done", duration=round((placement.end_sample - placement.start_sample)
                                                        / SAMPLE_RATE, 3))

    def _on_air(self, text: str, placement: Placement, placed: float, arrived: float, replied: float) -> None:
        """The reply's first piece is placed: tell the metrics and the client, with the time each stage took."""
        first_sample_due = self.clock.start() + placement.start_sample / SAMPLE_RATE
        if self.metrics is not None:
            self.metrics.first_audio_seconds.observe(max(0.0, first_sample_due - arrived))
        timing = {"bot": replied - arrived, "speech": placed - replied, "boundary": first_sample_due - placed}
        self.send_event(type="speaking", text=text,
                        timing_ms={stage: round(1000 * max(0.0, t), 1) for stage, t in timing.items()})

    # --- data channel -------------------------------------------------------------------------------

    def attach_channel(self, channel: RTCDataChannel) -> None:
        """Take messages from the page's "chat" channel; answer with JSON events on it."""
        if channel.label != CHAT_LABEL:
            return
        self._channel = channel
        channel.on("message", lambda message: self._spawn(self._on_message(message)))

    async def _on_message(self, message: str | bytes | Refused) -> None:
        try:
            text = check_message(message, self.rules)
            if self.limits is not None:
                self.limits.admit_chat(self.client)
            await self.converse(text)
        except (BadMessage, TooManyRequests, Busy, ValueError) as error:   # ValueError: the bot's InvalidMessage
            if self.metrics is not None:
                self.metrics.chats.labels("refused").inc()
            self.send_event(type="error", message=str(error))
        except Exception:
            log.exception("session %s: turn failed", self.id)
            self.send_event(type="error", message="sorry, something went wrong answering that")

    def send_event(self, **event: Any) -> None:
        channel = self._channel
        if channel is not None and channel.readyState == "open":
            try:
                channel.send(json.dumps(event))
            except Exception as error:  # e.g. over the peer's max-message-size: the event is lost, not the turn
                log.warning("session %s: could not send a %s event: %s", self.id, event.get("type"), error)

    # --- lifetime -----------------------------------------------------------------------------------

    def summary(self, reason: str) -> dict[str, Any]:
        """What the end-of-session log line records."""
        return {"session": self.id, "client": self.client, "reason": reason,
                "seconds": round(time.monotonic() - self.started, 1), "messages": self.messages,
                "frames": self.video.frames_sent, "frames_shared": self.video.frames_shared,
                "frames_skipped": self.video.frames_skipped, "frames_late": self.video.frames_late}

    def figures(self) -> dict[str, Any]:
        """What /metrics reports of this session now."""
        return {"session": self.id, "fps": self.video.recent_fps(), "frames": self.video.frames_sent,
                "frames_shared": self.video.frames_shared, "frames_skipped": self.video.frames_skipped,
                "frames_late": self.video.frames_late}

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        """Stop the tracks and the turn in progress and close the peer connection (idempotent)."""
        if self.closed.is_set():
            return
        self.closed.set()
        self._turn += 1
        for task in list(self._tasks):
            task.cancel()
        self.audio.stop()
        self.video.stop()
        try:
            await self.pc.close()
        except Exception as error:  # aiortc can raise again closing a connection a bad offer left half-made
            log.warning("session %s: closing the peer connection raised %r", self.id, error)
        end_session = getattr(self.responder, "end_session", None)  # the bot may forget this conversation
        if end_session is not None:
            self.workers.bot.post(end_session, self.id)  # off the loop: it waits for the bot's lock


class SessionRegistry:
    """The live sessions of one app, bounded; a session leaves when its peer goes away or falls silent."""

    def __init__(self, max_sessions: int, connect_timeout: float = 15.0, silence_timeout: float = 5.0,
                 max_late_share: float = 1.0, instance: str = "") -> None:
        """Session ids begin with `instance` ("" or a random one: each start of the service is an instance),
        so a request for another instance's session is told so rather than "unknown"."""
        self.instance = instance or uuid.uuid4().hex[:8]
        self.max_sessions = max_sessions
        self.connect_timeout = connect_timeout
        self.silence_timeout = silence_timeout
        self.max_late_share = max_late_share
        self.load = FrameLoad()             # the sessions' video tracks record into it
        self._sessions: dict[str, Session] = {}
        self._watchers: dict[str, asyncio.Task] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def check_room(self) -> None:
        """SessionLimitReached when another session would not fit: the slots are taken, or the live sessions'
        video already falls behind (more than `max_late_share` of recent frames late: the CPU is spent)."""
        if len(self._sessions) >= self.max_sessions:
            raise SessionLimitReached(f"the service is full ({self.max_sessions} live sessions); try again later")
        if self._sessions and self.load.late_share() > self.max_late_share:
            raise SessionLimitReached("the service is busy: its live sessions' video is falling behind; "
                                      "try again later")

    def count(self, client: str) -> int:
        """Live sessions of one client address."""
        return sum(1 for session in self._sessions.values() if session.client == client)

    def add(self, session: Session) -> None:
        """Hold a slot for `session` while its peer connects and then keeps talking to us."""
        self.check_room()
        self._sessions[session.id] = session
        log.info("session start %s", json.dumps({"session": session.id, "client": session.client,
                                                  "live": len(self._sessions)}))
        self._watchers[session.id] = asyncio.get_running_loop().create_task(self._watch(session))

    async def _watch(self, session: Session) -> None:
        reason = await watch_peer(session.pc, self.connect_timeout, self.silence_timeout)
        self._watchers.pop(session.id, None)  # this task is ending: close() must not cancel it
        await self.close(session.id, reason)

    def new_id(self) -> str:
        return f"{self.instance}-{uuid.uuid4().hex}"

    def get(self, session_id: str) -> Session | None:
        """The live session by that id; None if it is not (or no longer) live; ForeignSession when another
        instance made it."""
        session = self._sessions.get(session_id)
        if session is None:
            instance, dash, _ = session_id.rpartition("-")
            if dash and instance != self.instance:
                raise ForeignSession(f"session {session_id!r} belongs to instance {instance!r}, not this one "
                                     f"({self.instance!r}): send its requests to the instance that answered its offer")
        return session

    def figures(self) -> list[dict[str, Any]]:
        """Each live session's figures, for /metrics."""
        return [session.figures() for session in list(self._sessions.values())]

    async def close(self, session_id: str, reason: str = "closed by the service") -> bool:
        """Close and forget a session, logging why once; False when there was none by that id (ForeignSession
        when another instance made it)."""
        self.get(session_id)
        session = self._sessions.pop(session_id, None)
        if session is None:
            return False
        watcher = self._watchers.pop(session_id, None)
        if watcher is not None:
            watcher.cancel()
        log.info("session end %s", json.dumps(session.summary(reason)))
        await session.close()
        return True

    async def close_all(self) -> None:
        for session_id in list(self._sessions):
            await self.close(session_id, "the service is stopping")
