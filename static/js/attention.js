// Attention: delivery/seen receipts, the "new messages" pill, the tab-title badge, a soft sound
// and (for the operator) browser notifications. Used by visitor.js and admin.js; it listens to
// the same socket as chat.js and only toggles classes and attributes on server-rendered markup.

const RANK = { sent: 0, delivered: 1, seen: 2 };
const NEAR_END_PX = 120;
const baseTitle = document.title;

// One soft two-note chime, synthesised (no audio file to download). Browsers only let audio
// start after a user gesture: the context is created on the first tap or key press.
let audio = null;
function unlockAudio() {
  if (audio || !window.AudioContext) return;
  try { audio = new AudioContext(); } catch { audio = null; }
}
["pointerdown", "keydown"].forEach((type) => document.addEventListener(type, unlockAudio, { once: true, capture: true }));

export function chime(volume = 0.06) {
  if (!audio) return;
  if (audio.state === "suspended") audio.resume().catch(() => {});
  const start = audio.currentTime + 0.01;
  [[660, 0], [880, 0.12]].forEach(([freq, offset]) => {
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.type = "sine";
    osc.frequency.value = freq;
    gain.gain.setValueAtTime(0, start + offset);
    gain.gain.linearRampToValueAtTime(volume, start + offset + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, start + offset + 0.35);
    osc.connect(gain).connect(audio.destination);
    osc.start(start + offset);
    osc.stop(start + offset + 0.4);
  });
}

function setTitleCount(count) {
  document.title = count > 0 ? `(${count}) ${baseTitle}` : baseTitle;
}

function away() {
  return document.visibilityState !== "visible" || !document.hasFocus();
}

// Receipts and the pill for whichever conversation is on screen.
export function attend(socket, current, { role, onIncoming = () => {} }) {
  let pinned = true; // the history was scrolled to its end before the latest change
  let unseen = 0; // replies that arrived while the user was away or scrolled up
  let watched = null;

  const conversation = () => {
    const conv = current();
    if (conv && conv !== watched) {
      watched = conv;
      pinned = true;
      // Open at the latest message, without animating past the whole history.
      conv.scroller.scrollTo({ top: conv.scroller.scrollHeight, behavior: "instant" });
      requestAnimationFrame(() => conv.list.classList.add("messages--live"));
      conv.scroller.addEventListener("scroll", () => {
        pinned = conv.nearEnd();
        if (pinned) { hidePill(); markSeen(); }
      }, { passive: true });
      conv.root.querySelector(".new-pill")?.addEventListener("click", () => {
        conv.scroller.scrollTo({ top: conv.scroller.scrollHeight, behavior: "smooth" });
        hidePill();
      });
    }
    return conv;
  };

  function pill() { return conversation()?.root.querySelector(".new-pill"); }
  function hidePill() {
    const node = pill();
    if (node) node.hidden = true;
  }
  function showPill() {
    const node = pill();
    if (node) node.hidden = false;
  }

  function lastTheirs(conv) {
    let seq = 0;
    conv.list.querySelectorAll("li.msg--theirs[data-seq]").forEach((li) => { seq = Math.max(seq, Number(li.dataset.seq)); });
    return seq;
  }

  function markSeen() {
    const conv = conversation();
    if (!conv || away() || !pinned || !socket.connected) return;
    const seq = lastTheirs(conv);
    if (seq && seq > (conv.seenSent || 0)) {
      conv.seenSent = seq;
      socket.emit("receipt", { chat_id: conv.chatId, delivered: seq, seen: seq });
    }
    unseen = 0;
    if (role === "visitor") setTitleCount(0);
  }

  function received(messages) {
    const conv = conversation();
    if (!conv) return;
    const theirs = messages.filter((m) => m.chat_id === conv.chatId && m.role !== role && m.role !== "system");
    if (!theirs.length) return;
    const seq = Math.max(...theirs.map((m) => m.seq));
    const fresh = theirs.filter((m) => m.seq > (conv.deliveredSent || 0));
    conv.deliveredSent = Math.max(conv.deliveredSent || 0, seq);
    if (!pinned) showPill();
    if (!away() && pinned) {
      markSeen();
    } else {
      socket.emit("receipt", { chat_id: conv.chatId, delivered: seq });
    }
    if (fresh.length && (away() || !pinned)) {
      unseen += fresh.length;
      onIncoming(fresh, unseen);
    }
  }

  socket.on("chat:message", (m) => received([m]));
  socket.on("chat:history", (list) => received(list));
  socket.on("connect", () => { const conv = conversation(); if (conv) conv.seenSent = 0; });
  socket.on("chat:receipt", ({ chat_id, reader, delivered, seen, by }) => {
    const conv = conversation();
    if (!conv || conv.chatId !== chat_id) return;
    if (reader === role) {
      // Another operator saw the visitor's messages: "Seen · Ayşe" under the conversation.
      const line = conv.root.querySelector("#seen-by");
      const me = document.getElementById("me")?.dataset.operatorId;
      if (line && by && String(by.id) !== me) {
        line.textContent = line.dataset.named.replace("%(name)s", by.name);
        line.dataset.operatorId = String(by.id);
        line.hidden = false;
      }
      return;
    }
    conv.list.querySelectorAll("li.msg--mine[data-receipt]").forEach((li) => {
      const seq = Number(li.dataset.seq);
      const state = seq <= seen ? "seen" : seq <= delivered ? "delivered" : "sent";
      if (RANK[state] > RANK[li.dataset.receipt]) li.dataset.receipt = state;
    });
  });

  const refresh = () => { if (!away()) markSeen(); };
  document.addEventListener("visibilitychange", refresh);
  window.addEventListener("focus", refresh);
  return { markSeen, mounted: () => { conversation(); markSeen(); } };
}

