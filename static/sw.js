// Sohbet's service worker: the visitor page installs on a home screen and opens offline.
// Navigations to "/" go to the network first and fall back to the last copy; static files
// (content-hashed or versioned: immutable) come from the cache first. Socket.IO, the admin
// panel and everything else pass through untouched. Messages typed offline wait in the page's
// own outbox (static/js/chat.js) and are sent once, with their ids, when the socket is back.
const CACHE = "sohbet-shell-v1";
const SHELL = "/";

async function cacheShell() {
  const cache = await caches.open(CACHE);
  const response = await fetch(SHELL, { credentials: "same-origin" });
  if (!response.ok || response.redirected) return;
  const html = await response.clone().text();
  await cache.put(SHELL, response);
  // The shell's own CSS and scripts (already in the HTTP cache: the page just loaded them).
  const assets = [...html.matchAll(/(?:src|href)="(\/static\/[^"]+)"/g)].map((m) => m[1].replaceAll("&amp;", "&"));
  await Promise.all(assets.map((url) => cache.add(url).catch(() => {})));
}

self.addEventListener("install", (event) => {
  event.waitUntil(cacheShell().catch(() => {}).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) if (name !== CACHE) await caches.delete(name);
    await self.clients.claim();
  })());
});

async function shellFirstFromNetwork(request) {
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(request);
    if (response.ok && !response.redirected) await cache.put(SHELL, response.clone());
    return response;
  } catch (error) {
    const cached = await cache.match(SHELL);
    if (cached) return cached;
    throw error;
  }
}

async function staticFromCache(request) {
  const cache = await caches.open(CACHE);
  const cached = await cache.match(request);
  if (cached) return cached;
  const response = await fetch(request);
  if (response.ok) await cache.put(request, response.clone());
  return response;
}

self.addEventListener("fetch", (event) => {
  const { request } = event;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (request.mode === "navigate" && url.pathname === SHELL) {
    event.respondWith(shellFirstFromNetwork(request));
  } else if (url.pathname.startsWith("/static/") && (url.searchParams.has("v") || url.pathname.startsWith("/static/vendor/"))) {
    event.respondWith(staticFromCache(request));
  }
});
