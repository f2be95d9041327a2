"""Runs inside a fresh network namespace: brings `lo` up, serves the app, drives Chromium, prints JSON.

Usage: python browser_driver.py --page /|/kiosk --parts fake|real --out result.json [--notice-only]
                                 [--turn [--client chromium|aiortc]] [--first-audio MESSAGES.json]
Everything stays on loopback: the namespace has no other interface, the server offers 127.0.0.1 only and
Chromium is allowed loopback candidates. With --turn, coturn runs on loopback too and both sides may only use
its relay (ICE transport policy "relay"), with credentials the service mints from the shared secret.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))   # the repository
sys.path.insert(0, str(Path(__file__).resolve().parent))       # streaming_support

from playwright.sync_api import sync_playwright  # noqa: E402

from avatar.types import BUILT_IN_NAME  # noqa: E402
from streaming.app import create_app  # noqa: E402
from harness.probe import AvatarProbe, ice_configuration  # noqa: E402
from streaming_support import (ToneEngine, ToneResponder, free_port, loopback_settings, serve_in_thread,  # noqa: E402
                               turn_server)

TURN_SECRET = "test-only-shared-secret"

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--allow-loopback-in-peer-connection", "--autoplay-policy=no-user-gesture-required",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]

# In the page: the AI notice names the avatar once the page has asked the service which one it is.
NAMED = "document.getElementById('avatar-name').textContent !== ''"

# In the page: video frames presented per second, measured with requestVideoFrameCallback.
COUNT_FRAMES = """async (seconds) => {
  const video = document.getElementById("avatar");
  let frames = 0;
  const tick = () => { frames += 1; video.requestVideoFrameCallback(tick); };
  video.requestVideoFrameCallback(tick);
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  return frames / seconds;
}"""

# In the page: decoded video frames and the received audio energy, from getStats.
RTP_STATS = """async () => {
  const out = { framesDecoded: 0, totalAudioEnergy: 0, audioLevel: 0, frameWidth: 0, concealedSamples: 0,
                totalSamplesReceived: 0, silentConcealedSamples: 0, concealmentEvents: 0 };
  const stats = await window.avatar.pc.getStats();
  stats.forEach((s) => {
    if (s.type !== "inbound-rtp") return;
    if (s.kind === "video") { out.framesDecoded = s.framesDecoded || 0; out.frameWidth = s.frameWidth || 0; }
    if (s.kind === "audio") {
      out.totalAudioEnergy = s.totalAudioEnergy || 0; out.audioLevel = s.audioLevel || 0;
      out.concealedSamples = s.concealedSamples || 0; out.totalSamplesReceived = s.totalSamplesReceived || 0;
      out.silentConcealedSamples = s.silentConcealedSamples || 0; out.concealmentEvents = s.concealmentEvents || 0;
    }
  });
  return out;
}"""

# In the page: the loudest RMS seen by a WebAudio analyser on the remote stream during `seconds`.
ANALYSER_PEAK = """async (seconds) => {
  const context = new AudioContext();
  await context.resume();
  const source = context.createMediaStreamSource(window.avatar.stream);
  const analyser = context.createAnalyser();
  analyser.fftSize = 2048;
  source.connect(analyser);
  const data = new Float32Array(analyser.fftSize);
  let peak = 0;
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    analyser.getFloatTimeDomainData(data);
    let sum = 0;
    for (const x of data) sum += x * x;
    peak = Math.max(peak, Math.sqrt(sum / data.length));
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  context.close();
  return peak;
}"""


# In the page: per message, milliseconds from sending it on the chat channel to the first block of received
# audio (a WebAudio analyser of 256 samples, polled every few ms) louder than `threshold` RMS; null if none
# came before the reply's "done" event. The analyser hears what the page plays, after the jitter buffer.
FIRST_AUDIO = """async ({messages, threshold}) => {
  const context = new AudioContext();
  await context.resume();
  const analyser = context.createAnalyser();
  analyser.fftSize = 256;
  context.createMediaStreamSource(window.avatar.stream).connect(analyser);
  const data = new Float32Array(analyser.fftSize);
  const loud = () => {
    analyser.getFloatTimeDomainData(data);
    let sum = 0;
    for (const x of data) sum += x * x;
    return Math.sqrt(sum / data.length) > threshold;
  };
  const done = () => window.avatar.events.filter((e) => e.type === "done").length;
  const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const results = [];
  for (const text of messages) {
    const before = done();
    const sent = performance.now();
    window.avatar.channel.send(text);
    let first = null;
    while (done() === before && performance.now() - sent < 15000) {
      if (first === null && loud()) first = performance.now() - sent;
      await pause(2);
    }
    results.push(first);
    await pause(500);
  }
  context.close();
  return results;
}"""


# In the page: the ICE candidates each side offered (by type) and the types of the pair in use.
ICE_USED = """async () => {
  const pc = window.avatar.pc;
  const types = (sdp) => [...sdp.matchAll(/a=candidate:.* typ (\\w+)/g)].map((m) => m[1]);
  const stats = await pc.getStats();
  let pair = null;
  stats.forEach((s) => { if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s; });
  const type = (id) => (id && stats.get(id) ? stats.get(id).candidateType : null);
  return { offered: types(pc.localDescription.sdp), answered: types(pc.remoteDescription.sdp),
           policy: pc.getConfiguration().iceTransportPolicy,
           pair: pair ? [type(pair.localCandidateId), type(pair.remoteCandidateId)] : null };
}"""


def candidate_types(sdp: str) -> list[str]:
    return re.findall(r"a=candidate:.* typ (\w+)", sdp)


def build_app(parts: str, name: str = BUILT_IN_NAME, consent: tuple[str, ...] = (), **settings_overrides):
    settings = loopback_settings(**settings_overrides)
    if parts == "fake":
        return create_app(settings, engine=ToneEngine(name, consent), responder=ToneResponder())
    return create_app(settings)                              # the real engine and bot, built in the lifespan


def read_notice(page_path: str, base_url: str) -> dict:
    """Only the AI notice, once it names the avatar: its text, the consent records listed and any markup in the name."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, timeout=60_000)
        page = browser.new_page()
        page.goto(base_url + page_path, timeout=30_000)
        page.wait_for_function(NAMED, timeout=30_000)
        result = {
            "page": page_path,
            "notice": page.inner_text("#ai-notice"),
            "consent_records": page.evaluate("[...document.querySelectorAll('#consent-records li')]"
                                             ".map((item) => item.textContent)"),
            "elements_in_name": page.evaluate("document.querySelectorAll('#avatar-name *').length"),
        }
        browser.close()
    return result


