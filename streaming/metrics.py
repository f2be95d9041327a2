"""What a deployment watches, in Prometheus' text format at GET /metrics (the prometheus-client package).

Counted as things happen: offers by outcome, chat messages by outcome, the bot's reply time, the time from a
message to its first spoken sample, and the CPU time each media frame takes to render and to encode. Read at
scrape time: the live sessions, each one's frame rate and frames sent, skipped and late, and the process's CPU
time and memory. Each app has its own registry (tests run several apps in one process).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from av import VideoFrame
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)
FRAME_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16)
OFFER_OUTCOMES = {200: "answered", 400: "bad_offer", 413: "bad_request", 415: "bad_request", 422: "bad_request",
                  429: "limited", 503: "no_room"}


class ServiceMetrics:
    """The service's metrics; `sessions` (set once the sessions exist) lists the live sessions' figures."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)   # process_cpu_seconds_total, process_resident_memory_bytes, fds
        self.offers = Counter("avatar_offers", "WebRTC offers, by outcome", ["outcome"], registry=self.registry)
        self.chats = Counter("avatar_chat_messages",
                             "Chat messages (data channel and POST /chat) by outcome: answer, fallback, urgent, "
                             "handover, or refused (bad, too many, busy)", ["outcome"], registry=self.registry)
        self.reply_seconds = Histogram("avatar_reply_seconds", "From a chat message's arrival to the bot's reply",
                                       buckets=LATENCY_BUCKETS, registry=self.registry)
        self.first_audio_seconds = Histogram(
            "avatar_first_audio_seconds",
            "From a chat message's arrival to the moment its spoken reply's first sample is due at the sender",
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self.frame_seconds = Histogram("avatar_frame_seconds",
                                       "CPU seconds per media frame: render (and convert) a video frame, encode "
                                       "a video frame (VP8), encode a 20 ms audio frame (Opus)",
                                       ["stage"], buckets=FRAME_BUCKETS, registry=self.registry)
        self.sessions: Callable[[], Iterable[dict]] = lambda: ()
        self.registry.register(_LiveSessions(lambda: self.sessions()))

    def offer(self, status: int) -> None:
        self.offers.labels(OFFER_OUTCOMES.get(status, f"http_{status}")).inc()

    def observe_encode(self, fn: Callable, args: tuple, seconds: float) -> None:
        """For the media loop's executor: the CPU time of the jobs that encode a video frame (aiortc runs its
        encoders there; the audio track encodes its own frames and reports them as "encode_audio")."""
        if args and isinstance(args[0], VideoFrame):
            self.frame_seconds.labels("encode_video").observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _LiveSessions(Collector):
    """The live sessions, read when scraped."""

    def __init__(self, sessions: Callable[[], Iterable[dict]]) -> None:
        self._sessions = sessions

    def collect(self) -> Iterable:
        live = GaugeMetricFamily("avatar_sessions_live", "Live WebRTC sessions")
        fps = GaugeMetricFamily("avatar_session_fps", "Video frames sent per second over the last 5 s", labels=["session"])
        sent = CounterMetricFamily("avatar_session_frames", "Video frames handed to the encoder", labels=["session"])
        skipped = CounterMetricFamily("avatar_session_frames_skipped", "Video frames skipped: rendering fell behind",
                                      labels=["session"])
        late = CounterMetricFamily("avatar_session_frames_late", "Video frames handed over a frame interval late",
                                   labels=["session"])
        count = 0
        for session in self._sessions():
            count += 1
            label = [session["session"]]
            fps.add_metric(label, session["fps"])
            sent.add_metric(label, session["frames"])
            skipped.add_metric(label, session["frames_skipped"])
            late.add_metric(label, session["frames_late"])
        live.add_metric([], count)
        return [live, fps, sent, skipped, late]
