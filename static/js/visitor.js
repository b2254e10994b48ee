// chat.js is imported by the content-hashed URL the page names (static files are cached for a
// year: a plain "./chat.js" could be last release's copy, running with this release's pages).
const chatModule = document.querySelector('link[rel="modulepreload"][data-module="chat"]').href;
const { Conversation, followViewport, fragment, lazyCalls, wire } = await import(chatModule);
const attentionModule = document.querySelector('link[rel="modulepreload"][data-module="attention"]').href;
const { attendVisitor } = await import(attentionModule);

const root = document.getElementById("conversation");
const banner = document.getElementById("connection-banner");
followViewport();

const socket = window.io("/chat", { auth: { as: "visitor" } });
const conversation = new Conversation(socket, root);
wire(socket, () => conversation, (online) => {
  banner.hidden = online;
  document.body.dataset.socket = online ? "up" : "down";
});
attendVisitor(socket, () => conversation).mounted();

socket.on("connect_error", (err) => {
  banner.hidden = false;
  if (err && err.message === "unauthorized") window.location.reload();
});
// An operator answered: the header names them ("You're talking to Ayşe").
const title = document.getElementById("chat-title");
const avatar = document.getElementById("chat-avatar");
const named = (m) => {
  if (!m || m.role !== "admin" || !m.author || m.chat_id !== root.dataset.chatId) return;
  if (m.seq < Number(title.dataset.authorSeq || 0)) return;
  title.dataset.authorSeq = String(m.seq);
  const business = m.author === title.dataset.business;
  title.textContent = business ? title.dataset.connected : title.dataset.talking.replace("{name}", m.author);
  avatar.textContent = m.author.slice(0, 1).toUpperCase();
};
socket.on("chat:message", named);
socket.on("chat:history", (messages) => messages.forEach(named));
socket.on("presence:operator", ({ html }) => {
  document.getElementById("operator-status").replaceWith(fragment(html));
});
// The conversation moved to another device, or the operator deleted it: the start page says which.
socket.on("chat:closed", ({ moved } = {}) => window.location.assign(moved ? "/?moved=1" : "/?ended=1"));
root.addEventListener("conversation:gone", () => window.location.assign("/?ended=1"));

document.getElementById("handoff-button")?.addEventListener("click", async (event) => {
  const { openHandoff } = await import(event.currentTarget.dataset.module);
  await openHandoff(document.getElementById("composer-error"));
});

// htmx only drives "load earlier messages" here: fetched on the first click, not on every load.
document.addEventListener("click", (event) => {
  const control = event.target.closest?.("[hx-get], [hx-post]");
  if (!control || window.htmx) return;
  event.preventDefault();
  const script = document.createElement("script");
  script.src = root.dataset.htmx;
  script.onload = () => { window.htmx.process(document.body); control.click(); };
  document.head.append(script);
}, true);

// The home-screen app and its offline shell (static/sw.js), registered once the page is up.
if ("serviceWorker" in navigator) {
  const register = () => navigator.serviceWorker.register("/sw.js").catch(() => {});
  if (document.readyState === "complete") register(); else window.addEventListener("load", register);
}

// Calls load on first use: the phone button, the microphone test, or a call from the operator.
const { socket: callSocket, calls } = lazyCalls("visitor", "#call-button, #call-test");
callSocket.on("connect", () => {
  callSocket.emit("join", { chat_id: root.dataset.chatId }, async (reply) => {
    const ringing = reply?.call;
    if (ringing?.state === "ringing" && ringing.from === "admin") (await calls()).incoming(ringing);
    document.getElementById("call-test").hidden = !reply?.echo;
  });
});
const phone = document.getElementById("call-button");
phone.disabled = false;
phone.addEventListener("click", async () => (await calls()).dial(root.dataset.chatId));
document.getElementById("call-test").addEventListener("click", async () => (await calls()).dial(root.dataset.chatId, { echo: true }));
