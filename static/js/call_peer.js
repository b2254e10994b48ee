// The media side of a call: one RTCPeerConnection at a time (P2P to the other page, or to the
// server's relay or echo peer), its offer/answer and trickled candidates over the `/call`
// socket, and its statistics. It knows nothing of the screen: the call (static/js/call.js)
// gives it the call id, mode, ICE servers and local tracks, and hears back through
// `remoteStream(stream)` and `peerState(state)`.

export class Peer {
  constructor(socket, call) {
    this.socket = socket;
    this.call = call;
    this.pc = null;
    this.reset();
  }

  reset() {
    this.close();
    this.closeRelayLeg();
    this.prepared = null;
    this.outbox = null;
    this.pendingCandidates = [];
    this.videoSender = null;
  }

  close() {
    if (this.pc) {
      this.pc.onicecandidate = null;
      this.pc.ontrack = null;
      this.pc.onconnectionstatechange = null;
      this.pc.close();
    }
    this.pc = null;
    // The next connection's tracks get a stream of their own (a dead P2P track must not stay).
    this.remote = null;
  }

  // The relay leg a P2P call opens alongside (when its direct connection is slow to come up):
  // a second connection, to the server, carrying the same microphone. Whichever the server
  // says connected first carries the call (see promoteRelayLeg / closeRelayLeg).
  async openRelayLeg() {
    const call = this.call;
    if (this.relayPc || this.connected || !(await call.micReady) || call.mode !== "p2p") return;
    const pc = new RTCPeerConnection({ iceServers: call.iceServers });
    this.relayPc = pc;
    this.relayRemote = new MediaStream();
    for (const track of call.stream.getAudioTracks()) pc.addTrack(track, call.stream);
    this.relayVideoSender = pc.addTransceiver("video", { direction: "sendrecv" }).sender;
    if (call.cameraTrack) await this.relayVideoSender.replaceTrack(call.cameraTrack);
    let sent = false;
    const early = [];
    pc.onicecandidate = ({ candidate }) => {
      const message = { call_id: call.callId, candidate: candidate ? candidate.toJSON() : null, to: "server" };
      if (sent) this.socket.emit("rtc:candidate", message);
      else early.push(message);
    };
    pc.ontrack = (event) => {
      if (pc === this.pc) this.gotTrack(event);
      else this.relayRemote.addTrack(event.track);
    };
    pc.onconnectionstatechange = call.guard(() => {
      if (pc === this.pc) return call.peerState(pc.connectionState);
      if (pc === this.relayPc && pc.connectionState === "failed") this.closeRelayLeg();
      return null;
    });
    await pc.setLocalDescription(await pc.createOffer());
    if (pc !== this.relayPc) return;
    const reply = await emitAck(this.socket, "rtc:offer", { call_id: call.callId, type: "offer", sdp: pc.localDescription.sdp, to: "server" });
    sent = true;
    if (!reply.ok) { if (pc === this.relayPc) this.closeRelayLeg(); return; }
    for (const message of early) this.socket.emit("rtc:candidate", message);
  }

  get relayLegOpen() {
    return Boolean(this.relayPc);
  }

  async gotRelayAnswer(m) {
    const pc = this.relayPc;
    if (!pc || pc.signalingState !== "have-local-offer") return;
    await pc.setRemoteDescription({ type: "answer", sdp: m.sdp });
  }

  // The server chose the relay: its leg becomes the call's connection, the direct one goes.
  promoteRelayLeg() {
    const pc = this.relayPc;
    if (!pc) return false;
    this.relayPc = null;
    this.close();
    this.pc = pc;
    this.toServer = true;
    this.videoSender = this.relayVideoSender;
    this.remote = this.relayRemote;
    this.pendingCandidates = [];
    this.call.remoteStream(this.remote);
    return true;
  }

  closeRelayLeg() {
    const pc = this.relayPc;
    this.relayPc = null;
    if (!pc) return;
    pc.onicecandidate = null;
    pc.ontrack = null;
    pc.onconnectionstatechange = null;
    pc.close();
  }

  get connected() {
    return this.pc?.connectionState === "connected";
  }

  // `answering`: the transceivers come from the other side's offer (see gotOffer).
  create({ toServer, answering = false }) {
    this.close();
    this.outbox = null;
    const call = this.call;
    const pc = new RTCPeerConnection({ iceServers: call.iceServers });
    this.pc = pc;
    this.toServer = toServer;
    if (!answering) {
      for (const track of call.stream.getAudioTracks()) pc.addTrack(track, call.stream);
      // Camera off at start; a video transceiver is negotiated now so the camera can be
      // switched on later with replaceTrack, without renegotiating.
      this.videoSender = pc.addTransceiver("video", { direction: "sendrecv" }).sender;
      if (call.cameraTrack) this.videoSender.replaceTrack(call.cameraTrack);
    }
    pc.onicecandidate = ({ candidate }) => {
      // Trickled: an unreachable STUN server never holds the call up.
      const body = candidate ? candidate.toJSON() : null;
      const message = { call_id: call.callId, candidate: body, to: toServer ? "server" : "peer" };
      if (this.outbox) this.outbox.push(message);
      else this.socket.emit("rtc:candidate", message);
    };
    pc.ontrack = (event) => this.gotTrack(event);
    pc.onconnectionstatechange = this.call.guard(() => { if (pc === this.pc) return this.call.peerState(pc.connectionState); });
    return pc;
  }

