"""The codecs a session sends, VP8 video and Opus audio, set up for rendered frames and synthetic speech.

aiortc's own encoders are made for cameras and microphones. Its VP8 runs a temporal denoiser on every
frame, and its Opus path, for each 20 ms frame, hops to a worker thread, resamples mono to stereo and sums
the samples' energy in a Python loop. Our frames have no camera noise, and most of an idle session's audio
is digital silence. So:

- `AvatarVp8Encoder`: aiortc's VP8 payload format and picture ids, but no denoiser, the fastest real-time
  speed step, blocks that barely changed (static threshold) left as they are, one thread, and a new codec
  (with its keyframe) only when the bitrate aiortc asks for (from the receiver's estimate) falls by a quarter
  or doubles; aiortc starts one at every 10% move. It also packs frames encoded elsewhere (the shared idle
  stream, streaming/shared_idle.py) as they are, and its next own frame after those is a keyframe.
- `OpusPackets`: the audio track encodes its own frames (mono, 48 kbit/s) and hands aiortc packets, which it
  sends as they are. One libopus encoder (`LibOpus`, called directly) makes frames of 10 or 20 ms, a packet
  each. A run of sound starts in 10 ms frames: a receiver's jitter buffer that waits for a fixed number of
  packets (aiortc's waits for 4) then holds 40 ms of it, not 80. The rest of the run goes in 20 ms frames,
  WebRTC's usual size: half the packets for the sender to send and encrypt and for each receiver to take,
  and half the encoder's CPU of 10 ms frames through PyAV. Once the encoder's output for silence has
  settled, silence goes out as DTX packets, without encoding anything: a TOC byte and no frame data (RFC
  6716 section 3.2.1; the 1-2 byte packets libopus' own DTX sends), for 10 ms, or for 20 ms as two empty
  frames (code 1). A receiver decodes them as silence and knows the gaps around them for discontinuous
  transmission, not loss: Chromium concealed 95% of an idle session's samples as lost when these were the
  encoder's 3-byte silent frames and the track paused between them (streaming/tracks.py).

Both codecs are the ones every WebRTC browser must support (RFC 7742, RFC 7874), and the only ones the
service negotiates on the transceivers that carry its tracks: `send_only_ours` keeps the others out of the
answer. (A further m-line of a kind gets a receive-only transceiver from aiortc that sends nothing.)
"""
from __future__ import annotations

import ctypes
import ctypes.util
import fractions
import functools
import weakref
from pathlib import Path

import av
import numpy as np
from aiortc import RTCRtpSender, RTCRtpTransceiver
from aiortc.codecs.base import Encoder
from aiortc.codecs.vpx import Vp8Encoder
from av import VideoFrame
from av.frame import Frame
from av.packet import Packet

from avatar.types import SAMPLE_RATE

SENT_CODECS = {"audio": "audio/opus", "video": "video/vp8"}
RETRANSMISSION = "video/rtx"
PLI_FLAG = "_RTCRtpSender__force_keyframe"   # aiortc 1.16: a sender's "the peer asked for a keyframe"

VP8_OPTIONS = {                 # libvpx, through FFmpeg's option names
    "deadline": "realtime",
    "cpu-used": "-16",          # real-time speed step: negative = adaptive, 16 = as fast as it goes
    "noise-sensitivity": "0",   # no temporal denoiser: rendered frames have no sensor noise
    "static-thresh": "500",     # a macroblock whose difference to the last frame sums below this is skipped
    "lag-in-frames": "0",
    "partitions": "0",          # one token partition
    "overshoot-pct": "15",
    "undershoot-pct": "100",
}
BITRATE_DOWN = 0.75             # a new codec when the target bitrate falls below this share of the codec's
BITRATE_UP = 2.0                # or rises above this multiple (aiortc: either way by 10%)

