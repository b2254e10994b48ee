// The chat client shared by the visitor page and the admin panel.
// It never builds markup from data: the server sends rendered fragments and this file swaps
// them in. Delivery: every send carries a client id and stays in a localStorage outbox until
// the server acknowledges it (after commit); on reconnect the page sends the last sequence
// number it has and the server replays what it missed. A message is inserted once, by seq.

const TYPING_EVERY_MS = 2000;
const TYPING_SHOWN_MS = 3500;
const ACK_TIMEOUT_MS = 8000;
// A join unanswered in time is sent again after 1 s, 2 s, 4 s... (each between half and all of
// that, at random), at most a minute apart.
const JOIN_RETRY_FIRST_MS = 1000;
const JOIN_RETRY_MAX_MS = 60000;
// Errors about a whole packet: the server may answer them with `chat:error` alone (no ack).
const PACKET_ERRORS = new Set(["too_large", "bad_packet"]);
// Room the Socket.IO frame adds around the payload (type, namespace, ack id, event name).
const FRAME_BYTES = 64;
const COUNT_FROM = 0.9;

export function newClientId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function fragment(html) {
  const tpl = document.createElement("template");
  tpl.innerHTML = html.trim();
  return tpl.content.firstElementChild;
}

function storageGet(key) {
  try { return JSON.parse(localStorage.getItem(key) || "[]"); } catch { return []; }
}

function storageSet(key, value) {
  try {
    if (value.length) localStorage.setItem(key, JSON.stringify(value));
    else localStorage.removeItem(key);
  } catch { /* private mode: the in-memory outbox still works */ }
}

export class Conversation {
  constructor(socket, root) {
    this.socket = socket;
    this.root = root;
    this.chatId = root.dataset.chatId;
    this.role = root.dataset.role;
    this.list = root.querySelector("#messages");
    this.scroller = root.querySelector(".chat__body");
    this.typing = root.querySelector("#typing");
    this.form = root.querySelector("#composer");
    this.input = this.form.querySelector("textarea");
    this.error = root.querySelector("#composer-error");
    this.pendingTemplate = root.querySelector("#pending-template");
    // Everything up to `synced` is known (shown, or deleted, or older than the page). Live pushes
    // can arrive out of order, so the next join asks for what came after this, not after the max.
    this.synced = Number(root.dataset.lastSeq || 0);
    this.seen = new Set();
    this.generation = 0;
    this.outboxKey = `sohbet:outbox:${this.role}:${this.chatId}`;
    // What a script or an older page left there is shown as it is, but never trusted as shaped.
    this.outbox = storageGet(this.outboxKey).filter((i) => i && typeof i.client_id === "string");
    this.limits = this.form.dataset;
    this.count = root.querySelector("#composer-count");
    this.sending = null;
    this.disposed = false;
    this.lastTypingSent = 0;
    this.typingTimer = null;
    this.retryTimer = null;
    this.joining = null;
    this.joinTimer = null;
    this.joinFailures = 0;
    this.outbox.forEach((item) => this.showPending(item));
    this.bindComposer();
    this.bindMedia();
    this.scrollToEnd(false);
  }

