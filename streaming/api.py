"""JSON routes: WebRTC offers, text chat, closing a session, which avatar speaks, ICE servers; health,
readiness and metrics."""
from __future__ import annotations

import logging
import math
import time
from typing import Literal, TypeVar

from aiortc import RTCPeerConnection, RTCSessionDescription
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from avatar.types import BUILT_IN_NAME

from streaming.alerts import ESCALATIONS, respond
from streaming.clients import TooManyRequests, UnknownConversation
from streaming.codecs import AvatarVp8Encoder, send_only_ours, take_keyframe_request, use_encoder
from streaming.shared_idle import viewer_can_take
from streaming.offers import BadOffer, check_offer
from streaming.peer import advertise_max_message_size, guard_channel_messages
from streaming.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from streaming.services import STARTING_RETRY_AFTER, Services, get_services
from streaming.session import ForeignSession, MessageRules, Session, SessionLimitReached, check_text
from streaming.workers import BUSY_RETRY_AFTER, Busy

router = APIRouter()
log = logging.getLogger(__name__)
Model = TypeVar("Model", bound=BaseModel)
FULL_RETRY_AFTER = 5   # seconds a caller is told to wait when every session slot is taken


class Offer(BaseModel):
    sdp: str
    type: Literal["offer"]


class Answer(BaseModel):
    sdp: str
    type: str
    session_id: str


class ChatRequest(BaseModel):
    text: str
    session_id: str | None = None        # a live WebRTC session: its avatar speaks the reply too
    conversation_id: str | None = None   # without a session: continue this conversation (from an earlier reply)


class ChatReply(BaseModel):
    reply: str
    conversation_id: str | None = None   # without a session: send it back to continue the conversation
    kind: str | None = None              # answer, fallback, urgent (emergency reply) or handover (a person asked for)


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


def client_of(request: Request) -> str:
    """The caller's address (a trusted proxy's X-Forwarded-For, as uvicorn resolves it)."""
    return request.client.host if request.client is not None else "unknown"


def refuse(status: int, detail: str, retry_after: int) -> HTTPException:
    return HTTPException(status, detail, headers={"Retry-After": str(retry_after)})


def admit(check, *args) -> None:
    """Run a per-client limit check; 429 with Retry-After beyond it."""
    try:
        check(*args)
    except TooManyRequests as error:
        raise refuse(429, str(error), error.retry_after) from None


@router.post("/offer", response_model=Answer)
async def offer(request: Request, services: Services = Depends(get_services)) -> Answer:
    """An SDP offer in, the answer out: a new session streaming the avatar to the caller."""
    try:
        answer = await answer_offer(request, services)
    except HTTPException as error:
        services.metrics.offer(error.status_code)
        raise
    services.metrics.offer(200)
    return answer


async def answer_offer(request: Request, services: Services) -> Answer:
    settings = services.settings
    client = client_of(request)
    body = await read_json(request, Offer)
    admit(services.limits.admit_offer, client)
    try:
        kinds = check_offer(body.sdp)
    except BadOffer as error:
        raise HTTPException(400, f"malformed SDP offer: {error}") from None
    if settings.client_limits and services.sessions.count(client) >= settings.max_sessions_per_client:
        raise refuse(429, f"too many live sessions from your address (at most {settings.max_sessions_per_client})",
                     math.ceil(settings.connect_timeout))
    try:
        services.sessions.check_room()
    except SessionLimitReached as error:
        raise refuse(503, str(error), FULL_RETRY_AFTER) from None

    return await services.media.run(open_session(services, body, client, kinds))


async def open_session(services: Services, offer: Offer, client: str, kinds: set[str]) -> Answer:
    """On the media loop: a peer connection and session for a checked offer of media `kinds`, and the answer."""
    settings = services.settings
    pc = RTCPeerConnection(services.ice.for_peer())
    session = Session(pc, services.engine, services.responder, services.frames, services.workers,
                      services.render_pool, services.sessions.new_id(), client=client, limits=services.limits,
                      rules=MessageRules(settings.max_message_chars, settings.max_channel_message_bytes),
                      alerts=services.alerts, load=services.sessions.load, metrics=services.metrics,
                      shared=services.shared_idle)
    try:
        for track in (session.audio, session.video):   # our tracks and codecs, not the offer's: errors are ours
            if track.kind in kinds:
                transceiver = pc.addTransceiver(track, direction="sendonly")
                send_only_ours(transceiver)
                if track.kind == "video":
                    encoder, sender = AvatarVp8Encoder(), transceiver.sender
                    use_encoder(sender, encoder)
                    session.video.encode_with(encoder, lambda sender=sender: take_keyframe_request(sender),
                                              services.metrics.frame_seconds.labels("encode_video").observe)
                    if services.shared_idle is not None:
                        session.video.may_share = viewer_can_take(sender)
    except Exception:
        await session.close()
        raise
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type=offer.type))
        guard_channel_messages(pc, settings.max_channel_message_bytes)
        await pc.setLocalDescription(await pc.createAnswer())
    except Exception as error:  # whatever aiortc raises on an offer it cannot complete: the offer is bad
        await session.close()   # never raises: a failing pc.close() is logged
        raise HTTPException(400, f"malformed SDP offer: aiortc could not answer it ({error or type(error).__name__})") from None
    except BaseException:       # cancelled (the client went away, the service stops): nothing may stay open
        await session.close()
        raise
    if services.ice.policy == "relay" and " typ relay" not in pc.localDescription.sdp:
        await session.close()   # an answer without a relay candidate could never connect
        log.warning("no TURN relay candidate for a new session: is the TURN server %s reachable?",
                    [server.urls[0] for server in services.ice.servers if server.is_turn])
        raise refuse(503, "the service's TURN relay cannot be reached; try again later", FULL_RETRY_AFTER)
    try:
        services.sessions.add(session)
    except SessionLimitReached as error:
        await session.close()
        raise refuse(503, str(error), FULL_RETRY_AFTER) from None

    pc.on("datachannel", session.attach_channel)

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        if pc.connectionState in ("failed", "closed"):
            await services.sessions.close(session.id, f"connection {pc.connectionState}")

    local = pc.localDescription
    sdp = advertise_max_message_size(local.sdp, settings.max_channel_message_bytes)
    return Answer(sdp=sdp, type=local.type, session_id=session.id)


