// A message the server refused for good, set aside by static/js/chat.js: its bubble says why,
// with Delete, and Try again where sending it again can help. Loaded when one first fails.

// Refusals that sending the same message again cannot change (its content or shape).
const FINAL = new Set([
  "too_large", "bad_packet", "bad_text", "message_too_long", "message_empty", "message_not_text",
  "bad_client_id", "bad_payload", "bad_chat", "blocked",
]);

export function showFailed(conv, item, node) {
  const state = node.querySelector(".msg__state");
  const retry = node.querySelector('[data-outbox="retry"]');
  if (!node.dataset.sending) {
    node.dataset.sending = state.textContent;
    retry.addEventListener("click", () => {
      delete item.failed;
      conv.save();
      node.classList.remove("msg--failed");
      state.textContent = node.dataset.sending;
      node.querySelector("[data-outbox-actions]").hidden = true;
      conv.flush();
    });
    node.querySelector('[data-outbox="delete"]').addEventListener("click", () => {
      conv.outbox = conv.outbox.filter((i) => i.client_id !== item.client_id);
      conv.save();
      node.remove();
    });
  }
  node.classList.add("msg--failed");
  state.textContent = item.failed.message || item.failed.error;
  node.querySelector("[data-outbox-actions]").hidden = false;
  retry.hidden = FINAL.has(item.failed.error);
}
