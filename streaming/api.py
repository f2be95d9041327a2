"""JSON routes: WebRTC offers, text chat, closing a session, which avatar speaks, health."""
from __future__ import annotations

import asyncio
import logging
from typing import Literal, TypeVar

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ValidationError

from avatar.types import BUILT_IN_NAME

from streaming.services import Services, get_services
from streaming.session import Session, SessionLimitReached

log = logging.getLogger(__name__)
router = APIRouter()
Model = TypeVar("Model", bound=BaseModel)


class Offer(BaseModel):
    sdp: str
    type: Literal["offer"]


class Answer(BaseModel):
    sdp: str
    type: str
    session_id: str


class ChatRequest(BaseModel):
    text: str
    session_id: str | None = None   # a live WebRTC session: its avatar speaks the reply too


class ChatReply(BaseModel):
    reply: str


class AvatarInfo(BaseModel):
    name: str                   # from the avatar's bundle, made by a user: the pages show it as text only
    built_in: bool              # the avatar that ships with the project
    consent: list[str]          # consent records of a custom avatar, in words; empty for the built-in one


async def read_json(request: Request, model: type[Model]) -> Model:
    """The body as `model`: 415 unless it is JSON, 422 with the first problem when it does not fit."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise HTTPException(415, f"send JSON (Content-Type: application/json), not {content_type or 'nothing'!r}")
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise HTTPException(422, f"bad request body: {where}: {first['msg']}") from None


def check_offer_sdp(sdp: str) -> None:
    """Reject what is plainly not an SDP offer before building a peer connection for it."""
    lines = [line.strip() for line in sdp.strip().splitlines()]
    if not lines or lines[0] != "v=0":
        raise HTTPException(400, "malformed SDP offer: it must start with 'v=0'")
    if not any(line.startswith("m=") for line in lines):
        raise HTTPException(400, "malformed SDP offer: it has no media section (m= line)")


@router.post("/offer", response_model=Answer)
async def offer(request: Request, services: Services = Depends(get_services)) -> Answer:
    """An SDP offer in, the answer out: a new session streaming the avatar to the caller."""
    body = await read_json(request, Offer)
    check_offer_sdp(body.sdp)
    try:
        services.sessions.check_room()
    except SessionLimitReached as error:
        raise HTTPException(503, str(error)) from None

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    session = Session(pc, services.engine, services.responder, services.frames, services.render_pool)
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body.sdp, type=body.type))
        kinds = {t.kind for t in pc.getTransceivers()}
        if not kinds & {"audio", "video"}:
            raise ValueError("it offers neither audio nor video")
        if "audio" in kinds:
            pc.addTrack(session.audio)
        if "video" in kinds:
            pc.addTrack(session.video)
        await pc.setLocalDescription(await pc.createAnswer())
    except Exception as error:  # aiortc raises ValueError and friends for SDP it cannot use
        await session.close()
        raise HTTPException(400, f"malformed SDP offer: {error}") from None
    try:
        services.sessions.add(session)
    except SessionLimitReached as error:
        await session.close()
        raise HTTPException(503, str(error)) from None

    pc.on("datachannel", session.attach_channel)

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        if pc.connectionState in ("failed", "closed"):
            log.info("session %s: peer %s", session.id, pc.connectionState)
            await services.sessions.close(session.id)

    local = pc.localDescription
    return Answer(sdp=local.sdp, type=local.type, session_id=session.id)


@router.post("/chat", response_model=ChatReply)
async def chat(request: Request, services: Services = Depends(get_services)) -> ChatReply:
    """Text in, the bot's reply out; with a live session's id, that session's avatar also speaks it."""
    body = await read_json(request, ChatRequest)
    session = None
    if body.session_id is not None:
        session = services.sessions.get(body.session_id)
        if session is None:
            raise HTTPException(404, f"unknown session {body.session_id!r} (it may have ended)")
    try:
        if session is not None:
            reply = await session.converse(body.text)
        else:
            reply = await asyncio.to_thread(services.responder.reply, body.text, "http")
    except ValueError as error:  # the bot's InvalidMessage
        raise HTTPException(422, str(error)) from None
    return ChatReply(reply=reply)


@router.delete("/session/{session_id}")
async def close_session(session_id: str, services: Services = Depends(get_services)) -> dict:
    """Hang up a session (the page does this when it leaves)."""
    if not await services.sessions.close(session_id):
        raise HTTPException(404, f"unknown session {session_id!r} (it may have ended)")
    return {"closed": session_id}


@router.get("/avatar", response_model=AvatarInfo)
async def avatar_info(services: Services = Depends(get_services)) -> AvatarInfo:
    """Which avatar speaks and with whose consent: the pages put it beside their AI notice."""
    engine = services.engine
    return AvatarInfo(name=engine.name, built_in=engine.name == BUILT_IN_NAME, consent=list(engine.consent))


@router.get("/health")
async def health(services: Services = Depends(get_services)) -> dict:
    return {"status": "ok", "sessions": len(services.sessions), "max_sessions": services.sessions.max_sessions}