// The visitor: a soft chime and "(n)" in the tab title for replies that arrive unseen.
export function attendVisitor(socket, current) {
  return attend(socket, current, {
    role: "visitor",
    onIncoming: (fresh, unseen) => {
      if (away()) { setTitleCount(unseen); chime(0.04); }
    },
  });
}

// The operator: the list's unread total in the title; a sound and a notification for a new
// conversation or message while the panel is not focused.
export function attendAdmin(socket, current, list, notifyButton) {
  const unread = new Map();
  const rowUnread = (row) => Number(row.dataset.unread || 0);
  list.querySelectorAll(".conv").forEach((row) => unread.set(row.dataset.chatId, rowUnread(row)));

  // From every row seen, not only the ones a search leaves on screen.
  const total = () => [...unread.values()].reduce((sum, n) => sum + n, 0);
  setTitleCount(total());

  if (notifyButton && window.Notification && Notification.permission === "default") {
    notifyButton.hidden = false;
    notifyButton.addEventListener("click", () => {
      unlockAudio();
      Notification.requestPermission().finally(() => { notifyButton.hidden = true; });
    });
  }

  function notify(row) {
    chime();
    if (!window.Notification || Notification.permission !== "granted") return;
    const name = row.querySelector(".conv__name")?.textContent || "";
    const body = row.querySelector(".conv__preview")?.textContent || "";
    const note = new Notification(name, { body, tag: row.dataset.chatId, icon: "/static/img/icon.svg" });
    note.onclick = () => {
      window.focus();
      row.querySelector("a.conv__link")?.click();
      note.close();
    };
  }

  // After admin.js has put the new row in (its listener may run after this one).
  socket.on("admin:conversation", ({ chat_id }) => setTimeout(() => rowChanged(chat_id), 0));
  function rowChanged(chat_id) {
    const row = list.querySelector(`.conv[data-chat-id="${CSS.escape(chat_id)}"]`);
    if (!row) return;
    const before = unread.get(chat_id);
    const now = rowUnread(row);
    unread.set(chat_id, now);
    setTitleCount(total());
    // The row reached this panel: the operator's side has the visitor's messages.
    if (row.dataset.lastRole === "visitor" && row.dataset.lastSeq) {
      socket.emit("receipt", { chat_id, delivered: Number(row.dataset.lastSeq) });
    }
    const isNew = before === undefined;
    if ((isNew || now > before) && away()) notify(row);
  }
  socket.on("admin:removed", ({ chat_id }) => { unread.delete(chat_id); setTitleCount(total()); });

  return attend(socket, current, { role: "admin" });
}