  bindComposer() {
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    // Rendered disabled, so nothing is sent natively before this script has taken over.
    this.form.querySelector("[type=submit]").disabled = false;
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.submit();
      }
    });
    this.input.addEventListener("paste", (event) => {
      // The box stops at its maxlength without a word: say that the paste was cut.
      const pasted = event.clipboardData?.getData("text") ?? "";
      const kept = this.input.value.length - (this.input.selectionEnd - this.input.selectionStart);
      if (kept + pasted.length > this.input.maxLength) this.showError(this.limits.tCut);
    });
    this.input.addEventListener("input", () => {
      this.autosize();
      this.counter();
      const now = Date.now();
      if (now - this.lastTypingSent > TYPING_EVERY_MS && this.socket.connected) {
        this.lastTypingSent = now;
        this.socket.emit("typing", { chat_id: this.chatId });
      }
    });
    this.root.querySelectorAll("[data-emoji]").forEach((button) => {
      button.addEventListener("click", () => {
        const { selectionStart: start, selectionEnd: end, value } = this.input;
        const emoji = button.dataset.emoji;
        this.input.value = value.slice(0, start) + emoji + value.slice(end);
        this.input.selectionStart = this.input.selectionEnd = start + emoji.length;
        this.input.focus();
        this.autosize();
      });
    });
  }

  // Photos and voice messages: static/js/media.js is fetched when the tools are first touched.
  bindMedia() {
    const tools = this.root.querySelector("[data-media-module]");
    if (!tools) return;
    let loading = null;
    const media = () => (loading ??= import(tools.dataset.mediaModule).then((m) => m.attach(this, tools)));
    tools.addEventListener("pointerdown", media, { once: true });
    tools.addEventListener("change", async (event) => (await media()).picked(event.target));
    const record = tools.querySelector("[data-record]");
    record.addEventListener("click", async () => (await media()).record());
    // Rendered disabled, like the send button: a tap before this script has taken over would
    // otherwise do nothing, without a word.
    record.disabled = false;
  }

  autosize() {
    this.input.style.height = "auto";
    this.input.style.height = `${Math.min(this.input.scrollHeight, 160)}px`;
  }

  // "3950 / 4000" once the text is near the limit.
  counter() {
    const max = Number(this.limits.maxChars);
    const length = [...this.input.value].length;
    this.count.hidden = length < max * COUNT_FROM;
    this.count.textContent = `${length} / ${max}`;
  }

  submit() {
    const text = this.input.value.trim();
    if (!text) { this.showError(this.limits.tEmpty); return; }
    this.hideError();
    const item = { client_id: newClientId(), text };
    this.outbox.push(item);
    storageSet(this.outboxKey, this.outbox);
    this.showPending(item);
    this.input.value = "";
    this.autosize();
    this.counter();
    // The message hides the other side's typing line: the next keystroke reports it again.
    this.lastTypingSent = 0;
    this.flush();
  }

  showPending(item) {
    const node = this.pendingTemplate.content.firstElementChild.cloneNode(true);
    node.dataset.clientId = item.client_id;
    node.querySelector(".msg__text").textContent = item.text;
    this.list.appendChild(node);
    if (item.failed) this.showFailed(item, node);
    this.scrollToEnd(true);
  }

  save() {
    storageSet(this.outboxKey, this.outbox);
  }

  // Refused for good: kept (nothing typed is lost) but set aside, so the next ones go out. Its
  // bubble (why, Delete, Try again) is static/js/refused.js's, fetched when one first fails.
  fail(item, { error, message }) {
    item.failed = { error, message };
    this.save();
    const node = [...this.list.querySelectorAll(".msg--pending")].find((n) => n.dataset.clientId === item.client_id);
    if (node) this.showFailed(item, node);
  }

  async showFailed(item, node) {
    (await import(this.limits.refused)).showFailed(this, item, node);
  }

  // What the server would refuse, found before the send: its text limit (in code points, after
  // the NFKC it applies) and the socket's packet limit.
  refusal(payload) {
    if ([...payload.text.normalize("NFKC")].length > Number(this.limits.maxChars)) {
      return { error: "message_too_long", message: this.limits.tTooLong };
    }
    const bytes = new TextEncoder().encode(JSON.stringify(["send", payload])).length + FRAME_BYTES;
    if (bytes > Number(this.limits.maxBytes)) return { error: "too_large", message: this.limits.tTooLarge };
    return null;
  }

  dropPending(clientId) {
    this.list.querySelectorAll(".msg--pending").forEach((node) => {
      if (node.dataset.clientId === clientId) node.remove();
    });
  }

  // Send the outbox in order, one at a time; an unacknowledged send is retried with the same id.
  // A message refused for good is set aside as failed and the next one goes.
  flush() {
    if (this.disposed || this.sending || !this.socket.connected) return;
    const item = this.outbox.find((i) => !i.failed);
    if (!item) return;
    const payload = {
      chat_id: this.chatId, role: this.role, type: "text", text: String(item.text ?? ""),
      time: new Date().toISOString(), client_id: item.client_id,
    };
    const refused = this.refusal(payload);
    if (refused) { this.fail(item, refused); this.flush(); return; }
    const generation = this.generation;
    this.sending = item;
    this.socket.timeout(ACK_TIMEOUT_MS).emit("send", payload, (err, ack) => {
      if (this.disposed || generation !== this.generation) return; // abandoned at a disconnect
      this.sending = null;
      if (err || !ack || ack.error === "server_error") {
        this.retrySoon();
        return;
      }
      if (ack.retry_after) {
        // Over the per-minute budget: say so, keep the message queued and send it when allowed.
        this.showError(ack.message);
        clearTimeout(this.retryTimer);
        this.retryTimer = setTimeout(() => { this.hideError(); this.flush(); }, ack.retry_after * 1000);
        return;
      }
      if (ack.ok) {
        this.outbox = this.outbox.filter((i) => i !== item);
        storageSet(this.outboxKey, this.outbox);
        this.insert(ack.message);
      } else {
        this.fail(item, ack);
      }
      this.flush();
    });
  }

  // The server refused a whole packet with `chat:error` (it may not have read the ack id).
  refusedPacket(error) {
    const item = this.sending;
    if (!item || !PACKET_ERRORS.has(error?.error)) return;
    if (error.client_id && error.client_id !== item.client_id) return;
    this.generation += 1; // its ack, if one still comes, is ignored
    this.sending = null;
    this.fail(item, error);
    this.flush();
  }

  retrySoon() {
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.flush(), 1000);
  }

  // One join in flight at a time. A join whose ack does not come in time is sent again after
  // a pause that doubles each time, with jitter: after a mass reconnect the server is slow, and
  // every page re-sending each second would bury it under joins nobody waits for any more.
  join() {
    if (this.joining || this.disposed) return;
    clearTimeout(this.joinTimer);
    const attempt = {};
    this.joining = attempt;
    this.socket.timeout(ACK_TIMEOUT_MS).emit(
      "join", { chat_id: this.chatId, last_seq: this.synced }, (err, ack) => {
        if (this.joining !== attempt) return; // the connection it was sent on is gone
        this.joining = null;
        if (err) { this.rejoinLater(); return; }
        this.joinFailures = 0;
        if (!ack.ok && ack.error === "bad_chat") {
          // Deleted while this page was away (a reload, a dropped connection): the page that
          // owns the conversation says so, as it does for a live `chat:closed`.
          this.root.dispatchEvent(new CustomEvent("conversation:gone", { bubbles: true }));
          return;
        }
        if (!ack.ok) { this.showError(ack.message); return; }
        // The replay (already inserted: it arrives before the ack) covered everything up to here.
        this.advance(ack.through ?? ack.last_seq);
        if (ack.more) { this.join(); return; }
        this.flush();
      },
    );
  }

  rejoinLater() {
    const ceiling = Math.min(JOIN_RETRY_MAX_MS, JOIN_RETRY_FIRST_MS * 2 ** this.joinFailures);
    this.joinFailures += 1;
    const pause = ceiling / 2 + Math.random() * (ceiling / 2);
    this.joinTimer = setTimeout(() => this.socket.connected && this.join(), pause);
  }

  // The connection dropped: a send in flight can no longer be acknowledged. Forget it (it stays
  // first in the outbox) and send it again, with the same id, once reconnected. The join in
  // flight is forgotten too: the reconnect sends a new one.
  disconnected() {
    this.generation += 1;
    this.sending = null;
    this.joining = null;
  }

  advance(upTo) {
    this.synced = Math.max(this.synced, upTo || 0);
    while (this.seen.has(this.synced + 1)) this.seen.delete(++this.synced);
    for (const seq of this.seen) if (seq <= this.synced) this.seen.delete(seq);
  }

  leave() {
    if (this.socket.connected) this.socket.emit("leave", { chat_id: this.chatId });
    this.dispose();
  }

  // Stop this copy's timers and sends: the pane was replaced (the new copy reads the same outbox).
  dispose() {
    this.disposed = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.typingTimer);
    clearTimeout(this.joinTimer);
  }

  // Insert a server-rendered message once, in seq order; replace it if it was edited.
  insert(message) {
    if (!message || message.chat_id !== this.chatId) return;
    this.dropPending(message.client_id);
    const existing = this.list.querySelector(`[data-seq="${message.seq}"]`);
    if (existing && !message.edited) return;
    const node = fragment(message.html);
    const stick = this.nearEnd() || message.role === this.role;
    if (existing) {
      existing.replaceWith(node);
    } else {
      let after = this.list.lastElementChild;
      while (after && (after.classList.contains("msg--pending") || Number(after.dataset.seq) > message.seq)) {
        after = after.previousElementSibling;
      }
      if (after) after.after(node); else this.list.prepend(node);
      // Pending bubbles stay last: they are newer than anything stored.
      this.list.querySelectorAll(".msg--pending").forEach((p) => this.list.appendChild(p));
    }
    if (window.htmx) window.htmx.process(node);
    if (message.seq > this.synced) this.seen.add(message.seq);
    this.advance(this.synced);
    // The other side's message ends their typing line; so does another operator's, when the
    // line names the operator who typed.
    if (message.role !== this.role || this.typing?.dataset.by === "operator") this.hideTyping();
    this.scrollToEnd(stick);
  }

  remove(seqs) {
    seqs.forEach((seq) => this.list.querySelector(`[data-seq="${seq}"]`)?.remove());
  }

  // `name`: the operator who types ("Ayşe yazıyor…"); without one, the line the page rendered.
  showTyping(name) {
    if (!this.typing) return;
    const label = this.typing.querySelector("span:not(.typing__dots)");
    if (label) {
      label.dataset.default ??= label.textContent;
      const named = this.typing.dataset.named;
      label.textContent = name && named ? named.replace("%(name)s", name) : label.dataset.default;
    }
    this.typing.dataset.by = name ? "operator" : "";
    this.typing.hidden = false;
    this.scrollToEnd(this.nearEnd());
    clearTimeout(this.typingTimer);
    this.typingTimer = setTimeout(() => this.hideTyping(), TYPING_SHOWN_MS);
  }

  hideTyping() {
    if (this.typing) this.typing.hidden = true;
  }

  showError(text) {
    this.error.textContent = text || "";
    this.error.hidden = !text;
  }

  hideError() { this.showError(""); }

  nearEnd() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 120;
  }

  scrollToEnd(really) {
    if (really) this.scroller.scrollTop = this.scroller.scrollHeight;
  }
}

