// The operator's saved replies in the composer: "/" at the start of the box opens a list of them
// (rendered by the server: /admin/replies/pick), filtered as the operator types. Arrows move,
// Enter or Tab inserts, Escape closes. The box keeps the focus (aria-activedescendant), so a
// screen reader follows the active option and the status line says how many there are.

export function attachPicker(conversation) {
  const picker = conversation.root.querySelector("#reply-picker");
  if (!picker) return null;
  return new Picker(conversation, picker);
}

class Picker {
  constructor(conversation, picker) {
    this.conversation = conversation;
    this.input = conversation.input;
    this.picker = picker;
    this.status = conversation.root.querySelector("#reply-picker-status");
    this.url = picker.dataset.url;
    this.active = -1;
    this.query = null; // what the shown list is for; null while closed
    this.dismissed = false; // Escape: stays closed until the "/" is gone
    this.fetching = null;
    this.input.addEventListener("input", () => this.changed());
    // Capturing on the form: the composer's own Enter (send) must not see a key the list used.
    conversation.form.addEventListener("keydown", (event) => this.key(event), true);
    this.input.addEventListener("blur", () => this.close());
    // mousedown, not click: the box keeps the focus (and its caret) while an option is picked
    // or the list is scrolled. The "manage" link still takes a click.
    picker.addEventListener("mousedown", (event) => {
      if (event.target.closest("a")) return;
      event.preventDefault();
      const option = event.target.closest("[role=option]");
      if (option) this.choose(option);
    });
  }

  // The "/word" being typed at the start of the box, up to the caret; null when there is none.
  typed() {
    const { value, selectionStart, selectionEnd } = this.input;
    if (!value.startsWith("/") || selectionStart !== selectionEnd) return null;
    const head = value.slice(1, selectionStart);
    return /\s/.test(head) ? null : head;
  }

  changed() {
    if (this.inserting) return;
    const query = this.typed();
    if (query === null) {
      this.dismissed = false;
      this.close();
      return;
    }
    if (this.dismissed || query === this.query) return;
    this.load(query);
  }

  async load(query) {
    this.fetching?.abort();
    const fetching = (this.fetching = new AbortController());
    let html;
    try {
      const response = await fetch(`${this.url}&q=${encodeURIComponent(query)}`, {
        headers: { "HX-Request": "true" },
        signal: fetching.signal,
      });
      if (response.status === 401) { window.location.assign("/admin"); return; }
      if (!response.ok) throw new Error(String(response.status));
      html = await response.text();
    } catch {
      // Replaced by a newer query, or offline: the box still works without the list.
      if (fetching === this.fetching) { this.fetching = null; this.chooseWhenLoaded = false; }
      return;
    }
    if (fetching !== this.fetching || this.typed() !== query || this.dismissed) return;
    this.fetching = null;
    this.query = query;
    this.picker.innerHTML = html;
    this.picker.hidden = false;
    const body = this.picker.firstElementChild;
    this.input.setAttribute("aria-controls", "reply-options");
    this.move(this.options().length ? 0 : -1);
    if (this.status) this.status.textContent = body?.dataset.status ?? "";
    if (this.chooseWhenLoaded) {
      this.chooseWhenLoaded = false;
      this.choose(this.options()[this.active]);
    }
  }

  options() {
    return [...this.picker.querySelectorAll("[role=option]")];
  }

  move(index) {
    const options = this.options();
    this.active = options.length ? (index + options.length) % options.length : -1;
    options.forEach((option, i) => option.setAttribute("aria-selected", String(i === this.active)));
    const current = options[this.active];
    if (current) {
      this.input.setAttribute("aria-activedescendant", current.id);
      current.scrollIntoView({ block: "nearest" });
    } else {
      this.input.removeAttribute("aria-activedescendant");
    }
  }

  key(event) {
    const listed = this.query !== null || this.fetching !== null;
    if (event.target !== this.input || !listed || event.isComposing) return;
    const keys = {
      ArrowDown: () => this.move(this.active + 1),
      ArrowUp: () => this.move(this.active - 1),
      Enter: () => this.choose(this.options()[this.active]),
      Tab: () => this.choose(this.options()[this.active]),
      Escape: () => { this.dismissed = true; this.close(); },
    };
    const action = keys[event.key];
    if (!action || event.altKey || event.ctrlKey || event.metaKey) return;
    if ((event.key === "Enter" || event.key === "Tab") && this.fetching && !event.shiftKey) {
      // Typed faster than the list followed: the list on screen is for fewer letters, so the
      // choice waits for the list of what is typed now (never the wrong reply).
      event.preventDefault();
      event.stopPropagation();
      this.chooseWhenLoaded = true;
      return;
    }
    // Enter with nothing to choose (no match) still sends what was typed; Tab still moves on.
    if ((event.key === "Enter" || event.key === "Tab") && this.active < 0) return;
    if (event.key === "Enter" && event.shiftKey) return;
    event.preventDefault();
    event.stopPropagation();
    action();
  }

  // The option's text replaces the "/word" (what follows the caret stays).
  choose(option) {
    if (!option) return;
    const text = option.dataset.text;
    const { value, selectionStart } = this.input;
    const rest = value.slice(selectionStart);
    this.input.value = text + rest;
    this.input.selectionStart = this.input.selectionEnd = text.length;
    this.close();
    this.inserting = true;
    try {
      // The composer's own listeners: size, counter, and "typing…" for the visitor.
      this.input.dispatchEvent(new Event("input", { bubbles: true }));
    } finally {
      this.inserting = false;
    }
    this.input.focus();
    if (this.status) this.status.textContent = option.dataset.inserted ?? "";
  }

  close() {
    this.fetching?.abort();
    this.fetching = null;
    this.chooseWhenLoaded = false;
    this.query = null;
    this.active = -1;
    this.picker.hidden = true;
    this.picker.replaceChildren();
    this.input.removeAttribute("aria-activedescendant");
    this.input.removeAttribute("aria-controls");
  }
}
