// chat.js is imported by the content-hashed URL the page names (static files are cached for a
// year: a plain "./chat.js" could be last release's copy, running with this release's pages).
const chatModule = document.querySelector('link[rel="modulepreload"][data-module="chat"]').href;
const { Conversation, followViewport, fragment, lazyCalls, wire } = await import(chatModule);
const attentionModule = document.querySelector('link[rel="modulepreload"][data-module="attention"]').href;
const { attendAdmin } = await import(attentionModule);
const repliesModule = document.querySelector('link[rel="modulepreload"][data-module="replies"]').href;
const { attachPicker } = await import(repliesModule);

const list = document.getElementById("conversation-list");
const pane = document.getElementById("pane");
const banner = document.getElementById("connection-banner");
let current = null;
followViewport();

const socket = window.io("/chat", { auth: { as: "admin" } });

function markActive() {
  list.querySelectorAll(".conv").forEach((row) => {
    row.classList.toggle("conv--active", row.dataset.chatId === current?.chatId);
  });
  document.body.classList.toggle("admin--pane-open", Boolean(current));
}

function mount() {
  const root = pane.querySelector("#conversation");
  const next = root ? new Conversation(socket, root) : null;
  // The same conversation re-rendered (after a delete) keeps its room: a `leave` sent now may be
  // handled after the `join` below and silently cut the pane off from live messages.
  if (current && current.chatId === next?.chatId) current.dispose(); else current?.leave();
  current = next;
  if (current) attachPicker(current);
  if (current && socket.connected) current.join();
  markActive();
  attention?.mounted();
}

function sortRows() {
  const rows = [...list.querySelectorAll(".conv")];
  rows.sort((a, b) => (a.dataset.sort < b.dataset.sort ? -1 : a.dataset.sort > b.dataset.sort ? 1 : 0));
  rows.forEach((row) => list.insertBefore(row, list.querySelector(".conv-list__empty")));
}

// A row re-rendered or moved while the keyboard is on it keeps the focus: replacing or moving a
// focused element drops the focus to the page, and the operator's Enter would then do nothing.
function keepingFocus(change) {
  const focused = document.activeElement;
  const row = focused?.closest?.("li.conv");
  const rowId = row && list.contains(row) ? row.id : null;
  const part = rowId && focused !== row ? [...focused.classList].map((c) => `.${CSS.escape(c)}`).join("") : "";
  change();
  if (!rowId || document.activeElement === focused && focused.isConnected) return;
  const now = document.getElementById(rowId);
  const target = part ? now?.querySelector(part) : now;
  target?.focus({ preventScroll: true });
}

wire(socket, () => current, (online) => {
  banner.hidden = online;
  document.body.dataset.socket = online ? "up" : "down";
});
const attention = attendAdmin(socket, () => current, list, document.getElementById("notify-button"));

// Who of the team is online: one avatar per operator, rebuilt from each `presence:operator`.
socket.on("presence:operator", ({ operators, at }) => {
  const team = document.getElementById("team-online");
  if (!team || !Array.isArray(operators)) return;
  // Two processes publishing at once may be heard out of order: the later reading wins.
  if (Number(at) < Number(team.dataset.at || 0)) return;
  team.dataset.at = String(at);
  team.replaceChildren(...operators.map((op) => {
    const item = document.createElement("li");
    item.className = "team-online__item";
    item.dataset.operatorId = String(op.id);
    const avatar = document.createElement("span");
    avatar.className = "avatar avatar--small";
    avatar.setAttribute("role", "img");
    avatar.dataset.colour = op.colour;
    avatar.title = op.name;
    avatar.setAttribute("aria-label", team.dataset.tOnline.replace("%(name)s", op.name));
    avatar.textContent = op.initial;
    item.append(avatar);
    return item;
  }));
});

socket.on("connect_error", (err) => {
  banner.hidden = false;
  if (err && err.message === "unauthorized") window.location.assign("/admin");
});

socket.on("chat:message", (m) => {
  // A newer visitor message has not been seen by whoever the line names.
  if (current?.chatId === m.chat_id && m.role === "visitor") {
    const line = current.root.querySelector("#seen-by");
    if (line) line.hidden = true;
  }
  if (current?.chatId === m.chat_id && m.role === "visitor" && document.visibilityState === "visible") {
    socket.emit("read", { chat_id: m.chat_id });
  }
});

