// Calls: loaded on first use (the phone button, or an incoming call), so the chat's first load
// stays small. This module is the call as people see it: ringing, answering, ending, the
// screen's states, the timer, the controls. Signalling runs over the `/call` Socket.IO
// namespace; the peer connection is static/js/call_peer.js (P2P first, the server's relay when
// P2P does not connect in time). Every text is rendered by the server into #call
// (partials/call/panel.html); this module only switches states and fills in figures.

const QUALITY_EVERY_MS = 2000;

function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}

// A ringtone from WebAudio (no file to fetch): two short beeps every two seconds.
class Ringtone {
  constructor() { this.ctx = null; this.timer = null; }

  start() {
    try {
      this.ctx = this.ctx || new AudioContext();
      this.ctx.resume().catch(() => {});
    } catch { return; }
    const beep = () => {
      const now = this.ctx.currentTime;
      for (const at of [0, 0.35]) {
        const osc = this.ctx.createOscillator();
        const gain = this.ctx.createGain();
        osc.frequency.value = 440;
        gain.gain.setValueAtTime(0.0001, now + at);
        gain.gain.exponentialRampToValueAtTime(0.25, now + at + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, now + at + 0.28);
        osc.connect(gain).connect(this.ctx.destination);
        osc.start(now + at);
        osc.stop(now + at + 0.3);
      }
      navigator.vibrate?.([300, 150, 300]);
    };
    beep();
    this.timer = setInterval(beep, 2000);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    navigator.vibrate?.(0);
  }
}

// What this browser can do for a call, checked before ringing: WebRTC and a microphone. The
// device list needs no permission (only its labels do), so the check is quick and silent.
async function cannotCall({ ringing = false } = {}) {
  if (typeof window.RTCPeerConnection !== "function") return "no_webrtc";
  if (typeof navigator.mediaDevices?.getUserMedia !== "function") return "no_webrtc";
  try {
    const devices = await navigator.mediaDevices.enumerateDevices();
    if (!devices.some((d) => d.kind === "audioinput")) return "no_microphone";
  } catch { /* unknown: the microphone is asked for when the call starts */ }
  // Rung, the call is shown all the same: a blocked microphone is said when answering.
  if (ringing) return null;
  try {
    // Blocked for this site: ringing would only end in "the microphone could not be opened".
    if ((await navigator.permissions.query({ name: "microphone" })).state === "denied") return "mic_blocked";
  } catch { /* no such query in this engine (Firefox): asked for when the call starts */ }
  return null;
}

export class CallUI {
  constructor(socket, root, { Peer, emitAck }) {
    this.socket = socket;
    this.root = root;
    this.ask = (event, data) => emitAck(socket, event, data);
    this.peer = new Peer(socket, this);
    this.role = root.dataset.role;
    this.els = {
      audio: root.querySelector("#call-remote-audio"),
      remoteVideo: root.querySelector("#call-remote-video"),
      localVideo: root.querySelector("#call-local-video"),
      name: root.querySelector("#call-name"),
      avatar: root.querySelector("#call-avatar"),
      timer: root.querySelector("#call-timer"),
      quality: root.querySelector("#call-quality"),
      figures: root.querySelector("#call-quality-figures"),
      notice: root.querySelector("#call-notice"),
      endedText: root.querySelector("#call-ended-text"),
      mute: root.querySelector("#call-mute"),
      camera: root.querySelector("#call-camera"),
      speaker: root.querySelector("#call-speaker"),
    };
    this.texts = root.querySelector("#call-texts").content;
    this.ringtone = new Ringtone();
    this.reset();
    this.bind();
  }

  text(key) {
    const found = this.texts.querySelector(`[data-text="${key}"]`);
    return found ? found.textContent : "";
  }

  reset() {
    this.callId = null;
    this.dialling = false;
    this.mode = "";
    this.peer.reset();
    this.connectedAt = null;
    this.clearTimers();
    this.ringtone.stop();
  }

  clearTimers() {
    clearTimeout(this.p2pTimer);
    clearTimeout(this.relayTimer);
    clearInterval(this.tickTimer);
    clearInterval(this.qualityTimer);
    clearTimeout(this.closeTimer);
  }

  // Every async step of a call ends in here when it throws: the call ends cleanly, with a word.
  guard(fn) {
    return (...args) => {
      try {
        const result = fn(...args);
        if (result?.catch) result.catch((error) => this.failed(error));
      } catch (error) {
        this.failed(error);
      }
    };
  }