  // The caller of a P2P call makes its offer while it rings (the other side takes seconds to
  // answer): on call:accepted the offer goes out at once, its candidates right after it.
  prepareOffer() {
    const callId = this.call.callId;
    this.prepared = (async () => {
      if (!(await this.call.micReady) || this.call.callId !== callId || this.pc) return null;
      const pc = this.create({ toServer: false });
      this.outbox = []; // its candidates wait until start() sends the offer
      try {
        await pc.setLocalDescription(await pc.createOffer());
      } catch { return null; } // closed meanwhile (declined, hung up)
      return pc; // start() checks it is still this.pc
    })();
  }

  // Send our offer (the prepared one if it is still good); the reply's refusal, if any.
  async start({ toServer }) {
    if (!(await this.call.micReady)) return null;
    const prepared = toServer ? null : await this.prepared;
    this.prepared = null;
    let pc = prepared;
    if (!pc || pc !== this.pc || pc.signalingState !== "have-local-offer") {
      pc = this.create({ toServer });
      await pc.setLocalDescription(await pc.createOffer());
    }
    const sent = emitAck(this.socket, "rtc:offer", { call_id: this.call.callId, type: "offer", sdp: pc.localDescription.sdp });
    for (const message of this.outbox || []) this.socket.emit("rtc:candidate", message);
    this.outbox = null;
    const reply = await sent;
    return !reply.ok && this.pc === pc ? reply : null;
  }

  // The callee answers without waiting for its microphone (it opens meanwhile: its track joins
  // the sending transceiver when it is in). The offer's own transceivers are used, so the
  // video one negotiated now carries the camera later.
  async gotOffer(m) {
    const call = this.call;
    if (call.mode !== "p2p") return;
    const pc = this.create({ toServer: false, answering: true });
    await pc.setRemoteDescription({ type: "offer", sdp: m.sdp });
    if (this.pc !== pc) return;
    for (const transceiver of pc.getTransceivers()) {
      transceiver.direction = "sendrecv";
      const { sender } = transceiver;
      if (transceiver.receiver.track.kind === "video") {
        this.videoSender = sender;
        if (call.cameraTrack) sender.replaceTrack(call.cameraTrack);
      } else {
        call.micReady.then((ok) => (ok && this.pc === pc ? sender.replaceTrack(call.stream.getAudioTracks()[0]) : null)).catch((error) => call.failed(error));
      }
    }
    // The answer first: the caller's candidates that came early can wait a few milliseconds.
    await pc.setLocalDescription(await pc.createAnswer());
    this.socket.emit("rtc:answer", { call_id: call.callId, type: "answer", sdp: pc.localDescription.sdp });
    await this.flushCandidates();
  }

  async gotAnswer(m) {
    if (!this.pc || this.pc.signalingState !== "have-local-offer") return;
    await this.pc.setRemoteDescription({ type: "answer", sdp: m.sdp });
    await this.flushCandidates();
  }

  async gotCandidate(candidate) {
    if (this.call.mode !== "p2p") return;
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
    this.remote ??= new MediaStream();
    this.remote.addTrack(event.track);
    this.call.remoteStream(this.remote);
  }

  // P2P gave up: what the P2P side had waiting is dropped before the relay's connection.
  toRelay() {
    this.pendingCandidates = [];
    return this.start({ toServer: true });
  }

  async sendCamera(track) {
    if (this.relayPc) await this.relayVideoSender?.replaceTrack(track);
    return this.videoSender?.replaceTrack(track);
  }

  // Round trip (ms, null before one is measured) and audio loss (%), from getStats.
  async quality() {
    if (!this.pc) return null;
    const stats = await this.pc.getStats();
    let rtt = null;
    let lost = 0;
    let received = 0;
    stats.forEach((s) => {
      if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime !== undefined) rtt = s.currentRoundTripTime;
      if (s.type === "inbound-rtp" && s.kind === "audio") { lost += s.packetsLost || 0; received += s.packetsReceived || 0; }
    });
    const loss = received + lost ? (100 * lost) / (received + lost) : 0;
    return { ms: rtt === null ? null : Math.round(rtt * 1000), loss };
  }
}

export function emitAck(socket, event, data) {
  return new Promise((resolve) => {
    socket.timeout(10000).emit(event, data, (err, reply) => {
      resolve(err ? { ok: false, error: "timeout" } : reply);
    });
  });
}
