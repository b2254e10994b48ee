// "Continue on another device": asks the server for a one-time link and shows its dialog
// (server-rendered: the QR code and the link). Loaded on first use only.
export async function openHandoff(errorBox) {
  const response = await fetch("/handoff", { method: "POST", headers: { "HX-Request": "true" } });
  const html = await response.text();
  if (!response.ok) {
    errorBox.textContent = new DOMParser().parseFromString(html, "text/html").body.textContent.trim();
    errorBox.hidden = false;
    return;
  }
  document.getElementById("handoff-dialog")?.remove();
  const tpl = document.createElement("template");
  tpl.innerHTML = html.trim();
  const dialog = tpl.content.firstElementChild;
  document.body.append(dialog);
  dialog.querySelector("[data-close]").addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => dialog.remove());
  const copy = dialog.querySelector("[data-copy]");
  copy.addEventListener("click", async () => {
    const input = dialog.querySelector(copy.dataset.copy);
    input.select();
    try { await navigator.clipboard.writeText(input.value); } catch { document.execCommand?.("copy"); }
    copy.textContent = copy.dataset.copied;
  });
  dialog.showModal();
}