OPUS_BITRATE = 48_000           # mono speech
# libopus' application "restricted low delay": CELT only, 2.5 ms of look-ahead (6.5 ms in the voip mode), half
# the CPU, and digital silence settles into 3-byte frames (in the voip mode, 10 ms frames of silence after
# speech stay 33-byte hybrid frames). CELT has no in-band FEC, SILK's loss protection: lost packets are
# concealed, not recovered. Constrained VBR keeps near the bit rate (unconstrained CELT took 84 kbit/s).
OPUS_TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)   # the session's audio clock (48 kHz, as Opus)
OPUS_FRAME = SAMPLE_RATE // 100    # 10 ms: the samples of a frame that starts a run of sound, or of silence
SILENCE_PACKET = 2 * OPUS_FRAME     # 20 ms: the samples of one packet of settled silence
SOUND_PACKET = 2 * OPUS_FRAME       # 20 ms: the samples of a frame of sound once its run has started
SILENT_FRAMES_TO_SETTLE = 16    # silent frames encoded after sound before the silence frame may be reused


class AvatarVp8Encoder(Vp8Encoder):
    """VP8 for rendered 512x512 frames at 25 fps (see the module docstring); the packetiser is aiortc's."""

    def __init__(self) -> None:
        super().__init__()
        self.codecs_made = 0     # how many times a codec (and so a keyframe) was started
        self._foreign = False    # the last frame packed was encoded elsewhere
        self._own: Packet | None = None   # the last packet encode_packet made

    def _needs_codec(self, frame: VideoFrame) -> bool:
        codec = self.codec
        if codec is None or frame.width != codec.width or frame.height != codec.height:
            return True
        ratio = self.target_bitrate / codec.bit_rate
        return not BITRATE_DOWN <= ratio <= BITRATE_UP

    def _open(self, frame: VideoFrame) -> None:
        self.codec = vp8_codec(frame.width, frame.height, self.target_bitrate)
        self.codecs_made += 1

    def encode(self, frame: Frame, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        """One frame to RTP payloads and the RTP timestamp (aiortc calls this on a worker thread)."""
        return super().pack(self.encode_packet(frame, force_keyframe))

    def encode_packet(self, frame: Frame, force_keyframe: bool = False) -> Packet:
        """One frame to its VP8 packet, for `pack` to send as the sender's own (the video track encodes its
        frames itself, on the thread that renders them: see streaming/tracks.py)."""
        assert isinstance(frame, VideoFrame)
        if frame.format.name != "yuv420p":
            frame = frame.reformat(format="yuv420p")
        if self._needs_codec(frame):
            self._open(frame)
        if force_keyframe or self._foreign:   # after packets encoded elsewhere our references are not the peer's
            frame.pict_type = av.video.frame.PictureType.I
            self._foreign = False
        self._own = _packet(vp8_encode(self.codec, frame), frame.pts, frame.time_base)
        return self._own

    def pack(self, packet: Packet) -> tuple[list[bytes], int]:
        """A packet from `encode_packet`, or a frame encoded elsewhere (the shared idle stream), to RTP
        payloads, as it is."""
        if packet is not self._own:
            self._foreign = True
        return super().pack(packet)


def vp8_codec(width: int, height: int, bitrate: int) -> av.CodecContext:
    """A libvpx VP8 encoder for rendered frames (VP8_OPTIONS) at `bitrate`; keyframes only when asked."""
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height = width, height
    codec.pix_fmt = "yuv420p"
    codec.bit_rate = bitrate
    codec.gop_size = 3000          # keyframes when asked (a receiver's PLI, a viewer joining), not on a schedule
    codec.qmin, codec.qmax = 2, 56
    codec.thread_count = 1
    codec.options = {**VP8_OPTIONS, "minrate": str(bitrate), "maxrate": str(bitrate), "bufsize": str(bitrate)}
    return codec


def vp8_encode(codec: av.CodecContext, frame: VideoFrame) -> bytes:
    """One frame through `codec` (a keyframe if its pict_type says I): the frame's VP8 bytes."""
    return b"".join(bytes(packet) for packet in codec.encode(frame))


def _packet(data: bytes, pts: int, time_base: fractions.Fraction) -> Packet:
    packet = Packet(data)
    packet.pts = pts
    packet.time_base = time_base
    return packet


class LibOpus:
    """A libopus encoder, 48 kHz mono, called directly (ctypes): the libopus that PyAV ships (pinned), or else
    the system's. One encoder takes frames of any size Opus allows, each call its own size, with its state
    carried across; FFmpeg's libopus encoder (PyAV's) fixes one frame size when it opens. So a run of sound
    can start in 10 ms frames and go on in 20 ms ones from the same encoder. Per 10 ms of espeak-ng speech,
    measured here: 65 us in 20 ms frames, 80 us in 10 ms frames, and 145 us in 10 ms frames through PyAV,
    whose frame and packet objects this skips (about 60 us a call)."""

    RESTRICTED_LOWDELAY = 2051      # OPUS_APPLICATION_RESTRICTED_LOWDELAY
    SET_BITRATE, SET_VBR, SET_VBR_CONSTRAINT = 4002, 4006, 4020    # OPUS_SET_*_REQUEST
    MAX_PACKET = 1275 * 3 + 7       # the largest packet libopus makes (RFC 6716 section 3.4)

    def __init__(self, bitrate: int = OPUS_BITRATE) -> None:
        lib = _libopus()
        error = ctypes.c_int()
        state = lib.opus_encoder_create(SAMPLE_RATE, 1, self.RESTRICTED_LOWDELAY, ctypes.byref(error))
        if not state or error.value:
            raise RuntimeError(f"libopus could not create an encoder (error {error.value})")
        self._finalizer = weakref.finalize(self, lib.opus_encoder_destroy, state)
        for request, value in ((self.SET_BITRATE, bitrate), (self.SET_VBR, 1), (self.SET_VBR_CONSTRAINT, 1)):
            if lib.opus_encoder_ctl(state, request, ctypes.c_int(value)) != 0:
                raise RuntimeError(f"libopus refused the encoder setting {request} = {value}")
        self._lib, self._state = lib, state
        self._out = ctypes.create_string_buffer(self.MAX_PACKET)

    def encode(self, samples: np.ndarray) -> bytes:
        """One Opus packet (code 0: one frame) of `samples` (int16; 2.5, 5, 10 or 20 ms for CELT)."""
        pcm = np.ascontiguousarray(samples, np.int16)
        size = self._lib.opus_encode(self._state, pcm.ctypes.data, len(pcm), self._out, self.MAX_PACKET)
        if size < 0:
            raise RuntimeError(f"libopus could not encode {len(pcm)} samples (error {size})")
        return ctypes.string_at(self._out, size)


@functools.cache
def _libopus() -> ctypes.CDLL:
    shipped = sorted((Path(av.__file__).resolve().parent.parent / "av.libs").glob("libopus*.so*"))
    path = str(shipped[0]) if shipped else ctypes.util.find_library("opus")
    if path is None:
        raise RuntimeError("no libopus found: neither in PyAV's wheel (av.libs/) nor on the system (libopus0)")
    lib = ctypes.CDLL(path)
    lib.opus_encoder_create.restype = ctypes.c_void_p
    lib.opus_encoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    lib.opus_encoder_destroy.argtypes = [ctypes.c_void_p]
    lib.opus_encoder_ctl.argtypes = [ctypes.c_void_p, ctypes.c_int]     # variadic: the value follows
    lib.opus_encode.restype = ctypes.c_int32
    lib.opus_encode.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int32]
    return lib


