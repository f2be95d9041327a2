"""One live viewer: a peer connection, its two tracks, its conversation and its barge-in rule.

A message starts a turn: the bot's reply (worker thread), then speech synthesis and motion planning
(worker thread), then the utterance is placed on the session's timeline. A new message interrupts the
turn in progress at once: queued audio and video are dropped and the avatar goes back to listening.
"""
from __future__ import annotations

import asyncio
import json
import logging
import uuid
from concurrent.futures import Executor
from typing import Any

from aiortc import RTCDataChannel, RTCPeerConnection

from avatar.types import Responder
from streaming.guarded import Engine, GuardedPerformer
from streaming.timeline import Timeline
from streaming.tracks import AvatarAudioTrack, AvatarVideoTrack, EncoderFrames, SessionClock

log = logging.getLogger(__name__)

CHAT_LABEL = "chat"   # the data channel the page sends its text on


class SessionLimitReached(RuntimeError):
    """No room for one more live session."""


class Session:
    """A peer connection streaming one performer, with the conversation that drives it."""

    def __init__(self, pc: RTCPeerConnection, engine: Engine, responder: Responder, frames: EncoderFrames,
                 executor: Executor | None = None, session_id: str | None = None) -> None:
        self.id = session_id or uuid.uuid4().hex
        self.pc = pc
        self.responder = responder
        self.performer = GuardedPerformer(engine.performer(seed=int(uuid.uuid4().int % 2**31)))
        self.clock = SessionClock()
        self.timeline = Timeline()
        self.audio = AvatarAudioTrack(self.clock, self.timeline)
        self.video = AvatarVideoTrack(self.clock, self.timeline, self.performer, frames, executor)
        self.closed = asyncio.Event()
        self._channel: RTCDataChannel | None = None
        self._turn = 0                                  # bumped by every message: older turns stop
        self._speaking: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()

    # --- conversation -------------------------------------------------------------------------------

    async def converse(self, text: str) -> str:
        """Answer `text` and have the avatar speak the answer; interrupts whatever it was saying.

        Raises ValueError (the bot's InvalidMessage) for a message the bot refuses.
        """
        turn = self._barge_in()
        self.send_event(type="user", text=text)
        reply = await asyncio.to_thread(self.responder.reply, text, self.id)
        self.send_event(type="reply", text=reply)
        if turn == self._turn and not self.closed.is_set():
            self._speaking = self._spawn(self._speak(reply, turn))
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

    async def _speak(self, text: str, turn: int) -> None:
        try:
            utterance = await asyncio.to_thread(self.performer.prepare, text)
        except ValueError as error:           # e.g. a reply with nothing speakable in it
            self.send_event(type="error", message=f"could not speak the reply: {error}")
            return
        except Exception:
            log.exception("session %s: speaking failed", self.id)
            self.send_event(type="error", message="sorry, the avatar could not speak that reply")
            return
        if turn != self._turn:
            return
        placement = self.timeline.place(utterance)  # stays placed after its end: later frames are idle
        self.send_event(type="speaking", text=text, duration=round(utterance.speech.duration, 3))
        await self.clock.sleep_until(placement.end_time)
        if turn == self._turn:
            self.send_event(type="done")

    # --- data channel -------------------------------------------------------------------------------

    def attach_channel(self, channel: RTCDataChannel) -> None:
        """Take messages from the page's "chat" channel; answer with JSON events on it."""
        if channel.label != CHAT_LABEL:
            return
        self._channel = channel
        channel.on("message", lambda message: self._spawn(self._on_message(message)))

    async def _on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            try:
                message = message.decode("utf-8")
            except UnicodeDecodeError:
                self.send_event(type="error", message="messages must be UTF-8 text")
                return
        try:
            await self.converse(message)
        except ValueError as error:           # the bot's InvalidMessage: tell the user why
            self.send_event(type="error", message=str(error))
        except Exception:
            log.exception("session %s: turn failed", self.id)
            self.send_event(type="error", message="sorry, something went wrong answering that")

    def send_event(self, **event: Any) -> None:
        channel = self._channel
        if channel is not None and channel.readyState == "open":
            channel.send(json.dumps(event))

    # --- lifetime -----------------------------------------------------------------------------------

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
        await self.pc.close()
        end_session = getattr(self.responder, "end_session", None)  # the bot may forget this conversation
        if end_session is not None:
            end_session(self.id)


class SessionRegistry:
    """The live sessions of one app, bounded; a session leaves when its peer goes away."""

    def __init__(self, max_sessions: int) -> None:
        self.max_sessions = max_sessions
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def check_room(self) -> None:
        if len(self._sessions) >= self.max_sessions:
            raise SessionLimitReached(f"the service is full ({self.max_sessions} live sessions); try again later")

    def add(self, session: Session) -> None:
        self.check_room()
        self._sessions[session.id] = session

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    async def close(self, session_id: str) -> bool:
        """Close and forget a session; False when there was none by that id."""
        session = self._sessions.pop(session_id, None)
        if session is None:
            return False
        await session.close()
        return True

    async def close_all(self) -> None:
        for session_id in list(self._sessions):
            await self.close(session_id)
