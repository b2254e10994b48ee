import { Conversation, followViewport, fragment, wire } from "./chat.js";

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