// Route the namespace's events to whichever conversation is on screen.
export function wire(socket, current, onConnectionChange) {
  socket.on("connect", () => { onConnectionChange(true); current()?.join(); });
  socket.on("disconnect", () => { onConnectionChange(false); current()?.disconnected(); });
  socket.on("chat:history", (messages) => messages.forEach((m) => current()?.insert(m)));
  socket.on("chat:message", (m) => current()?.insert(m));
  socket.on("chat:deleted", ({ chat_id, seqs }) => {
    if (current()?.chatId === chat_id) current().remove(seqs);
  });
  socket.on("chat:typing", ({ chat_id, operator }) => {
    // An operator's own other tabs do not show them their own typing.
    const me = document.getElementById("me")?.dataset.operatorId;
    if (operator && me && String(operator.id) === me) return;
    if (current()?.chatId === chat_id) current().showTyping(operator?.name);
  });
  socket.on("chat:error", (error) => current()?.refusedPacket(error));
}

// Keep the composer above the on-screen keyboard: size the app to the visual viewport.
export function followViewport() {
  // Chromium-based browsers (the ones with userAgentData) also resize the layout to the
  // keyboard when told; the key is set here because WebKit logs it as an error from the HTML.
  if (navigator.userAgentData) {
    const meta = document.querySelector('meta[name="viewport"]');
    meta.content += ", interactive-widget=resizes-content";
  }
  const vv = window.visualViewport;
  if (!vv) return;
  const apply = () => document.documentElement.style.setProperty("--app-height", `${vv.height}px`);
  vv.addEventListener("resize", apply);
  apply();
}

// Calls: call.js (and its CSS) load on first use: a call button, the microphone test, or an
// incoming call. Until then only the `/call` socket (sharing the connection) waits. Intent (a
// pointer over one of `buttons`, a finger on it, focus) starts the load, so by the click it is
// usually in: the first call does not wait for it.
const INTENT = ["pointerover", "pointerdown", "focusin"];

export function lazyCalls(role, buttons) {
  const root = document.getElementById("call");
  const socket = window.io("/call", { auth: { as: role } });
  // The modules are fetched once (both at the same time), and attach() keeps the page's one CallUI.
  const calls = async () => {
    const [call] = await Promise.all([import(root.dataset.module), import(root.dataset.peer)]);
    return call.attach(socket, root);
  };
  const warm = (event) => {
    if (!event.target.closest?.(buttons)) return;
    for (const type of INTENT) document.removeEventListener(type, warm, true);
    calls().catch(() => {});
  };
  for (const type of INTENT) document.addEventListener(type, warm, { capture: true, passive: true });
  socket.on("call:incoming", async (m) => (await calls()).incoming(m));
  return { socket, calls };
}
