// The avatar page and the kiosk: one WebRTC session (video + audio in, a "chat" data channel both ways),
// a transcript or captions, and reconnection with backoff when the connection drops.
"use strict";

const mode = document.body.dataset.mode;            // "chat" or "kiosk"
const video = document.getElementById("avatar");
const statusLine = document.getElementById("status");
const transcript = document.getElementById("transcript");
const caption = document.getElementById("caption");
const form = document.getElementById("chat-form");
const input = document.getElementById("message");
const unmute = document.getElementById("unmute");
const avatarName = document.getElementById("avatar-name");
const consentNote = document.getElementById("avatar-consent");
const consentRecords = document.getElementById("consent-records");

// Exposed for diagnostics (and the browser tests): the live connection and its state.
const avatar = window.avatar = { pc: null, channel: null, sessionId: null, events: [], connects: 0 };
let retryDelay = 1000;                              // ms; doubles after each failed attempt, up to 30 s
let reconnectTimer = null;
let captionTimer = null;

function setStatus(text) { statusLine.textContent = text; statusLine.hidden = text === ""; }

// Which avatar speaks, beside the AI notice. Its name comes from a bundle a user made: text only, never markup.
async function showAvatar(attempt = 0) {
  try {
    const response = await fetch("/avatar");
    if (response.status === 503 && attempt < 60) {   // the service is still loading: ask again shortly
      setTimeout(() => showAvatar(attempt + 1), 2000);
      return;
    }
    if (!response.ok) throw new Error(response.statusText);
    const info = await response.json();
    avatarName.textContent = ` avatar: ${info.name}`;
    if (info.consent.length === 0) return;
    consentNote.hidden = false;
    if (!consentRecords) return;                    // the kiosk shows the short line only
    for (const record of info.consent) {
      const item = document.createElement("li");
      item.textContent = record;
      consentRecords.append(item);
    }
  } catch (error) {
    console.warn("could not tell which avatar this is:", error);   // the notice still says it is an AI
  }
}

function addLine(kind, who, text) {
  if (transcript) {
    const item = document.createElement("li");
    item.className = kind;
    const name = document.createElement("span");
    name.className = "who";
    name.textContent = who;
    item.append(name, document.createTextNode(" " + text));
    transcript.append(item);
    transcript.scrollTop = transcript.scrollHeight;
  }
  if (caption && kind !== "user") {
    clearTimeout(captionTimer);
    caption.textContent = text;
  }
}

function onEvent(event) {
  avatar.events.push(event);
  if (event.type === "reply") addLine("avatar", "AI:", event.text);
  else if (event.type === "error") addLine("error", "!", event.message);
  else if (event.type === "done" && caption) captionTimer = setTimeout(() => { caption.textContent = ""; }, 4000);
}

function waitForIce(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const check = () => {
      if (pc.iceGatheringState === "complete") {
        pc.removeEventListener("icegatheringstatechange", check);
        resolve();
      }
    };
    pc.addEventListener("icegatheringstatechange", check);
    setTimeout(resolve, 3000);                      // send what we have rather than wait forever
  });
}

// The service's STUN/TURN servers and ICE policy; TURN credentials are minted per request and expire, so
// every connection attempt asks again.
async function iceConfiguration() {
  const response = await fetch("/ice");
  const config = await response.json();
  if (!response.ok) throw new Error(config.detail || response.statusText);
  return { iceServers: config.iceServers, iceTransportPolicy: config.iceTransportPolicy };
}

async function connect() {
  reconnectTimer = null;
  setStatus("connecting…");
  let config;
  try {
    config = await iceConfiguration();
  } catch (error) {
    console.warn("connect failed:", error);
    dropped(String(error.message || error));
    return;
  }
  const pc = new RTCPeerConnection(config);
  avatar.pc = pc;
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  const channel = pc.createDataChannel("chat");
  avatar.channel = channel;
  channel.onmessage = (message) => onEvent(JSON.parse(message.data));
  channel.onopen = () => setStatus("");
  channel.onclose = () => { if (pc === avatar.pc) dropped("the connection closed"); };

  const stream = new MediaStream();
  avatar.stream = stream;
  video.srcObject = stream;
  pc.ontrack = (event) => {
    // As little receive buffering as the network allows: the browser delays the audio to match the video, so
    // both ask for it (a hint; the browser keeps what jitter it measures).
    if ("jitterBufferTarget" in event.receiver) event.receiver.jitterBufferTarget = 0;
    stream.addTrack(event.track);
    play();
  };
  pc.onconnectionstatechange = () => {
    if (pc !== avatar.pc) return;
    if (pc.connectionState === "connected") { retryDelay = 1000; avatar.connects += 1; }
    if (["failed", "closed", "disconnected"].includes(pc.connectionState)) dropped();
  };

  try {
    await pc.setLocalDescription(await pc.createOffer());
    await waitForIce(pc);
    const response = await fetch("/offer", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sdp: pc.localDescription.sdp, type: pc.localDescription.type }),
    });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.detail || response.statusText);
    avatar.sessionId = answer.session_id;
    await pc.setRemoteDescription({ sdp: answer.sdp, type: answer.type });
  } catch (error) {
    console.warn("connect failed:", error);
    dropped(String(error.message || error));
  }
}

function dropped(reason) {
  const pc = avatar.pc;
  if (pc) { avatar.pc = null; pc.close(); }
  if (reconnectTimer !== null) return;
  setStatus(`disconnected${reason ? ": " + reason : ""}; retrying in ${Math.round(retryDelay / 1000)} s`);
  reconnectTimer = setTimeout(connect, retryDelay);
  retryDelay = Math.min(retryDelay * 2, 30000);
}

function play() {
  video.play().catch((error) => {
    if (error.name !== "NotAllowedError") return;  // e.g. a second track arriving: the first play() goes on
    video.muted = true;                              // autoplay with sound needs a user gesture in most browsers
    video.play().catch(() => {});
    unmute.hidden = false;
  });
}

unmute.addEventListener("click", () => { video.muted = false; unmute.hidden = true; video.play(); });

async function send(text, shown = false) {
  if (!shown) addLine("user", "You:", text);
  const channel = avatar.channel;
  if (channel && channel.readyState === "open") {
    channel.send(text);
    return;
  }
  // No live channel (still connecting, or a network that blocks WebRTC): the text-only route.
  try {
    const response = await fetch("/chat", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(avatar.conversationId ? { text, conversation_id: avatar.conversationId } : { text }),
    });
    const body = await response.json();
    if (response.status === 404 && avatar.conversationId) {      // forgotten by the service: start a new one
      avatar.conversationId = null;
      return send(text, true);
    }
    if (response.ok && body.conversation_id) avatar.conversationId = body.conversation_id;   // our conversation
    if (response.ok) onEvent({ type: "reply", text: body.reply });
    else onEvent({ type: "error", message: body.detail || response.statusText });
  } catch (error) {
    onEvent({ type: "error", message: "could not reach the service" });
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = input.value.trim();
  if (!text) return;
  input.value = "";
  send(text);
});

window.addEventListener("pagehide", () => {
  if (avatar.sessionId) fetch(`/session/${avatar.sessionId}`, { method: "DELETE", keepalive: true });
});

showAvatar();
connect();
