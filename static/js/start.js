// Remember the visitor's name on this device, so the form is filled in next time.
const input = document.getElementById("visitor-name");
const form = document.getElementById("start-form");
try {
  if (input && !input.value) input.value = localStorage.getItem("sohbet:name") || "";
  form?.addEventListener("submit", () => localStorage.setItem("sohbet:name", input.value.trim()));
} catch { /* storage disabled: the form still works */ }
input?.focus();
