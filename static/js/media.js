// Photos and voice messages in the composer, loaded on first use by chat.js.
// A photo is shrunk in the browser before upload (the server re-encodes it anyway); a voice
// message is recorded with MediaRecorder (Chrome: webm/opus, Safari: mp4/aac). Each upload shows
// a bubble with a progress bar; a failed one can be retried: the retry carries the same client id,
// so the server stores it once. The server's answer is the rendered message, swapped in by seq.
// A recording the server refuses stays on the page (try again / download): it exists nowhere else.
// Markup comes from server-rendered templates; strings from the tools' data attributes.

const SHRINK_ABOVE_BYTES = 1.5 * 1024 * 1024;
const JPEG_QUALITY = 0.85;
const RECORDER_TYPES = ["audio/webm;codecs=opus", "audio/mp4", "audio/ogg;codecs=opus", "audio/webm"];

function clientId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function clock(ms) {
  const s = Math.floor(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function csrfToken() {
  try {
    return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRF-Token"] || "";
  } catch { return ""; }
}

// Shrink a photo to the server's longest side, keeping its orientation; anything the browser
// cannot decode goes up as it is and the server says what is wrong with it.
async function shrink(file, maxSide) {
  if (typeof createImageBitmap !== "function") return file;
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch { return file; }
  const scale = Math.min(1, maxSide / Math.max(bitmap.width, bitmap.height));
  if (scale === 1 && file.size <= SHRINK_ABOVE_BYTES) { bitmap.close(); return file; }
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff"; // transparency becomes white, as in a JPEG
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", JPEG_QUALITY));
  if (!blob) return file;
  const name = (file.name || "photo").replace(/\.[^.]*$/, "") + ".jpg";
  return new File([blob], name, { type: "image/jpeg" });
}

class MediaComposer {
  constructor(conversation, tools) {
    this.conv = conversation;
    this.tools = tools;
    const d = tools.dataset;
    this.maxBytes = Number(d.maxBytes);
    this.maxSide = Number(d.maxSide);
    this.maxMs = Number(d.maxSeconds) * 1000;
    this.text = d;
    this.root = conversation.root;
    this.template = this.root.querySelector("#upload-template");
    this.recorderBar = this.root.querySelector("#recorder");
    this.recording = null;
    this.recorderBar.querySelector('[data-recorder="cancel"]').addEventListener("click", () => this.stopRecording(false));
    this.recorderBar.querySelector('[data-recorder="send"]').addEventListener("click", () => this.stopRecording(true));
    // The attach menu closes on a click elsewhere and on Escape, like any menu.
    const menu = tools.querySelector("details");
    document.addEventListener("click", (event) => { if (menu.open && !menu.contains(event.target)) menu.open = false; });
    tools.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && menu.open) { menu.open = false; menu.querySelector("summary").focus(); }
    });
  }

  // A file was chosen in one of the pickers.
  async picked(input) {
    const file = input.files && input.files[0];
    const kind = input.dataset.media;
    input.value = "";
    input.closest("details")?.removeAttribute("open");
    if (!file || !kind) return;
    this.conv.hideError();
    const blob = kind === "photo" ? await shrink(file, this.maxSide) : file;
    if (blob.size > this.maxBytes) { this.conv.showError(this.text.tTooLarge); return; }
    this.start({ kind, blob, name: blob.name || file.name || "" });
  }

  start(item) {
    item.clientId = clientId();
    const node = this.template.content.firstElementChild.cloneNode(true);
    node.dataset.clientId = item.clientId;
    const label = node.querySelector(".upload__label");
    if (item.kind === "photo") {
      const img = node.querySelector(".upload__preview");
      item.preview = URL.createObjectURL(item.blob);
      img.src = item.preview;
      img.hidden = false;
    } else {
      label.textContent = item.kind === "voice" ? `🎤 ${this.text.tVoice} ${clock(item.ms || 0)}` : `🎵 ${item.name}`;
    }
    node.querySelector('[data-upload="retry"]').addEventListener("click", () => this.send(item));
    node.querySelector('[data-upload="cancel"]').addEventListener("click", () => this.cancel(item));
    item.node = node;
    this.conv.list.appendChild(node);
    this.conv.scrollToEnd(true);
    this.send(item);
  }

  send(item) {
    const node = item.node;
    const progress = node.querySelector(".upload__progress");
    const state = node.querySelector(".msg__state");
    node.classList.remove("msg--failed");
    node.querySelector('[data-upload="retry"]').hidden = true;
    progress.value = 0;
    state.textContent = this.text.tUploading;
    const form = new FormData();
    form.append("chat_id", this.conv.chatId);
    form.append("client_id", item.clientId);
    form.append("type", item.kind);
    if (this.conv.role === "admin") form.append("as", "admin");
    form.append("file", item.blob, item.name || item.kind);
    const xhr = new XMLHttpRequest();
    item.xhr = xhr;
    xhr.open("POST", "/media/upload");
    if (this.conv.role === "admin") xhr.setRequestHeader("X-CSRF-Token", csrfToken());
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) progress.value = Math.round((event.loaded / event.total) * 100);
    });
    xhr.addEventListener("load", () => {
      const answer = xhr.response || {};
      if (xhr.status === 200 && answer.ok) {
        this.done(item);
        this.conv.insert(answer.message);
        // Kept in part (a damaged end): the server says how much.
        if (answer.notice) this.conv.showError(answer.notice);
      } else if (item.kind === "voice") {
        // A recording exists nowhere else: even refused, it stays with "try again" and a
        // download, so the visitor loses nothing.
        this.failed(item, answer.message);
      } else if (xhr.status >= 400 && xhr.status < 500 && xhr.status !== 408 && xhr.status !== 429) {
        // Refused for good (not a photo, too large…): say why; nothing was stored. The file is
        // still on the device it was picked from.
        this.done(item);
        node.remove();
        this.conv.showError(answer.message || this.text.tFailed);
      } else {
        this.failed(item, answer.message);
      }
    });
    xhr.addEventListener("error", () => this.failed(item));
    xhr.addEventListener("abort", () => {});
    xhr.send(form);
  }

  failed(item, message) {
    item.xhr = null;
    item.node.classList.add("msg--failed");
    item.node.querySelector(".msg__state").textContent = message || this.text.tFailed;
    item.node.querySelector('[data-upload="retry"]').hidden = false;
    if (item.kind === "voice" && !item.download) {
      item.download = URL.createObjectURL(item.blob);
      const link = document.createElement("a");
      link.className = "btn btn--ghost btn--small";
      link.dataset.upload = "download";
      link.href = item.download;
      link.download = item.name || "voice";
      link.textContent = this.text.tDownload;
      item.node.querySelector(".upload__actions").prepend(link);
    }
  }

  done(item) {
    item.xhr = null;
    if (item.preview) URL.revokeObjectURL(item.preview);
    if (item.download) URL.revokeObjectURL(item.download);
  }

  cancel(item) {
    item.xhr?.abort();
    this.done(item);
    item.node.remove();
  }

  // Voice messages -----------------------------------------------------------------------------

  async record() {
    if (this.recording) return;
    this.conv.hideError();
    if (!navigator.mediaDevices?.getUserMedia || typeof MediaRecorder === "undefined") {
      this.conv.showError(this.text.tNoRecorder);
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch {
      this.conv.showError(this.text.tMicDenied);
      return;
    }
    const mimeType = RECORDER_TYPES.find((t) => MediaRecorder.isTypeSupported(t));
    const recorder = new MediaRecorder(stream, mimeType ? { mimeType } : undefined);
    const chunks = [];
    recorder.addEventListener("dataavailable", (event) => { if (event.data.size) chunks.push(event.data); });
    const started = Date.now();
    const time = this.recorderBar.querySelector("#recorder-time");
    time.textContent = "0:00";
    const tick = setInterval(() => {
      const ms = Date.now() - started;
      time.textContent = clock(ms);
      if (ms >= this.maxMs) this.stopRecording(true);
    }, 250);
    this.recording = { recorder, stream, chunks, started, tick };
    recorder.start(250);
    this.conv.form.hidden = true;
    this.recorderBar.hidden = false;
    this.recorderBar.querySelector('[data-recorder="send"]').focus();
  }

  stopRecording(send) {
    const rec = this.recording;
    if (!rec) return;
    this.recording = null;
    clearInterval(rec.tick);
    this.recorderBar.hidden = true;
    this.conv.form.hidden = false;
    rec.recorder.addEventListener("stop", () => {
      rec.stream.getTracks().forEach((track) => track.stop());
      if (!send || !rec.chunks.length) return;
      const type = rec.recorder.mimeType || rec.chunks[0].type || "audio/webm";
      const ext = type.includes("mp4") ? "m4a" : type.includes("ogg") ? "ogg" : "webm";
      const blob = new Blob(rec.chunks, { type });
      if (blob.size > this.maxBytes) { this.conv.showError(this.text.tTooLarge); return; }
      this.start({ kind: "voice", blob, name: `voice.${ext}`, ms: Date.now() - rec.started });
    }, { once: true });
    rec.recorder.stop();
  }
}

export function attach(conversation, tools) {
  return new MediaComposer(conversation, tools);
}