// The list's tab (Mine, Unassigned, All): a row that no longer belongs to it leaves.
function inTab(row) {
  const tabs = document.getElementById("conv-tabs");
  const tab = tabs?.dataset.tab || "all";
  if (tab === "mine") return row.dataset.assigned === tabs.dataset.me;
  if (tab === "unassigned") return !row.dataset.assigned;
  return true;
}

// The tabs' counts are this operator's own: fetched again (at most every 1.5 s) as rows change.
let tabsTimer = null;
function refreshTabs() {
  if (tabsTimer) return;
  tabsTimer = setTimeout(() => {
    tabsTimer = null;
    const tabs = document.getElementById("conv-tabs");
    if (!tabs || !window.htmx) return;
    window.htmx.ajax("GET", `/admin/conversations/tabs?tab=${encodeURIComponent(tabs.dataset.tab || "all")}`,
      { target: "#conv-tabs", swap: "outerHTML" }).then(applyUnread);
  }, 1500);
}

// A live row is rendered once for every panel; its badge is then set to this operator's own
// unread count, which the tabs carry.
function applyUnread() {
  const tabs = document.getElementById("conv-tabs");
  if (!tabs?.dataset.unread) return;
  const counts = JSON.parse(tabs.dataset.unread);
  list.querySelectorAll("li.conv").forEach((row) => {
    const n = counts[row.id.slice("conv-".length)] || 0;
    let badge = row.querySelector(".conv__top .badge");
    if (!n) { badge?.remove(); return; }
    if (!badge) {
      badge = document.createElement("span");
      badge.className = "badge";
      row.querySelector(".conv__top")?.append(badge);
    }
    badge.textContent = String(n);
    badge.setAttribute("aria-label", tabs.dataset.unreadLabel.replace("{n}", String(n)));
  });
}

socket.on("admin:conversation", ({ html }) => {
  const row = fragment(html);
  const old = document.getElementById(row.id);
  refreshTabs();
  if (!inTab(row)) { old?.remove(); return; }
  keepingFocus(() => {
    if (old) old.replaceWith(row); else list.prepend(row);
    window.htmx?.process(row);
    sortRows();
  });
  markActive();
  if (row.dataset.chatId === current?.chatId) {
    const status = pane.querySelector("#visitor-status");
    const online = row.querySelector(".status__dot--online") !== null;
    status?.classList.toggle("status--online", online);
    status?.classList.toggle("status--offline", !online);
  }
});

// The visitor moved to another page of the host site: the open pane shows the new one.
socket.on("widget:page", ({ chat_id, html }) => {
  if (current?.chatId !== chat_id || !html) return;
  const line = fragment(html);
  const old = pane.querySelector("#visitor-page");
  if (old) old.replaceWith(line); else pane.querySelector(".chat__who")?.append(line);
});

socket.on("admin:alert", ({ html }) => {
  document.getElementById("telegram-alert").replaceWith(fragment(html));
});

socket.on("admin:removed", ({ chat_id }) => {
  list.querySelector(`[data-chat-id="${CSS.escape(chat_id)}"]`)?.remove();
  if (current?.chatId === chat_id) {
    current.dispose();
    current = null;
    pane.replaceChildren();
    markActive();
  }
});

document.body.addEventListener("htmx:afterSwap", (event) => {
  if (event.detail.target === pane) mount();
  // Opening a conversation reads it (this operator's counts change); a search shows rows
  // rendered with the team's counts.
  if (event.detail.target === pane) refreshTabs();
  if (event.detail.target === list) applyUnread();
});

mount();

// Calls load on first use: a call button, the microphone test, or a visitor's call (it rings here with a ringtone).
const { socket: callSocket, calls } = lazyCalls("admin", "[data-call-chat], #call-test");
callSocket.on("connect", () => {
  document.querySelectorAll("[data-call-chat]").forEach((b) => { b.disabled = false; });
  document.getElementById("call-test").hidden = false;
});
document.body.addEventListener("htmx:afterSwap", () => {
  document.querySelectorAll("[data-call-chat]").forEach((b) => { b.disabled = !callSocket.connected; });
});
document.body.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-call-chat]");
  if (button) (await calls()).dial(button.dataset.callChat, { name: button.dataset.callName });
});
document.getElementById("call-test").addEventListener("click", async () => (await calls()).dial(null, { echo: true }));
