"""What a deployment watches, in Prometheus' text format at GET /metrics (the prometheus-client package).

Counted as things happen: offers by outcome, chat messages by outcome, the bot's reply time, the time from a
message to its first spoken sample, and the CPU time each media frame takes to render and to encode. Read at
scrape time: the live sessions, each one's frame rate and frames sent, skipped and late, and the process's CPU
time and memory. Each app has its own registry (tests run several apps in one process).
"""
from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

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
                                       "a video frame (VP8), render and encode a frame of the shared idle stream, "
                                       "make an audio packet (Opus: 10 ms of sound encoded, or silence reused)",
                                       ["stage"], buckets=FRAME_BUCKETS, registry=self.registry)
        self.sessions: Callable[[], Iterable[dict]] = lambda: ()
        self.registry.register(_LiveSessions(lambda: self.sessions()))
        if os.path.exists(THREAD_STAT.format(native_id=threading.get_native_id())):
            self.registry.register(_ThreadCpu())

    def offer(self, status: int) -> None:
        self.offers.labels(OFFER_OUTCOMES.get(status, f"http_{status}")).inc()

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
        shared = CounterMetricFamily("avatar_session_frames_shared",
                                     "Video frames sent from the shared idle stream (encoded once for all)",
                                     labels=["session"])
        count = 0
        for session in self._sessions():
            count += 1
            label = [session["session"]]
            fps.add_metric(label, session["fps"])
            sent.add_metric(label, session["frames"])
            skipped.add_metric(label, session["frames_skipped"])
            late.add_metric(label, session["frames_late"])
            shared.add_metric(label, session["frames_shared"])
        live.add_metric([], count)
        return [live, fps, sent, skipped, late, shared]


THREAD_STAT = "/proc/self/task/{native_id}/stat"     # Linux: a thread's user and system time
THREAD_NUMBER = re.compile(r"(_\d+|-\d+)( \(.*\))?$")   # media_3, Thread-7 (run): the pool's name alone


class _ThreadCpu(Collector):
    """CPU seconds of the process's Python threads, summed by pool (the name without its number): the
    media loop, its encoder threads, the render pool, ... Shows whether one thread (the event loop, which holds
    the interpreter lock for aiortc's Python) is what limits the sessions. A thread that ended keeps counting
    with what it had used when last seen, so the counters never go down."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[int, tuple[str, float]] = {}     # native id -> (pool, CPU seconds when last read)
        self._ended: dict[str, float] = {}                # pool -> CPU seconds of its threads that ended

    def collect(self) -> Iterable:
        family = CounterMetricFamily("avatar_thread_cpu_seconds", "CPU seconds of the Python threads, by pool",
                                     labels=["pool"])
        tick = os.sysconf("SC_CLK_TCK")
        live: dict[int, tuple[str, float]] = {}
        for thread in threading.enumerate():
            try:
                fields = Path(THREAD_STAT.format(native_id=thread.native_id)).read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):          # the thread ended meanwhile
                continue
            live[thread.native_id] = (THREAD_NUMBER.sub("", thread.name), (int(fields[11]) + int(fields[12])) / tick)
        with self._lock:
            for native_id, (pool, seconds) in self._seen.items():
                if native_id not in live:
                    self._ended[pool] = self._ended.get(pool, 0.0) + seconds
            self._seen = live
            pools = dict(self._ended)
        for pool, seconds in live.values():
            pools[pool] = pools.get(pool, 0.0) + seconds
        for pool, seconds in sorted(pools.items()):
            family.add_metric([pool], seconds)
        return [family]