class OpusPackets:
    """48 kHz mono s16 samples in, Opus packets of one frame out, stamped with their first sample's time: 10 ms
    (OPUS_FRAME samples) or 20 ms (SOUND_PACKET) encoded, or, once the encoder's silence has settled, 10 or 20
    ms of silence (SILENCE_PACKET samples, RFC 6716 code 1: two frames) as a DTX packet, without encoding."""

    def __init__(self) -> None:
        self._encoder = LibOpus()
        self._silent_run = 0                # silent frames encoded since the last sound
        self._last = b""                    # the last packet encoded
        self._silence: bytes | None = None  # once settled: the DTX packet for a 10 ms silent frame
        self._silence_twice = b""           # ... and for 20 ms (two frames)
        self.encoded = 0                    # frames that went through the encoder

    @property
    def silence_settled(self) -> bool:
        """Whether silence is now sent without encoding (and may go in SILENCE_PACKET samples at a time)."""
        return self._silence is not None

    def packet(self, samples: np.ndarray, n: int) -> Packet:
        """The packet for `samples` (int16: OPUS_FRAME or SOUND_PACKET samples; silent ones go as DTX once
        `silence_settled`) starting at sample `n` of the session."""
        if len(samples) not in (OPUS_FRAME, SOUND_PACKET):
            raise ValueError(f"expected {OPUS_FRAME} or {SOUND_PACKET} samples (10 or 20 ms), got {len(samples)}")
        silent = not samples.any()
        if silent and self._silence is not None:
            return _packet(self._silence if len(samples) == OPUS_FRAME else self._silence_twice, n, OPUS_TIME_BASE)
        data = self._encoder.encode(samples)
        self.encoded += 1
        self._silent_run = self._silent_run + 1 if silent else 0
        # settled: enough silent frames, the encoder's output for 10 ms of silence has stopped changing (its TOC
        # byte, the mode and frame size, is then what the DTX packets carry)
        if (silent and len(samples) == OPUS_FRAME and self._silent_run >= SILENT_FRAMES_TO_SETTLE
                and data == self._last):
            self._silence = bytes([data[0]])                      # the TOC byte alone: a frame of no data
            self._silence_twice = bytes([data[0] | 1])            # RFC 6716 code 1: two equal frames, of none
        elif not silent:
            self._silence = None
        self._last = data
        return _packet(data, n, OPUS_TIME_BASE)


