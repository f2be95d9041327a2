"""Escalations: an urgent message or a request for a person is logged and POSTed to a webhook, never waited for.

`Alerts.raise_alert` returns at once: the POST runs on the alert pool's own thread with a timeout, a dead or
slow webhook costs the reply nothing, and at most `max_pending` alerts wait (more are logged and dropped).
"""
from __future__ import annotations

import datetime
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

log = logging.getLogger(__name__)

ESCALATIONS = ("urgent", "handover")   # reply kinds that alert a person


class Alerts:
    """Log every escalation; POST it as JSON to `webhook` when one is set."""

    def __init__(self, webhook: str = "", timeout: float = 5.0, max_pending: int = 32) -> None:
        self.webhook = webhook
        self.timeout = timeout
        self.max_pending = max_pending
        self._pending = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="alerts") if webhook else None

    @property
    def pending(self) -> int:
        """Webhook POSTs started and not finished."""
        return self._pending

    def raise_alert(self, kind: str, message: str, reply: str, *, session_id: str | None = None,
                    conversation_id: str | None = None) -> None:
        """Log the escalation and start its webhook POST; returns at once."""
        where = f"session {session_id}" if session_id else f"conversation {conversation_id}"
        log.warning("%s message in %s: the webhook is %s", kind, where, "called" if self._pool else "not set")
        if self._pool is None:
            return
        body = {"kind": kind, "session_id": session_id, "conversation_id": conversation_id, "message": message,
                "reply": reply, "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        with self._lock:
            if self._pending >= self.max_pending:
                log.error("%s alert for %s dropped: %d alerts already wait for the webhook", kind, where,
                          self._pending)
                return
            self._pending += 1
        self._pool.submit(self._post, body)

    def _post(self, body: dict) -> None:
        try:
            response = httpx.post(self.webhook, json=body, timeout=self.timeout)
            if response.status_code >= 400:
                log.error("alert webhook answered %d for a %s alert", response.status_code, body["kind"])
        except httpx.HTTPError as error:
            log.error("alert webhook failed for a %s alert: %s", body["kind"], error)
        finally:
            with self._lock:
                self._pending -= 1

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def respond(responder, text: str, conversation: str) -> tuple[str, str]:
    """(reply, kind) from a responder: the bot's respond() where it has one, else its reply() as an answer."""
    respond_ = getattr(responder, "respond", None)
    if respond_ is None:
        return responder.reply(text, conversation), "answer"
    reply = respond_(text, conversation)
    return reply.text, reply.kind
