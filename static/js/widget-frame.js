// The visitor page inside the widget's frame. A third-party frame's cookies may be blocked or
// partitioned away, so the visitor's token lives in this frame's own storage and goes with
// every request: the Socket.IO `auth`, a header on HTMX requests and uploads. The rest of the
// page is the standalone visitor page, unchanged. Runs before the page's other scripts.
(() => {
  const KEY = "sohbet:widget:token";
  const HEADER = "X-Sohbet-Visitor";
  const meta = document.querySelector('meta[name="sohbet-widget"]');
  const origin = meta.dataset.origin;
  const store = {
    get: () => { try { return localStorage.getItem(KEY); } catch { return null; } },
    set: (v) => { try { localStorage.setItem(KEY, v); } catch { /* storage off: this visit only */ } },
    drop: () => { try { localStorage.removeItem(KEY); } catch { /* nothing kept */ } },
  };
  if (meta.dataset.token) store.set(meta.dataset.token);
  if (meta.dataset.forget) store.drop();
  const token = meta.dataset.token || store.get();
  const toHost = (message) => window.parent.postMessage({ sohbet: message.type, ...message }, origin);

  const post = (action, fields) => {
    const form = document.createElement("form");
    form.method = "post";
    form.action = action;
    for (const [name, value] of Object.entries(fields)) {
      const input = document.createElement("input");
      input.type = "hidden";
      input.name = name;
      input.value = value;
      form.appendChild(input);
    }
    document.body.appendChild(form);
    form.submit();
  };

  // The language cookie is a third-party one here and would not be kept: the frame follows
  // the browser's language instead of offering a switch that does nothing.
  document.querySelectorAll('a[href^="/lang/"]').forEach((link) => (link.closest(".lang") || link).remove());
  const startForm = document.getElementById("start-form");
  if (startForm) {
    if (token && !meta.dataset.forget) {
      // A returning visitor: show their conversation, not the name form.
      document.documentElement.style.visibility = "hidden";
      post("/widget/frame", { token, origin });
      return;
    }
    startForm.action = "/widget/start";
    const field = (name, value) => {
      const input = startForm.querySelector(`input[name="${name}"]`) || document.createElement("input");
      input.type = "hidden";
      input.name = name;
      input.value = value;
      startForm.appendChild(input);
    };
    field("origin", origin);
    // The host page goes with the new conversation, so its first notice already names it.
    window.addEventListener("message", (event) => {
      if (event.origin !== origin || event.source !== window.parent) return;
      if ((event.data || {}).sohbet !== "page") return;
      field("host_url", String(event.data.url || ""));
      field("host_title", String(event.data.title || ""));
    });
    toHost({ type: "ready" });
  }
  // A reload of the frame asks again with the kept token instead of resubmitting a form.
  history.replaceState(null, "", `/widget/frame?origin=${encodeURIComponent(origin)}`);
  if (startForm) return;

  // Where the partitioned cookie is kept, the token may be unknown here: the cookie goes.
  const headers = token ? { [HEADER]: token } : {};
  if (token) {
    const own = (url) => new URL(url, location.href).origin === location.origin;
    document.addEventListener("htmx:configRequest", (event) => { event.detail.headers[HEADER] = token; });
    const open = XMLHttpRequest.prototype.open;
    const send = XMLHttpRequest.prototype.send;
    XMLHttpRequest.prototype.open = function (method, url, ...rest) {
      this.sohbetOwn = own(url);
      return open.call(this, method, url, ...rest);
    };
    XMLHttpRequest.prototype.send = function (body) {
      if (this.sohbetOwn) this.setRequestHeader(HEADER, token);
      return send.call(this, body);
    };
  }
  const request = (path, body) => fetch(path, {
    method: "POST",
    headers: { ...headers, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  }).then((r) => r.json());

  // The socket library sets window.io when it loads (after this script): hand every socket
  // the token, and tell the host page when the operator writes.
  let real;
  Object.defineProperty(window, "io", {
    configurable: true,
    get: () => real,
    set: (lib) => {
      real = Object.assign((url, options = {}) => {
        const auth = token ? { ...(options.auth || {}), token } : options.auth;
        const socket = lib(url, { ...options, auth });
        if (url === "/chat") {
          socket.on("chat:message", (m) => { if (m && m.role === "admin") toHost({ type: "reply" }); });
          // The launcher asks for the operator's state (in the host page's language) again.
          socket.on("presence:operator", () => toHost({ type: "presence" }));
        }
        return socket;
      }, lib);
    },
  });

  window.addEventListener("message", async (event) => {
    if (event.origin !== origin || event.source !== window.parent) return;
    const data = event.data || {};
    if (data.sohbet === "page") {
      await request("/widget/page", { url: String(data.url || ""), title: String(data.title || "") });
    } else if (data.sohbet === "identify") {
      const answer = await request("/widget/identify", data.user || {});
      toHost({ type: "identified", ok: answer.ok === true, error: answer.message || "" });
    }
  });
  // Escape inside the frame never reaches the host page: pass it on, to close the panel.
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !event.defaultPrevented) toHost({ type: "close" });
  });
  toHost({ type: "ready" });
})();