def drive(page_path: str, base_url: str, message: str, screenshot: Path | None = None) -> dict:
    result: dict = {"page": page_path}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, timeout=60_000)
        page = browser.new_page()
        console: list[str] = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.goto(base_url + page_path, timeout=30_000)
        page.wait_for_function(NAMED, timeout=30_000)
        result["notice"] = page.inner_text("#ai-notice")
        page.wait_for_function("window.avatar && window.avatar.channel && window.avatar.channel.readyState === 'open'",
                               timeout=60_000)
        page.wait_for_function("document.getElementById('avatar').readyState >= 2", timeout=30_000)
        result["connects"] = page.evaluate("window.avatar.connects")
        before = page.evaluate(RTP_STATS)
        result["fps_rvfc"] = page.evaluate(COUNT_FRAMES, 3)
        after = page.evaluate(RTP_STATS)
        result["fps_decoded"] = (after["framesDecoded"] - before["framesDecoded"]) / 3  # about 3 s apart
        result["frame_width"] = after["frameWidth"]
        result["idle_audio_energy"] = after["totalAudioEnergy"] - before["totalAudioEnergy"]
        result["idle_audio"] = {key: after[key] - before[key] for key in (
            "totalSamplesReceived", "concealedSamples", "silentConcealedSamples", "concealmentEvents")}
        result["video_paused"] = page.evaluate("document.getElementById('avatar').paused")
        result["video_muted"] = page.evaluate("document.getElementById('avatar').muted")

        result["idle_analyser_peak"] = page.evaluate(ANALYSER_PEAK, 1.0)
        energy_before = page.evaluate(RTP_STATS)["totalAudioEnergy"]
        page.fill("#message", message)
        page.press("#message", "Enter")
        page.wait_for_function("window.avatar.events.some((e) => e.type === 'speaking')", timeout=60_000)
        result["analyser_peak"] = page.evaluate(ANALYSER_PEAK, 1.5)
        if screenshot is not None:
            page.screenshot(path=str(screenshot))
        page.wait_for_function("window.avatar.events.some((e) => e.type === 'done')", timeout=60_000)
        result["speech_audio_energy"] = page.evaluate(RTP_STATS)["totalAudioEnergy"] - energy_before
        result["transcript"] = page.inner_text("#transcript") if page_path == "/" else ""
        result["caption"] = page.inner_text("#caption") if page_path == "/kiosk" else ""
        result["events"] = page.evaluate("window.avatar.events")
        if page_path == "/kiosk":  # hang up from the server side: the kiosk must reconnect by itself
            first = page.evaluate("window.avatar.sessionId")
            page.evaluate("(id) => fetch(`/session/${id}`, {method: 'DELETE'})", first)
            page.wait_for_function("(id) => window.avatar.sessionId !== id && window.avatar.channel"
                                   " && window.avatar.channel.readyState === 'open'", arg=first, timeout=60_000)
            result["reconnected"] = True
            result["connects"] = page.evaluate("window.avatar.connects")
        result["ice"] = page.evaluate(ICE_USED)
        result["console"] = console[-20:]
        browser.close()
    return result