  failed(error) {
    console.warn("call failed:", error);
    const id = this.callId;
    this.finish();
    this.els.endedText.textContent = this.text("failed");
    this.setState("ended");
    this.closeSoon();
    if (id) this.socket.emit("call:end", { call_id: id });
  }

  bind() {
    const on = (id, fn) => this.root.querySelector(id).addEventListener("click", this.guard(fn));
    on("#call-hangup", () => this.hangUp());
    on("#call-accept", () => this.accept());
    on("#call-decline", () => this.decline());
    on("#call-close", () => this.hide());
    on("#call-mute", () => this.toggleMute());
    on("#call-camera", () => this.toggleCamera());
    on("#call-speaker", () => this.toggleSpeaker());
    const s = this.socket;
    const ours = (fn) => this.guard((m) => { if (m?.call_id === this.callId) return fn(m); });
    // call:incoming is forwarded by the page (it loads this module when one arrives).
    s.on("call:accepted", this.guard((m) => this.accepted(m)));
    s.on("call:connected", ours((m) => this.serverConnected(m)));
    s.on("call:declined", ours(() => this.ended({ reason: "declined" })));
    s.on("call:ended", this.guard((m) => {
      if (!this.callId && this.dialling) this.earlyEnd = m; // before call:ring's ack
      else if (m.call_id === this.callId) this.ended(m);
    }));
    s.on("call:relay", ours((m) => this.toRelay(m)));
    s.on("call:media", ours((m) => this.remoteCamera(m.camera)));
    s.on("rtc:offer", ours((m) => this.peer.gotOffer(m)));
    s.on("rtc:answer", ours((m) => (m.from === "server" && this.peer.relayLegOpen ? this.peer.gotRelayAnswer(m) : this.peer.gotAnswer(m))));
    s.on("rtc:candidate", ours((m) => this.peer.gotCandidate(m.candidate)));
    s.on("disconnect", () => { if (this.callId) this.ended({ reason: "network" }); });
  }

  // Screen ---------------------------------------------------------------------------------

  // The state is set at once (the call goes on meanwhile); the screen appears once its CSS is
  // in, unless the call has been closed by then.
  async show(state) {
    this.setState(state);
    if (!this.cssLoaded) {
      this.cssLoaded = new Promise((resolve) => {
        const link = document.createElement("link");
        link.rel = "stylesheet";
        link.href = this.root.dataset.css;
        link.onload = resolve;
        link.onerror = resolve;
        document.head.append(link);
      });
    }
    await this.cssLoaded;
    if (this.root.dataset.state === "idle") return;
    this.root.hidden = false;
    document.body.classList.add("in-call");
  }

  setState(state) {
    this.root.dataset.state = state;
    this.root.querySelectorAll("[data-when]").forEach((el) => {
      el.hidden = !el.dataset.when.split(" ").includes(state);
    });
  }

  setMode(mode) {
    this.mode = mode;
    this.root.dataset.mode = mode;
    this.root.querySelectorAll("[data-when-mode]").forEach((el) => { el.hidden = el.dataset.whenMode !== mode; });
  }

  hide() {
    this.root.hidden = true;
    this.setState("idle");
    document.body.classList.remove("in-call");
  }

  notify(text) {
    this.els.notice.textContent = text;
    this.els.notice.hidden = !text;
  }

  who(name) {
    if (!name) return;
    this.els.name.textContent = name;
    this.els.avatar.textContent = name.slice(0, 1);
  }

  // Starting, answering, ending ------------------------------------------------------------

