"""An aiortc client of the service, for tests and benchmarks: connects like the page does and measures.

It receives the avatar's video and audio, records when each frame arrived and how loud each audio frame
was, and talks over the "chat" data channel.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import httpx
import numpy as np
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

SILENCE_RMS = 50.0   # int16 RMS below this counts as silence (speech is in the thousands)


@dataclass
class Received:
    """What arrived, with arrival times from time.monotonic()."""

    video_times: list[float] = field(default_factory=list)
    video_sizes: list[tuple[int, int]] = field(default_factory=list)
    video_luma: list[float] = field(default_factory=list)             # mean brightness (every 4th pixel) a frame
    video_crops: list[np.ndarray] = field(default_factory=list)       # luma of the watched box, per frame
    audio: list[tuple[float, float]] = field(default_factory=list)    # (arrival time, RMS)
    # every audio RTP packet as it reaches the socket, before aiortc's jitter buffer: (time, payload bytes)
    audio_packets: list[tuple[float, int]] = field(default_factory=list)
    # video packets asked again (NACK) and pictures reported lost (PLI) by this client: (time, count or 1)
    nacks: list[tuple[float, int]] = field(default_factory=list)
    plis: list[float] = field(default_factory=list)

    def video_fps(self, since: float, until: float) -> float:
        n = sum(1 for t in self.video_times if since <= t < until)
        return n / (until - since)

    def recent_fps(self, seconds: float) -> float:
        """Video frames per second over the last `seconds`."""
        now = time.monotonic()
        return self.video_fps(now - seconds, now)

    def first_loud_audio(self, since: float, threshold: float = SILENCE_RMS) -> float | None:
        """Arrival time of the first non-silent audio frame after `since`."""
        return next((t for t, rms in self.audio if t >= since and rms > threshold), None)

    def first_speech_packet(self, since: float, quiet_packets: int = 3) -> float | None:
        """Arrival time of the first audio packet after `since` larger than any of the `quiet_packets` before it
        (which must be silent: in settled silence the service sends one packet every 400 ms): the service's
        silence packets are 1 byte (DTX) or 3, 10 ms of speech tens (this is before the client's jitter buffer)."""
        quiet = [size for t, size in self.audio_packets if t < since][-quiet_packets:]
        if not quiet:
            return None
        return next((t for t, size in self.audio_packets if t >= since and size > max(quiet) + 8), None)

    def audio_rms(self, since: float, until: float) -> float:
        values = [rms for t, rms in self.audio if since <= t < until]
        return float(np.sqrt(np.mean(np.square(values)))) if values else 0.0


async def ice_configuration(base_url: str) -> RTCConfiguration:
    """The service's ICE servers and policy as the page gets them (GET /ice), for an aiortc client."""
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"{base_url.rstrip('/')}/ice")
    response.raise_for_status()
    config = response.json()
    servers = [RTCIceServer(urls=server["urls"], username=server.get("username"),
                            credential=server.get("credential")) for server in config["iceServers"]]
    return RTCConfiguration(iceServers=servers, iceTransportPolicy=RTCIceTransportPolicy(config["iceTransportPolicy"]))