@router.post("/chat", response_model=ChatReply, response_model_exclude_none=True)
async def chat(request: Request, services: Services = Depends(get_services)) -> ChatReply:
    """Text in, the bot's reply out; with a live session's id, that session's avatar also speaks it.

    Without a session, each client has its own conversation: the reply names it (`conversation_id`) and
    the client sends that back to continue it.
    """
    body = await read_json(request, ChatRequest)
    session = None
    if body.session_id is not None:
        session = live_session(services, body.session_id)
    try:
        admit(services.limits.admit_chat, client_of(request))
    except HTTPException:
        services.metrics.chats.labels("refused").inc()
        raise
    try:
        text = check_text(body.text, services.settings.max_message_chars)
        if session is not None:
            return ChatReply(reply=await services.media.run(session.converse(text)))   # its events say the kind
        try:
            conversation = services.conversations.open(body.conversation_id)
        except UnknownConversation:
            raise HTTPException(404, f"unknown conversation {body.conversation_id!r} (it may have been forgotten; "
                                     "send none to start a new one)") from None
        arrived = time.monotonic()
        reply, kind = await services.workers.bot.run(respond, services.responder, text, conversation)
        services.metrics.reply_seconds.observe(time.monotonic() - arrived)
        services.metrics.chats.labels(kind).inc()
        if kind in ESCALATIONS:
            services.alerts.raise_alert(kind, text, reply, conversation_id=conversation)
        return ChatReply(reply=reply, conversation_id=conversation, kind=kind)
    except Busy as error:
        services.metrics.chats.labels("refused").inc()
        raise refuse(503, str(error), BUSY_RETRY_AFTER) from None
    except ValueError as error:  # BadMessage, or the bot's InvalidMessage
        services.metrics.chats.labels("refused").inc()
        raise HTTPException(422, str(error)) from None


def live_session(services: Services, session_id: str) -> Session:
    """The live session by that id: 404 when there is none, 409 when another instance of the service made it."""
    try:
        session = services.sessions.get(session_id)
    except ForeignSession as error:
        raise HTTPException(409, str(error)) from None
    if session is None:
        raise HTTPException(404, f"unknown session {session_id!r} (it may have ended)")
    return session


@router.delete("/session/{session_id}")
async def close_session(session_id: str, services: Services = Depends(get_services)) -> dict:
    """Hang up a session (the page does this when it leaves)."""
    live_session(services, session_id)
    if not await services.media.run(services.sessions.close(session_id, "hung up (DELETE)")):
        raise HTTPException(404, f"unknown session {session_id!r} (it may have ended)")
    return {"closed": session_id}


@router.get("/avatar", response_model=AvatarInfo)
async def avatar_info(services: Services = Depends(get_services)) -> AvatarInfo:
    """Which avatar speaks and with whose consent: the pages put it beside their AI notice."""
    engine = services.engine
    return AvatarInfo(name=engine.name, built_in=engine.name == BUILT_IN_NAME, consent=list(engine.consent))


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    """Liveness: 200 while the process works (also while it is still loading), 503 once loading failed."""
    services = getattr(request.app.state, "services", None)
    if services is not None:
        return JSONResponse({"status": "ok", "sessions": len(services.sessions),
                             "max_sessions": services.sessions.max_sessions})
    startup = request.app.state.startup
    if startup.error is not None:
        return JSONResponse({"status": "failed", "detail": startup.describe()}, status_code=503)
    return JSONResponse({"status": "starting", "detail": startup.describe()})


@router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    """Readiness, for a load balancer: 200 when the bot and the avatar are loaded and a new session would be
    taken; 503 with the reason while loading, when every slot is taken or when the live video falls behind."""
    services = getattr(request.app.state, "services", None)
    if services is None:
        return JSONResponse({"ready": False, "detail": request.app.state.startup.describe()}, status_code=503,
                            headers={"Retry-After": str(STARTING_RETRY_AFTER)})
    figures = {"instance": services.sessions.instance, "sessions": len(services.sessions),
               "max_sessions": services.sessions.max_sessions}
    try:
        services.sessions.check_room()
    except SessionLimitReached as error:
        return JSONResponse({"ready": False, "detail": str(error), **figures}, status_code=503,
                            headers={"Retry-After": str(FULL_RETRY_AFTER)})
    return JSONResponse({"ready": True, **figures})


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus' text format (also while loading: the process's own figures are there from the start)."""
    return Response(request.app.state.metrics.render(), media_type=METRICS_CONTENT_TYPE)


@router.get("/ice")
async def ice(services: Services = Depends(get_services)) -> dict:
    """The page's RTCPeerConnection configuration: STUN/TURN servers (TURN credentials minted for this page and
    valid for a while) and the ICE transport policy."""
    return services.ice.for_page()