def first_audio(base_url: str, messages: list[str]) -> dict:
    """The page, and per message the milliseconds until its reply is heard (FIRST_AUDIO)."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, timeout=60_000)
        page = browser.new_page()
        page.goto(base_url + "/", timeout=30_000)
        page.wait_for_function("window.avatar && window.avatar.channel && window.avatar.channel.readyState === 'open'",
                               timeout=60_000)
        page.wait_for_function("document.getElementById('avatar').readyState >= 2", timeout=30_000)
        page.wait_for_timeout(2000)
        result = {"first_audio_ms": page.evaluate(FIRST_AUDIO, {"messages": messages, "threshold": 0.01})}
        result["speaking_events"] = page.evaluate("window.avatar.events.filter((e) => e.type === 'speaking')")
        browser.close()
    return result


async def drive_aiortc(base_url: str, message: str) -> dict:
    """The aiortc client with the configuration the page would get (GET /ice): media, and the ICE it used."""
    probe = AvatarProbe(base_url, configuration=await ice_configuration(base_url))
    try:
        await probe.start(timeout=60, settle=1.0)
        start = time.monotonic()
        await asyncio.sleep(3.0)
        fps = probe.received.video_fps(start, start + 3.0)
        sent = probe.say(message)
        reply = await probe.next_event("reply", timeout=60)
        await probe.next_event("speaking", timeout=60)
        await asyncio.sleep(1.0)
        loud = probe.received.first_loud_audio(sent)
        connection = probe.pc.sctp.transport.transport.iceGatherer._connection    # aioice: the pair in use
        pair = next(iter(connection._nominated.values()))
        return {"fps": fps, "reply": reply["text"], "audio_after_message": None if loud is None else loud - sent,
                "ice": {"offered": candidate_types(probe.pc.localDescription.sdp),
                        "answered": candidate_types(probe.answer_sdp),
                        "pair": [pair.local_candidate.type, pair.remote_candidate.type]}}
    finally:
        await probe.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--page", default="/")
    parser.add_argument("--parts", choices=("fake", "real"), default="real")
    parser.add_argument("--message", default="What is AI?")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--screenshot", type=Path, help="save a picture of the page while the avatar speaks")
    parser.add_argument("--name", default=BUILT_IN_NAME, help="fake parts only: the avatar's name")
    parser.add_argument("--consent", action="append", default=[], help="fake parts only: a consent record")
    parser.add_argument("--notice-only", action="store_true", help="only read the AI notice, without talking")
    parser.add_argument("--turn", action="store_true", help="relay only, through coturn on loopback")
    parser.add_argument("--client", choices=("chromium", "aiortc"), default="chromium")
    parser.add_argument("--first-audio", type=Path, metavar="MESSAGES_JSON",
                        help="send these messages one by one and time each until its reply is heard")
    args = parser.parse_args()
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    started = time.monotonic()
    with ExitStack() as stack:
        overrides = {}
        turn_log = args.out.with_name("turnserver.log")
        if args.turn:
            turn_url = stack.enter_context(turn_server(turn_log, TURN_SECRET))
            overrides = {"ice_servers": [{"urls": turn_url}], "ice_transport_policy": "relay",
                         "turn_secret": TURN_SECRET}
        app = build_app(args.parts, args.name, tuple(args.consent), **overrides)
        url = stack.enter_context(serve_in_thread(app, free_port(), timeout=300))
        result = {"startup_s": time.monotonic() - started}
        if args.notice_only:
            result.update(read_notice(args.page, url))
        elif args.first_audio:
            result.update(first_audio(url, json.loads(args.first_audio.read_text())))
        elif args.client == "aiortc":
            result.update(asyncio.run(drive_aiortc(url, args.message)))
        else:
            result.update(drive(args.page, url, args.message, args.screenshot))
    if args.turn:   # coturn's own account: allocations made and sessions that carried data
        log = turn_log.read_text(errors="replace")
        result["turn_allocations"] = log.count("ALLOCATE processed, success")
        result["turn_log_tail"] = log[-3000:]
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