class AvatarProbe:
    """One WebRTC session with the service at `base_url`."""

    def __init__(self, base_url: str, watch_box: tuple[int, int, int, int] | None = None,
                 configuration: RTCConfiguration | None = None, video_codecs: list[str] | None = None) -> None:
        """`watch_box` (x0, y0, x1, y1): keep that part of every frame's luma, e.g. the mouth. `configuration`:
        STUN/TURN servers and policy (default none: host candidates only; see `ice_configuration`).
        `video_codecs`: the MIME types the offer lists for video, in this order (default: aiortc's)."""
        self.video_codecs = video_codecs
        self.base_url = base_url.rstrip("/")
        self.watch_box = watch_box
        self.pc = RTCPeerConnection(configuration or RTCConfiguration(iceServers=[]))
        self.answer_sdp: str | None = None
        self.received = Received()
        self.events: asyncio.Queue[dict] = asyncio.Queue()
        self.log: list[dict] = []                                     # every event, in order
        self.session_id: str | None = None
        self._channel_open = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    async def connect(self, timeout: float = 20.0) -> None:
        """Offer recvonly audio + video and a "chat" channel; return once the channel is open."""
        pc = self.pc
        video = pc.addTransceiver("video", direction="recvonly")
        if self.video_codecs is not None:
            capabilities = RTCRtpReceiver.getCapabilities("video").codecs
            video.setCodecPreferences([codec for mime in self.video_codecs for codec in capabilities
                                       if codec.mimeType.lower() == mime.lower()])
        pc.addTransceiver("audio", direction="recvonly")
        self.channel = pc.createDataChannel("chat")
        self.channel.on("open", self._channel_open.set)
        self.channel.on("message", self._on_message)
        pc.on("track", self._on_track)
        await pc.setLocalDescription(await pc.createOffer())
        async with httpx.AsyncClient(timeout=timeout) as http:
            response = await http.post(f"{self.base_url}/offer", json={"sdp": pc.localDescription.sdp,
                                                                       "type": pc.localDescription.type})
        response.raise_for_status()
        answer = response.json()
        self.session_id = answer["session_id"]
        self.answer_sdp = answer["sdp"]
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        if self.channel.readyState != "open":
            await asyncio.wait_for(self._channel_open.wait(), timeout)

    async def start(self, timeout: float = 20.0, settle: float = 0.0) -> None:
        """connect(), wait until video and audio arrive, then let the stream run `settle` seconds."""
        await self.connect(timeout)
        await self.wait_for_media(timeout)
        await asyncio.sleep(settle)

    def _on_message(self, message: str) -> None:
        event = json.loads(message)
        self.log.append(event)
        self.events.put_nowait(event)

    def _on_track(self, track: MediaStreamTrack) -> None:
        consume = self._consume_video if track.kind == "video" else self._consume_audio
        self._tasks.append(asyncio.ensure_future(consume(track)))
        receiver = next(r for r in self.pc.getReceivers() if r.track is track)
        if track.kind == "video":
            self._watch_feedback(receiver)
        else:
            self._watch_packets(receiver)

    def _watch_packets(self, receiver) -> None:
        """Record when each audio RTP packet reaches this client, and its size, before the jitter buffer holds
        it (aiortc's audio receiver releases a packet once 4 more have come: 40 ms of the service's 10-ms packets)."""
        handle = receiver._handle_rtp_packet

        async def handle_rtp_packet(packet, arrival_time_ms: int) -> None:
            self.received.audio_packets.append((time.monotonic(), len(packet.payload)))
            await handle(packet, arrival_time_ms)

        receiver._handle_rtp_packet = handle_rtp_packet

    def _watch_feedback(self, receiver) -> None:
        """Record when this client's video receiver asks for lost packets (NACK) or a new picture (PLI):
        aiortc's receiver asks for a keyframe only when a frame cannot be completed, and shows nothing until
        it comes."""
        send_nack, send_pli = receiver._send_rtcp_nack, receiver._send_rtcp_pli

        async def nack(media_ssrc: int, lost: list[int]) -> None:
            self.received.nacks.append((time.monotonic(), len(lost)))
            await send_nack(media_ssrc, lost)

        async def pli(media_ssrc: int) -> None:
            self.received.plis.append(time.monotonic())
            await send_pli(media_ssrc)

        receiver._send_rtcp_nack, receiver._send_rtcp_pli = nack, pli

    async def video_packets_lost(self) -> int:
        """Video RTP packets never received (retransmissions count as received), from the receiver's stats."""
        for receiver in self.pc.getReceivers():
            if receiver.track is not None and receiver.track.kind == "video":
                report = await receiver.getStats()
                return sum(stats.packetsLost for stats in report.values() if stats.type == "inbound-rtp")
        return 0

    async def _consume_video(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                self.received.video_times.append(time.monotonic())
                self.received.video_sizes.append((frame.width, frame.height))
                luma = np.frombuffer(frame.planes[0], np.uint8).reshape(frame.height, -1)[:, :frame.width]
                self.received.video_luma.append(float(luma[::4, ::4].mean()))   # 1/16 of the pixels: 0.1 ms less
                if self.watch_box is not None:
                    x0, y0, x1, y1 = self.watch_box
                    self.received.video_crops.append(luma[y0:y1, x0:x1].copy())
        except MediaStreamError:
            pass

    async def _consume_audio(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                samples = frame.to_ndarray().astype(np.float32)
                self.received.audio.append((time.monotonic(), float(np.sqrt(np.mean(samples ** 2)))))
        except MediaStreamError:
            pass

    def say(self, text: str) -> float:
        """Send a chat message over the data channel; returns the time it was sent."""
        self.channel.send(text)
        return time.monotonic()

    async def next_event(self, kind: str, timeout: float = 30.0) -> dict:
        """Wait for the next event of type `kind` (others are skipped); an "error" event raises unless awaited."""
        async def wait() -> dict:
            while True:
                event = await self.events.get()
                if event["type"] == kind:
                    return event
                if event["type"] == "error":
                    raise RuntimeError(f"server error event: {event['message']}")
        return await asyncio.wait_for(wait(), timeout)

    async def wait_for_media(self, timeout: float = 20.0) -> None:
        """Return once both video frames and audio frames are arriving."""
        async def wait() -> None:
            while not (self.received.video_times and self.received.audio):
                await asyncio.sleep(0.05)
        await asyncio.wait_for(wait(), timeout)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()
