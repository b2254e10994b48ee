// The Sohbet widget loader: a chat bubble for a host site. Until the bubble is opened it loads
// nothing but a tiny status (is this site allowed, is an operator online), asked again rarely
// and when the page is shown again; the chat itself runs in a frame on Sohbet's origin, so the
// host page can't read the conversation. Messages between the two are origin-checked both ways.
(() => {
  const C = __SOHBET__;
  const me = document.currentScript;
  if (!me || window.Sohbet) return;
  const base = new URL(me.src).origin;
  const d = me.dataset;
  const side = d.position === "left" ? "left" : "right";
  const color = /^(#[0-9a-f]{3,8}|[a-z]+)$/i.test(d.color || "") ? d.color : "#4338ca";
  const greeting = d.greeting || "Chat with us";
  const USED = "sohbet:used";
  const fns = { unread: [] };
  let frame, panel, closer, unread = 0, isOpen = false, who = null, answer = null, state = "", timer;
  const css = (el, s) => Object.assign(el.style, s);
  const el = (tag, attrs = {}) => Object.assign(document.createElement(tag), attrs);
  const phone = matchMedia("(max-width: 600px)");
  const memo = (k, v) => { try { return v === undefined ? localStorage.getItem(k) : localStorage.setItem(k, v); } catch { return null; } };

  const btn = el("button", { type: "button", title: greeting, id: "sohbet-launcher" });
  btn.setAttribute("aria-label", greeting);
  btn.setAttribute("aria-expanded", "false");
  btn.innerHTML = '<svg viewBox="0 0 24 24" width="28" height="28" aria-hidden="true"><path fill="currentColor" d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z"/></svg>';
  css(btn, { position: "fixed", bottom: "20px", [side]: "20px", width: "56px", height: "56px", borderRadius: "50%", border: "0", padding: "0", background: color, color: "#fff", boxShadow: "0 4px 14px rgba(0,0,0,.3)", cursor: "pointer", zIndex: 2147483646 });
  const badge = el("span", { id: "sohbet-unread", hidden: true });
  badge.setAttribute("aria-hidden", "true");
  css(badge, { position: "absolute", top: "-4px", [side === "right" ? "left" : "right"]: "-4px", minWidth: "20px", height: "20px", borderRadius: "10px", background: "#dc2626", color: "#fff", font: "bold 12px/20px sans-serif" });
  const dot = el("span", { id: "sohbet-online" });
  dot.setAttribute("aria-hidden", "true");
  css(dot, { position: "absolute", bottom: "2px", [side]: "2px", width: "10px", height: "10px", borderRadius: "50%", border: "2px solid #fff", background: "#9ca3af" });
  btn.append(badge, dot);

  const place = () => {
    if (!panel) return;
    css(panel, phone.matches
      ? { inset: "0", width: "100%", height: "100%", borderRadius: "0" }
      : { inset: "auto", bottom: "88px", [side]: "20px", width: "380px", height: "min(640px, calc(100vh - 110px))", borderRadius: "12px" });
  };
  const build = () => {
    if (panel) return;
    panel = el("div", { id: "sohbet-panel" });
    panel.setAttribute("role", "dialog");
    panel.setAttribute("aria-label", greeting);
    css(panel, { position: "fixed", zIndex: 2147483647, overflow: "hidden", background: "#fff", boxShadow: "0 8px 30px rgba(0,0,0,.3)", display: "none", flexDirection: "column" });
    const bar = el("div");
    css(bar, { display: "flex", justifyContent: "flex-end", background: color });
    const x = el("button", { type: "button", textContent: "×", title: "Close", id: "sohbet-close" });
    closer = x;
    x.setAttribute("aria-label", "Close");
    css(x, { border: "0", background: "none", color: "#fff", font: "24px/32px sans-serif", width: "44px", cursor: "pointer" });
    x.onclick = () => api.close();
    bar.appendChild(x);
    frame = el("iframe", { title: greeting, src: `${base}${C.frame}&origin=${encodeURIComponent(location.origin)}` });
    frame.allow = "microphone; camera; autoplay; clipboard-write";
    css(frame, { border: "0", flex: "1", width: "100%" });
    panel.append(bar, frame);
    document.body.appendChild(panel);
    place();
    phone.addEventListener("change", place);
    memo(USED, "1");
  };
  const tell = (m) => frame && frame.contentWindow.postMessage(m, base);
  const show = () => {
    badge.hidden = !unread;
    badge.textContent = unread;
    btn.title = (unread ? `${greeting} (${unread})` : greeting) + (state && ` — ${state}`);
    btn.setAttribute("aria-label", btn.title);
  };
  // Allowed here, and the operator's state: a refusal (the site was taken off the list) takes
  // the bubble away; a network error keeps it as it is until the next try.
  const ask = () => {
    clearTimeout(timer);
    if (document.hidden) return;
    fetch(`${base}/widget/status`, { credentials: "omit" }).then((r) => r.json()).then((s) => {
      if (!s.ok) return btn.remove(), panel && panel.remove(), panel = null;
      state = s.label;
      dot.style.background = s.online ? "#16a34a" : "#9ca3af";
      btn.dataset.online = s.online;
      show();
      if (!btn.isConnected) document.body ? mount() : addEventListener("DOMContentLoaded", mount);
      timer = setTimeout(ask, s.poll * 1e3);
    }, () => { timer = setTimeout(ask, 6e4); });
  };
  const chime = () => {
    try {
      const a = new AudioContext(), o = a.createOscillator(), g = a.createGain();
      o.frequency.value = 880;
      g.gain.setValueAtTime(0.08, a.currentTime);
      g.gain.exponentialRampToValueAtTime(0.001, a.currentTime + 0.4);
      o.connect(g).connect(a.destination);
      o.start();
      o.stop(a.currentTime + 0.4);
    } catch { /* no sound: the badge still shows */ }
  };

  addEventListener("message", (e) => {
    if (!frame || e.origin !== base || e.source !== frame.contentWindow) return;
    const m = e.data || {};
    if (m.sohbet === "ready") {
      tell({ sohbet: "page", url: location.href, title: document.title });
      if (who) tell({ sohbet: "identify", user: who });
    } else if (m.sohbet === "reply" && !isOpen) {
      unread += 1;
      show();
      chime();
      fns.unread.forEach((fn) => fn(unread));
    } else if (m.sohbet === "close") {
      api.close();
    } else if (m.sohbet === "presence") {
      ask();
    } else if (m.sohbet === "identified" && answer) {
      answer({ ok: m.ok, error: m.error });
      answer = null;
    }
  });
  addEventListener("keydown", (e) => { if (e.key === "Escape" && isOpen) api.close(); });

  const api = {
    open() {
      if (!btn.isConnected) return;
      build();
      isOpen = true;
      panel.style.display = "flex";
      unread = 0;
      show();
      btn.setAttribute("aria-expanded", "true");
      // The keyboard goes to the panel's close button, the next Tab into the chat. Not
      // frame.focus(): on a frame already loaded (a returning visitor's, built while closed)
      // Chromium can then lose every key typed in it, clicks too (1 open in ~10, measured).
      closer.focus();
    },
    close() {
      if (!panel) return;
      isOpen = false;
      panel.style.display = "none";
      btn.setAttribute("aria-expanded", "false");
      btn.focus();
    },
    on(name, fn) { (fns[name] || []).push(fn); },
    identify(user) {
      who = user;
      return new Promise((resolve) => { answer = resolve; tell({ sohbet: "identify", user }); });
    },
  };
  btn.onclick = () => (isOpen ? api.close() : api.open());
  const mount = () => {
    window.Sohbet = api;
    document.body.appendChild(btn);
    // A visitor who has chatted here gets replies (and the page they are on) without opening,
    // once the host page has loaded.
    const later = () => (window.requestIdleCallback || setTimeout)(build);
    if (memo(USED)) document.readyState === "complete" ? later() : addEventListener("load", later);
  };
  document.addEventListener("visibilitychange", ask);
  ask();
})();
