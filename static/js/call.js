// Calls (WebRTC): loaded on first use (the phone button, or an incoming call), so the chat's
// first load stays small. Signalling runs over the `/call` Socket.IO namespace; media goes P2P
// first and falls back to the server's relay when P2P does not connect in time. Every text is
// rendered by the server into #call (partials/call/panel.html); this module only switches
// states, and fills the timer and the quality figures.

const QUALITY_EVERY_MS = 2000;

function emitAck(socket, event, data) {
  return new Promise((resolve) => {
    socket.timeout(10000).emit(event, data, (err, reply) => {
      resolve(err ? { ok: false, error: "timeout" } : reply);
    });
  });
}

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

export class CallUI {
  constructor(socket, root) {
    this.socket = socket;
    this.root = root;
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
    this.mode = "";
    this.pc = null;
    this.prepared = null;
    this.outbox = null;
    this.pendingCandidates = [];
    this.remoteStream = null;
    this.connectedAt = null;
    this.clearTimers();
    this.ringtone.stop();
  }

  clearTimers() {
    clearTimeout(this.p2pTimer);
    clearInterval(this.tickTimer);
    clearInterval(this.qualityTimer);
    clearTimeout(this.closeTimer);
  }

  bind() {
    const on = (id, fn) => this.root.querySelector(id).addEventListener("click", fn);
    on("#call-hangup", () => this.hangUp());
    on("#call-accept", () => this.accept());
    on("#call-decline", () => this.decline());
    on("#call-close", () => this.hide());
    on("#call-mute", () => this.toggleMute());
    on("#call-camera", () => this.toggleCamera());
    on("#call-speaker", () => this.toggleSpeaker());
    const s = this.socket;
    // call:incoming is forwarded by the page (it loads this module when one arrives).
    s.on("call:accepted", (m) => this.accepted(m));
    s.on("call:declined", (m) => { if (m.call_id === this.callId) this.ended({ reason: "declined" }); });
    s.on("call:ended", (m) => { if (m.call_id === this.callId) this.ended(m); });
    s.on("call:relay", (m) => { if (m.call_id === this.callId) this.toRelay(m); });
    s.on("call:media", (m) => { if (m.call_id === this.callId) this.remoteCamera(m.camera); });
    s.on("rtc:offer", (m) => { if (m.call_id === this.callId) this.gotOffer(m); });
    s.on("rtc:answer", (m) => { if (m.call_id === this.callId) this.gotAnswer(m); });
    s.on("rtc:candidate", (m) => { if (m.call_id === this.callId) this.gotCandidate(m.candidate); });
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

  async dial(chatId, { echo = false, name = "" } = {}) {
    if (this.callId || this.dialling) return;
    this.who(name);
    this.notify("");
    this.unlockAudio();
    this.dialledAt = performance.now();
    // The screen, the microphone and the ring go together: none waits for another (the
    // call does not wait for the screen's CSS either).
    this.dialling = true;
    this.micReady = this.openMic();
    this.show(echo ? "connecting" : "outgoing");
    const [micOk, reply] = await Promise.all([
      this.micReady,
      emitAck(this.socket, "call:ring", { chat_id: chatId, echo }),
    ]);
    this.dialling = false;
    const early = this.early;
    this.early = null;
    if (!reply.ok || !micOk) {
      if (reply.ok) emitAck(this.socket, "call:end", { call_id: reply.call_id });
      else this.notify(reply.message || this.text("ended:default"));
      this.stopMedia();
      this.setState("ended");
      return;
    }
    this.callId = reply.call_id;
    this.iceServers = reply.ice_servers || [];
    this.setMode(reply.mode);
    if (reply.mode === "p2p") this.prepareOffer();
    if (early?.call_id === this.callId) this.accepted(early);
  }

  async incoming(m) {
    if (this.callId && this.callId !== m.call_id) return; // busy here: the server did not ring us
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
      emitAck(this.socket, "call:accept", { call_id: this.callId }),
      this.micReady,
    ]);
    if (!reply.ok) { this.notify(reply.message); this.finish(); return; }
    if (!micOk) await this.hangUp();
  }

  async decline() {
    this.ringtone.stop();
    if (this.callId) await emitAck(this.socket, "call:decline", { call_id: this.callId });
    this.finish();
    this.hide();
  }

  async hangUp() {
    const id = this.callId;
    this.finish();
    this.setState("ended");
    this.closeSoon();
    if (id) await emitAck(this.socket, "call:end", { call_id: id });
  }

  accepted(m) {
    if (!this.callId && this.dialling) { this.early = m; return; } // before call:ring's ack
    if (m.call_id !== this.callId) return;
    this.iceServers = m.ice_servers || [];
    this.p2pTimeout = m.p2p_timeout_ms || 4000;
    this.setMode(m.mode);
    this.setState(m.mode === "echo" ? "echo" : "connecting");
    if (m.mode === "p2p") {
      if (m.initiator) this.startPeer({ toServer: false });
      this.p2pTimer = setTimeout(() => this.p2pTooSlow(), this.p2pTimeout);
    } else if (m.initiator || m.mode === "relay") {
      this.startPeer({ toServer: true });
    }
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
    this.closePeer();
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

  closePeer() {
    if (this.pc) {
      this.pc.onicecandidate = null;
      this.pc.ontrack = null;
      this.pc.onconnectionstatechange = null;
      this.pc.close();
    }
    this.pc = null;
    // The next connection's tracks get a stream of their own (a dead P2P track must not stay).
    this.remoteStream = null;
  }

  // WebRTC ---------------------------------------------------------------------------------

  // `answering`: the transceivers come from the other side's offer (see gotOffer).
  newPeer({ toServer, answering = false }) {
    this.closePeer();
    this.outbox = null;
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    this.pc = pc;
    this.toServer = toServer;
    if (!answering) {
      for (const track of this.stream.getAudioTracks()) pc.addTrack(track, this.stream);
      // Camera off at start; a video transceiver is negotiated now so the camera can be
      // switched on later with replaceTrack, without renegotiating.
      this.videoSender = pc.addTransceiver("video", { direction: "sendrecv" }).sender;
      if (this.cameraTrack) this.videoSender.replaceTrack(this.cameraTrack);
    }
    pc.onicecandidate = ({ candidate }) => {
      // Trickled: an unreachable STUN server never holds the call up.
      const body = candidate ? candidate.toJSON() : null;
      const message = { call_id: this.callId, candidate: body, to: toServer ? "server" : "peer" };
      if (this.outbox) this.outbox.push(message);
      else this.socket.emit("rtc:candidate", message);
    };
    pc.ontrack = (event) => this.gotTrack(event);
    pc.onconnectionstatechange = () => this.stateChanged(pc);
    return pc;
  }

  // The caller of a P2P call makes its offer while it rings (the other side takes seconds to
  // answer): on call:accepted the offer goes out at once, its candidates right after it.
  prepareOffer() {
    const callId = this.callId;
    this.prepared = (async () => {
      if (!(await this.micReady) || this.callId !== callId || this.pc) return null;
      const pc = this.newPeer({ toServer: false });
      this.outbox = []; // its candidates wait until startPeer sends the offer
      try {
        await pc.setLocalDescription(await pc.createOffer());
      } catch { return null; } // closed meanwhile (declined, hung up)
      return pc; // startPeer checks it is still this.pc
    })();
  }

  async startPeer({ toServer }) {
    if (!(await this.micReady)) return;
    const prepared = toServer ? null : await this.prepared;
    this.prepared = null;
    let pc = prepared;
    if (!pc || pc !== this.pc || pc.signalingState !== "have-local-offer") {
      pc = this.newPeer({ toServer });
      await pc.setLocalDescription(await pc.createOffer());
    }
    const sent = emitAck(this.socket, "rtc:offer", { call_id: this.callId, type: "offer", sdp: pc.localDescription.sdp });
    for (const message of this.outbox || []) this.socket.emit("rtc:candidate", message);
    this.outbox = null;
    const reply = await sent;
    if (!reply.ok && this.pc === pc) { this.notify(reply.message); }
  }

  // The callee answers without waiting for its microphone (it opens meanwhile: its track joins
  // the sending transceiver when it is in). The offer's own transceivers are used, so the
  // video one negotiated now carries the camera later.
  async gotOffer(m) {
    if (this.mode !== "p2p") return;
    const pc = this.newPeer({ toServer: false, answering: true });
    await pc.setRemoteDescription({ type: "offer", sdp: m.sdp });
    if (this.pc !== pc) return;
    for (const transceiver of pc.getTransceivers()) {
      transceiver.direction = "sendrecv";
      const { sender } = transceiver;
      if (transceiver.receiver.track.kind === "video") {
        this.videoSender = sender;
        if (this.cameraTrack) sender.replaceTrack(this.cameraTrack);
      } else {
        this.micReady.then((ok) => { if (ok && this.pc === pc) sender.replaceTrack(this.stream.getAudioTracks()[0]); });
      }
    }
    // The answer first: the caller's candidates that came early can wait a few milliseconds.
    await pc.setLocalDescription(await pc.createAnswer());
    this.socket.emit("rtc:answer", { call_id: this.callId, type: "answer", sdp: pc.localDescription.sdp });
    await this.flushCandidates();
  }

  async gotAnswer(m) {
    if (!this.pc || this.pc.signalingState !== "have-local-offer") return;
    await this.pc.setRemoteDescription({ type: "answer", sdp: m.sdp });
    await this.flushCandidates();
  }

  async gotCandidate(candidate) {
    if (this.mode !== "p2p") return;
    // Until our P2P connection has the other side's description, candidates wait.
    if (!this.pc || this.toServer || !this.pc.remoteDescription) { this.pendingCandidates.push(candidate); return; }
    try { await this.pc.addIceCandidate(candidate || null); } catch { /* a stale candidate */ }
  }

  async flushCandidates() {
    const pending = this.pendingCandidates;
    this.pendingCandidates = [];
    for (const candidate of pending) {
      try { await this.pc.addIceCandidate(candidate || null); } catch { /* stale */ }
    }
  }

  gotTrack(event) {
    if (!this.remoteStream) {
      this.remoteStream = new MediaStream();
      this.els.audio.srcObject = this.remoteStream;
      this.els.remoteVideo.srcObject = this.remoteStream;
    }
    this.remoteStream.addTrack(event.track);
    this.els.audio.play().catch(() => {});
  }

  stateChanged(pc) {
    if (pc !== this.pc) return;
    const state = pc.connectionState;
    if (state === "connected") {
      clearTimeout(this.p2pTimer);
      if (!this.connectedAt) this.connected();
    } else if (state === "failed" && this.mode === "p2p") {
      this.p2pTooSlow();
    } else if (state === "failed") {
      this.hangUp();
    }
  }

  connected() {
    this.connectedAt = performance.now();
    this.root.dataset.setupMs = String(Math.round(this.connectedAt - (this.dialledAt || this.connectedAt)));
    if (this.mode !== "echo") this.setState("active");
    const tick = () => { this.els.timer.textContent = clock((performance.now() - this.connectedAt) / 1000); };
    tick();
    this.tickTimer = setInterval(tick, 1000);
    this.qualityTimer = setInterval(() => this.measure(), QUALITY_EVERY_MS);
  }

  // P2P did not connect in time: ask for the relay (the server tells both sides).
  async p2pTooSlow() {
    clearTimeout(this.p2pTimer);
    if (!this.callId || this.mode !== "p2p" || this.pc?.connectionState === "connected") return;
    const reply = await emitAck(this.socket, "call:relay", { call_id: this.callId });
    if (!reply.ok) this.notify(reply.message);
  }

  toRelay(m) {
    if (this.mode === "relay") return;
    this.pendingCandidates = [];
    this.iceServers = m.ice_servers || this.iceServers;
    this.setMode("relay");
    this.startPeer({ toServer: true });
  }

  async measure() {
    if (!this.pc) return;
    const stats = await this.pc.getStats();
    let rtt = null;
    let lost = 0;
    let received = 0;
    stats.forEach((s) => {
      if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime !== undefined) rtt = s.currentRoundTripTime;
      if (s.type === "inbound-rtp" && s.kind === "audio") { lost += s.packetsLost || 0; received += s.packetsReceived || 0; }
    });
    const loss = received + lost ? (100 * lost) / (received + lost) : 0;
    const ms = rtt === null ? null : Math.round(rtt * 1000);
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
      await this.videoSender?.replaceTrack(null);
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
      await this.videoSender?.replaceTrack(this.cameraTrack);
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

  // Speaker/earpiece: setSinkId where the browser has it; elsewhere (iOS Safari) the OS decides.
  async toggleSpeaker() {
    const audio = this.els.audio;
    if (typeof audio.setSinkId !== "function") {
      this.notify(this.text("sink-unsupported"));
      return;
    }
    const speakerOn = this.els.speaker.getAttribute("aria-pressed") === "true";
    try {
      const outputs = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "audiooutput");
      const earpiece = outputs.find((d) => /earpiece|receiver|handset/i.test(d.label));
      const target = speakerOn ? (earpiece?.deviceId || "communications") : "default";
      await audio.setSinkId(target);
      this.els.speaker.setAttribute("aria-pressed", String(!speakerOn));
    } catch {
      this.notify(this.text("sink-unsupported"));
    }
  }
}

let ui = null;

// The page's entry point: one call screen per page, wired to the page's `/call` socket.
export function attach(socket, root) {
  ui = ui || new CallUI(socket, root);
  return ui;
}
