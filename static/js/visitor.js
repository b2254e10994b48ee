// chat.js is imported by the content-hashed URL the page names (static files are cached for a
// year: a plain "./chat.js" could be last release's copy, running with this release's pages).
const chatModule = document.querySelector('link[rel="modulepreload"][data-module="chat"]').href;
const { Conversation, followViewport, fragment, wire } = await import(chatModule);

const root = document.getElementById("conversation");
const banner = document.getElementById("connection-banner");
followViewport();

const socket = window.io("/chat", { auth: { as: "visitor" } });
const conversation = new Conversation(socket, root);
wire(socket, () => conversation, (online) => { banner.hidden = online; });

socket.on("connect_error", (err) => {
  banner.hidden = false;
  if (err && err.message === "unauthorized") window.location.reload();
});
socket.on("presence:operator", ({ html }) => {
  document.getElementById("operator-status").replaceWith(fragment(html));
});
socket.on("chat:closed", () => window.location.reload());