def send_only_ours(transceiver: RTCRtpTransceiver) -> None:
    """Negotiate only the codec we send on `transceiver` (and VP8's retransmissions).

    Call before setRemoteDescription: aiortc picks the codecs there, and sends the first one the offer lists
    that the transceiver accepts (Safari lists H.264 before VP8).
    """
    wanted = SENT_CODECS[transceiver.kind]
    capabilities = RTCRtpSender.getCapabilities(transceiver.kind).codecs
    transceiver.setCodecPreferences([codec for codec in capabilities
                                     if codec.mimeType.lower() in (wanted, RETRANSMISSION)])


def keyframe_asked(sender: RTCRtpSender) -> bool:
    """Whether `sender`'s peer asked for a keyframe (a PLI) that the sender has not had encoded yet: it asks
    its encoder at the next frame it encodes itself, and never for frames packed as they are (aiortc 1.16
    keeps this in the private `__force_keyframe`; see use_encoder)."""
    return bool(getattr(sender, PLI_FLAG, False))


def take_keyframe_request(sender: RTCRtpSender) -> bool:
    """`keyframe_asked(sender)`, and the request taken: for frames the track encodes itself, which aiortc
    only packs and so never clears the request for (call it on the event loop, where aiortc sets it)."""
    asked = keyframe_asked(sender)
    if asked:
        setattr(sender, PLI_FLAG, False)
    return asked


def use_encoder(sender: RTCRtpSender, encoder: Encoder) -> None:
    """Make `sender` encode its frames with `encoder`, before its first frame.

    aiortc (pinned at 1.16) creates a sender's encoder on the first frame, by MIME type, and has no public
    way to choose it; it keeps the encoder in the private `__encoder` attribute, which this sets. A newer
    aiortc that renames it fails here, at the first session, rather than silently using its own encoder.
    """
    attribute = "_RTCRtpSender__encoder"
    if getattr(sender, attribute, "missing") is not None:
        raise RuntimeError("this aiortc has no unset RTCRtpSender.__encoder to choose the encoder with "
                           "(the service is tested with aiortc 1.16)")
    setattr(sender, attribute, encoder)
