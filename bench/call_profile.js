// Loaded into the pages by `call_bench.py setup --profile`: the time (performance.now) of each
// step of a call (click, microphone, /call socket messages, RTCPeerConnection calls and events,
// call.js/call.css fetches), kept in window.__callMarks: the bench prints the steps it knows and
// saves every mark in its JSON (echo_marks, p2p_marks).
(() => {
  const marks = (window.__callMarks = []);
  const mark = (name, extra) => marks.push([performance.now(), name, extra || ""]);
  document.addEventListener("click", (e) => mark("click", e.target.id), true);
  const gum = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = async (c) => {
    mark("gum:start");
    const s = await gum(c);
    mark("gum:done");
    return s;
  };
  const WS = window.WebSocket;
  window.WebSocket = class extends WS {
    constructor(...a) {
      super(...a);
      this.addEventListener("message", (e) => {
        const d = typeof e.data === "string" ? e.data : "";
        if (d.includes("/call")) mark("ws<", d.slice(0, 70));
      });
    }
    send(d) {
      if (typeof d === "string" && d.includes("/call")) mark("ws>", d.slice(0, 70));
      return super.send(d);
    }
  };
  // After DTLS: the first audio packet in (the receiver's synchronization sources, a cheap
  // synchronous call, polled every few ms) and the first one played out with sound in it
  // (the sender's audio level, carried in the RTP header).
  const watchRtp = async (pc, id) => {
    const seen = new Set();
    const until = performance.now() + 3000;
    while (seen.size < 2 && performance.now() < until && pc.connectionState === "connected") {
      for (const receiver of pc.getReceivers()) {
        if (receiver.track.kind !== "audio") continue;
        for (const source of receiver.getSynchronizationSources()) {
          if (!seen.has("in")) { seen.add("in"); mark(`pc${id}:rtp in`); }
          if (source.audioLevel > 0.01 && !seen.has("level")) { seen.add("level"); mark(`pc${id}:sound out`, String(source.audioLevel)); }
        }
      }
      await new Promise((r) => setTimeout(r, 2));
    }
  };
  const PC = window.RTCPeerConnection;
  let n = 0;
  window.RTCPeerConnection = class extends PC {
    constructor(cfg) {
      super(cfg);
      const id = ++n;
      this._id = id;
      mark(`pc${id}:new`, JSON.stringify(cfg?.iceServers || []));
      this.addEventListener("icecandidate", (e) => mark(`pc${id}:cand`, e.candidate ? e.candidate.candidate.split(" ").slice(4, 8).join(" ") : "end"));
      this.addEventListener("icegatheringstatechange", () => mark(`pc${id}:gather`, this.iceGatheringState));
      this.addEventListener("iceconnectionstatechange", () => mark(`pc${id}:ice`, this.iceConnectionState));
      this.addEventListener("connectionstatechange", () => {
        mark(`pc${id}:conn`, this.connectionState);
        if (this.connectionState === "connected") watchRtp(this, id);
      });
      this.addEventListener("track", (e) => mark(`pc${id}:track`, e.track.kind));
    }
    async createOffer(...a) { mark(`pc${this._id}:createOffer`); const r = await super.createOffer(...a); mark(`pc${this._id}:offerMade`); return r; }
    async createAnswer(...a) { mark(`pc${this._id}:createAnswer`); const r = await super.createAnswer(...a); mark(`pc${this._id}:answerMade`); return r; }
    async setLocalDescription(...a) { mark(`pc${this._id}:setLocal`); const r = await super.setLocalDescription(...a); mark(`pc${this._id}:setLocalDone`); return r; }
    async setRemoteDescription(...a) { mark(`pc${this._id}:setRemote`, a[0]?.type); const r = await super.setRemoteDescription(...a); mark(`pc${this._id}:setRemoteDone`); return r; }
    async addIceCandidate(c) { mark(`pc${this._id}:addCand`, c ? String(c.candidate).split(" ").slice(4, 8).join(" ") : "end"); return super.addIceCandidate(c); }
  };
  const po = new PerformanceObserver((l) => { for (const e of l.getEntries()) if (/call\.(js|css)/.test(e.name)) marks.push([e.startTime, "fetch:start", e.name.split("/").pop()], [e.responseEnd, "fetch:end", e.name.split("/").pop()]); });
  po.observe({ type: "resource", buffered: true });
})();