  async openMic() {
    if (this.stream) return true;
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      return true;
    } catch {
      this.notify(this.text("no-mic"));
      return false;
    }
  }

  // Autoplay rules: playback may start only from a user gesture, so the click unlocks it.
  unlockAudio() {
    this.els.audio.muted = false;
    this.els.audio.play().catch(() => {});
  }

  // The page's entry points (a click, an incoming call) never leave a rejection behind.
  dial(chatId, options) { return this.guard(() => this.startDial(chatId, options))(); }

  incoming(m) { return this.guard(() => this.ring(m))(); }

  async startDial(chatId, { echo = false, name = "" } = {}) {
    if (this.callId || this.dialling) return;
    this.dialling = true; // a second click meanwhile does not ring twice
    this.who(name);
    this.notify("");
    const missing = await cannotCall();
    if (missing) { this.dialling = false; this.cannot(chatId, missing, echo); return; }
    this.unlockAudio();
    this.dialledAt = performance.now();
    // The screen, the microphone and the ring go together: none waits for another (the
    // call does not wait for the screen's CSS either).
    this.micReady = this.openMic();
    this.show(echo ? "connecting" : "outgoing");
    const [micOk, reply] = await Promise.all([
      this.micReady,
      this.ask("call:ring", { chat_id: chatId, echo }),
    ]);
    this.dialling = false;
    const early = this.early;
    this.early = null;
    if (!reply.ok || !micOk) {
      if (reply.ok) this.ask("call:end", { call_id: reply.call_id });
      else this.notify(reply.message || this.text("ended:default"));
      this.stopMedia();
      this.setState("ended");
      return;
    }
    this.callId = reply.call_id;
    this.iceServers = reply.ice_servers || [];
    this.setMode(reply.mode);
    if (reply.mode === "p2p") this.peer.prepareOffer();
    const earlyEnd = this.earlyEnd;
    this.earlyEnd = null;
    if (earlyEnd?.call_id === this.callId) { this.ended(earlyEnd); return; }
    if (early?.call_id === this.callId) await this.accepted(early);
  }

  // This browser cannot take part in a call: say so instead of ringing, and (for a real call,
  // not the microphone test) let the other side know why in the conversation.
  async cannot(chatId, missing, echo, callId = null) {
    this.finish();
    this.els.endedText.textContent = this.text(missing === "mic_blocked" ? "no-mic" : `cannot:${missing}`);
    await this.show("ended");
    // A microphone blocked in this browser's settings is the user's own to fix: nothing to tell.
    if (missing === "mic_blocked") return;
    if (!echo) this.ask("call:unsupported", { chat_id: chatId, call_id: callId, reason: missing });
  }

  async ring(m) {
    if (this.callId && this.callId !== m.call_id) return; // busy here: the server did not ring us
    const missing = await cannotCall({ ringing: true });
    if (missing) { this.cannot(this.root.dataset.chatId || m.chat_id, missing, false, m.call_id); return; }
    this.callId = m.call_id;
    this.who(m.name);
    this.notify("");
    await this.show("incoming");
    this.ringtone.start();
    // A panel in a background tab: the system notification rings too (when allowed).
    if (document.hidden && window.Notification?.permission === "granted") {
      const status = this.root.querySelector('[data-when="incoming"]').textContent;
      const note = new Notification(m.name || "", { body: status, tag: `call-${m.call_id}` });
      note.onclick = () => { window.focus(); note.close(); };
      this.notification = note;
    }
  }

  async accept() {
    this.ringtone.stop();
    this.notification?.close();
    this.unlockAudio();
    this.dialledAt = performance.now();
    this.setState("connecting");
    // The accept goes out while the microphone opens.
    this.micReady = this.openMic();
    const [reply, micOk] = await Promise.all([
      this.ask("call:accept", { call_id: this.callId }),
      this.micReady,
    ]);
    if (!reply.ok) { this.notify(reply.message); this.finish(); return; }
    if (!micOk) await this.hangUp();
  }

  async decline() {
    this.ringtone.stop();
    if (this.callId) await this.ask("call:decline", { call_id: this.callId });
    this.finish();
    this.hide();
  }

  async hangUp() {
    const id = this.callId;
    this.finish();
    this.setState("ended");
    this.closeSoon();
    if (id) await this.ask("call:end", { call_id: id });
  }

  accepted(m) {
    if (!this.callId && this.dialling) { this.early = m; return; } // before call:ring's ack
    if (m.call_id !== this.callId) return;
    this.iceServers = m.ice_servers || [];
    this.p2pTimeout = m.p2p_timeout_ms || 4000;
    this.setMode(m.mode);
    this.setState(m.mode === "echo" ? "echo" : "connecting");
    if (m.mode === "p2p") {
      this.p2pTimer = setTimeout(this.guard(() => this.p2pTooSlow()), this.p2pTimeout);
      // The relay is prepared alongside when P2P is slow, so a call that cannot go direct
      // does not wait out the whole P2P timeout.
      const after = m.relay_after_ms ?? this.p2pTimeout;
      this.relayTimer = setTimeout(this.guard(() => this.peer.openRelayLeg()), after);
      if (m.initiator) return this.offer({ toServer: false });
    } else if (m.initiator || m.mode === "relay") {
      return this.offer({ toServer: true });
    }
    return null;
  }

  ended(m) {
    const key = `ended:${m.reason}`;
    const text = this.text(key) || this.text("ended:default");
    this.els.endedText.textContent = m.reason === "network" ? this.text("network") : text;
    if (m.duration) this.els.endedText.textContent += ` · ${clock(m.duration)}`;
    this.finish();
    this.setState("ended");
    this.closeSoon();
  }

  closeSoon() {
    clearTimeout(this.closeTimer);
    this.closeTimer = setTimeout(() => { if (!this.callId) this.hide(); }, 2500);
  }

  finish() {
    this.notification?.close();
    this.notification = null;
    this.peer.close();
    this.stopMedia();
    this.reset();
    this.setMode("");
  }

  stopMedia() {
    for (const track of this.stream?.getTracks() || []) track.stop();
    this.stream = null;
    this.cameraTrack?.stop();
    this.cameraTrack = null;
    this.els.localVideo.hidden = true;
    this.els.remoteVideo.hidden = true;
    this.els.mute.setAttribute("aria-pressed", "false");
    this.els.camera.setAttribute("aria-pressed", "false");
  }

  // The peer connection's side ---------------------------------------------------------------

  async offer({ toServer }) {
    const refused = await this.peer.start({ toServer });
    if (refused) this.notify(refused.message);
  }

  remoteStream(stream) {
    if (this.els.audio.srcObject !== stream) {
      this.els.audio.srcObject = stream;
      this.els.remoteVideo.srcObject = stream;
    }
    this.els.audio.play().catch(() => {});
  }

  // The page's own connection is up: for P2P that is media both ways, which the server is told
  // (it tells both pages, and the call turns active then); the server sees its own legs.
  peerState(state) {
    if (state === "connected") {
      clearTimeout(this.p2pTimer);
      clearTimeout(this.relayTimer);
      if (this.mode === "p2p" && this.callId) this.socket.emit("call:connected", { call_id: this.callId });
    } else if (state === "failed" && this.mode === "p2p" && this.peer.relayLegOpen) {
      return null; // the relay leg opened alongside may still carry the call
    } else if (state === "failed" && this.mode === "p2p") {
      return this.p2pTooSlow();
    } else if (state === "failed") {
      return this.hangUp();
    }
    return null;
  }

  // The server's word that media flows both ways (both relay legs, the echo leg, or a P2P page).
  serverConnected(m) {
    clearTimeout(this.p2pTimer);
    clearTimeout(this.relayTimer);
    // The first way to connect carries the call: the relay leg opened alongside, or P2P.
    if (m.mode === "relay" && this.mode === "p2p") this.peer.promoteRelayLeg();
    else if (m.mode === "p2p") this.peer.closeRelayLeg();
    if (m.mode && m.mode !== this.mode) this.setMode(m.mode);
    if (!this.connectedAt) this.connected();
  }

  connected() {
    this.connectedAt = performance.now();
    this.root.dataset.setupMs = String(Math.round(this.connectedAt - (this.dialledAt || this.connectedAt)));
    if (this.mode !== "echo") this.setState("active");
    const tick = () => { this.els.timer.textContent = clock((performance.now() - this.connectedAt) / 1000); };
    tick();
    this.tickTimer = setInterval(tick, 1000);
    this.qualityTimer = setInterval(this.guard(() => this.measure()), QUALITY_EVERY_MS);
  }

  // P2P did not connect in time: ask for the relay (the server tells both sides).
  async p2pTooSlow() {
    clearTimeout(this.p2pTimer);
    if (!this.callId || this.mode !== "p2p" || this.peer.connected || this.peer.relayLegOpen) return;
    const reply = await this.ask("call:relay", { call_id: this.callId });
    if (!reply.ok) this.notify(reply.message);
  }

  async toRelay(m) {
    if (this.mode === "relay") return;
    this.iceServers = m.ice_servers || this.iceServers;
    this.setMode("relay");
    if (this.peer.promoteRelayLeg()) return; // the leg opened alongside is already the relay's
    const refused = await this.peer.toRelay();
    if (refused) this.notify(refused.message);
  }

  async measure() {
    const measured = await this.peer.quality();
    if (!measured) return;
    const { ms, loss } = measured;
    const level = (ms !== null && ms > 400) || loss > 8 ? "poor" : (ms !== null && ms > 200) || loss > 2 ? "fair" : "good";
    this.els.quality.dataset.level = level;
    this.els.quality.querySelectorAll("[data-level-text]").forEach((el) => { el.hidden = el.dataset.levelText !== level; });
    this.els.figures.textContent = `${ms === null ? "–" : ms} ms · ${loss.toFixed(1)} %`;
  }

  // Controls -------------------------------------------------------------------------------

  toggleMute() {
    const track = this.stream?.getAudioTracks()[0];
    if (!track) return;
    track.enabled = !track.enabled;
    this.els.mute.setAttribute("aria-pressed", String(!track.enabled));
  }

  async toggleCamera() {
    if (this.cameraTrack) {
      this.cameraTrack.stop();
      this.cameraTrack = null;
      await this.peer.sendCamera(null);
      this.els.localVideo.hidden = true;
      this.els.camera.setAttribute("aria-pressed", "false");
    } else {
      try {
        const video = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "user" } });
        this.cameraTrack = video.getVideoTracks()[0];
      } catch {
        this.notify(this.text("no-camera"));
        return;
      }
      await this.peer.sendCamera(this.cameraTrack);
      this.els.localVideo.srcObject = new MediaStream([this.cameraTrack]);
      this.els.localVideo.hidden = false;
      this.els.camera.setAttribute("aria-pressed", "true");
    }
    if (this.callId) this.socket.emit("call:media", { call_id: this.callId, camera: Boolean(this.cameraTrack) });
  }

  remoteCamera(on) {
    this.els.remoteVideo.hidden = !on;
    this.root.classList.toggle("call--video", on);
  }

  // Speaker/earpiece with setSinkId, with the ids each engine really has: where the browser
  // offers selectAudioOutput (Firefox) the user picks the output; elsewhere the outputs are
  // listed (labelled once the microphone is allowed) and the button moves between an
  // earpiece-like output (or another real one) and the speaker (or the default: "" in every
  // engine; "default" is Chromium's own and "communications" exists only on Windows). Only
  // a browser without setSinkId (iOS Safari) leaves the choice to the system.
  async toggleSpeaker() {
    const audio = this.els.audio;
    if (typeof audio.setSinkId !== "function") {
      this.notify(this.text("sink-unsupported"));
      return;
    }
    const speakerOn = this.els.speaker.getAttribute("aria-pressed") === "true";
    const target = await this.outputFor(speakerOn ? "earpiece" : "speaker");
    if (target === null) return; // the user closed the browser's chooser
    if (target === undefined) { this.notify(this.text("sink-single")); return; }
    try {
      await audio.setSinkId(target);
    } catch {
      this.notify(this.text("sink-failed")); // the output went away meanwhile: the call goes on
      return;
    }
    this.notify("");
    this.els.speaker.setAttribute("aria-pressed", String(!speakerOn));
  }

  // The sink id for `want`; null when the user cancelled the chooser, undefined when this
  // device has no other output to move to.
  async outputFor(want) {
    const devices = navigator.mediaDevices;
    if (typeof devices.selectAudioOutput === "function") {
      try {
        return (await devices.selectAudioOutput()).deviceId;
      } catch {
        return null;
      }
    }
    const pseudo = new Set(["", "default", "communications"]);
    const outputs = (await devices.enumerateDevices()).filter((d) => d.kind === "audiooutput" && !pseudo.has(d.deviceId));
    const current = this.els.audio.sinkId || "";
    if (want === "speaker") return outputs.find((d) => /speaker|hoparl/i.test(d.label))?.deviceId ?? "";
    const earpiece = outputs.find((d) => /earpiece|receiver|handset|ahize/i.test(d.label));
    return (earpiece || outputs.find((d) => d.deviceId !== current))?.deviceId;
  }
}

let ui = null;

// The page's entry point: one call screen per page, wired to the page's `/call` socket. The
// peer module's content-hashed URL comes from the page (a plain "./call_peer.js" could be a
// year-old cached copy); chat.js starts fetching it together with this one.
export async function attach(socket, root) {
  ui ??= import(root.dataset.peer).then((peer) => new CallUI(socket, root, peer));
  return ui;
}
