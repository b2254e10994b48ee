"""Real HTTP and Socket.IO clients for the tests, acting as a visitor or the operator."""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import socketio

from tests.support.server import ADMIN_PASSWORD, Server

VISITOR_COOKIE = "sohbet_visitor"
ADMIN_COOKIE = "sohbet_admin"


def cookie_from(resp: aiohttp.ClientResponse, name: str) -> str | None:
    morsel = resp.cookies.get(name)
    return morsel.value if morsel is not None else None


def set_cookie_header(resp: aiohttp.ClientResponse, name: str) -> str:
    """The whole Set-Cookie header that sets `name`, attributes and all."""
    return next(h for h in resp.headers.getall("Set-Cookie") if h.startswith(f"{name}="))


async def start_visitor(
    base_url: str,
    name: str = "Eda",
    headers: dict[str, str] | None = None,
    http: aiohttp.ClientSession | None = None,
) -> tuple[str, str]:
    """Open a conversation through the real form (sent with `headers`, through `http` when
    given: a session without a cookie jar); return (visitor token, CID)."""
    async with contextlib.AsyncExitStack() as stack:
        if http is None:
            http = await stack.enter_async_context(jarless())
        async with http.post(
            base_url + "/start", data={"name": name}, headers=headers, allow_redirects=False
        ) as resp:
            assert resp.status == 303, await resp.text()
            token = cookie_from(resp, VISITOR_COOKIE)
        assert token
        async with http.get(
            base_url + "/", headers={"Cookie": f"{VISITOR_COOKIE}={token}"}
        ) as resp:
            page = await resp.text()
    match = re.search(r'data-chat-id="([^"]+)"', page)
    assert match, page
    return token, match.group(1)


async def ask_code(
    http: aiohttp.ClientSession, base_url: str, password: str = ADMIN_PASSWORD
) -> tuple[int, str | None, str]:
    """Step 1 of the login: the password. Returns (status, challenge cookie, page)."""
    async with http.post(
        base_url + "/admin/login", data={"password": password}, allow_redirects=False
    ) as resp:
        return resp.status, cookie_from(resp, "sohbet_login"), await resp.text()


def send_code(http: aiohttp.ClientSession, base_url: str, code: str, login_cookie: str) -> Any:
    """Step 2's request (use with `async with`): the code, with the challenge cookie as
    `name=value` (a test over HTTPS sends the `__Host-` name)."""
    return http.post(
        base_url + "/admin/verify",
        data={"code": code},
        headers={"Cookie": login_cookie},
        allow_redirects=False,
    )


async def redeem_code(
    http: aiohttp.ClientSession, base_url: str, challenge: str, code: str
) -> tuple[int, str | None, str]:
    """Step 2: the one-time code. Returns (status, admin session cookie, page)."""
    async with send_code(http, base_url, code, f"sohbet_login={challenge}") as resp:
        return resp.status, cookie_from(resp, ADMIN_COOKIE), await resp.text()


async def admin_login(server: Server) -> str:
    """Sign in as the operator with the password and the code from the server log."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        status, challenge, page = await ask_code(http, server.url)
        assert status == 303 and challenge, page
        status, token, page = await redeem_code(
            http, server.url, challenge, server.last_login_code()
        )
        assert status == 303 and token, page
    return token


async def page_with(url: str, cookie: str, token: str) -> str:
    """GET a page holding one session cookie (`ADMIN_COOKIE` or `VISITOR_COOKIE`) and no jar."""
    async with jarless() as http:
        async with http.get(url, headers={"Cookie": f"{cookie}={token}"}) as r:
            return await r.text()


async def admin_csrf(base_url: str, admin_token: str) -> str:
    page = await page_with(base_url + "/admin", ADMIN_COOKIE, admin_token)
    match = re.search(r'"X-CSRF-Token": "([^"]+)"', page)
    assert match, page
    return match.group(1)


async def panel_action(
    base_url: str, admin_token: str, csrf: str, path: str, data: Any = None
) -> tuple[int, str]:
    """POST what a panel button sends with HTMX (cookie, CSRF token); (status, body)."""
    headers = {
        "Cookie": f"{ADMIN_COOKIE}={admin_token}",
        "X-CSRF-Token": csrf,
        "HX-Request": "true",
    }
    async with jarless() as http:
        async with http.post(base_url + path, data=data, headers=headers) as r:
            return r.status, await r.text()


CHAT_EVENTS = (
    "chat:message",
    "chat:history",
    "chat:deleted",
    "chat:typing",
    "chat:error",
    "chat:closed",
    "chat:receipt",
    "presence:operator",
    "admin:conversation",
    "admin:alert",
    "admin:removed",
)


class Peer:
    """A Socket.IO client on one namespace (`/chat` by default) that records every event."""

    def __init__(
        self,
        base_url: str,
        cookie: str,
        role: str,
        namespace: str = "/chat",
        events: tuple[str, ...] = CHAT_EVENTS,
    ) -> None:
        self.base_url = base_url
        self.cookie = cookie
        self.role = role
        self.namespace = namespace
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: dict[str, list[Any]] = defaultdict(list)
        self._changed = asyncio.Event()
        for name in events:
            self.sio.on(name, self._recorder(name), namespace=namespace)

    def _recorder(self, name: str) -> Any:
        async def record(data: Any = None) -> None:
            self.events[name].append(data)
            self._changed.set()

        return record

    async def connect(self) -> Peer:
        await self.sio.connect(
            self.base_url,
            namespaces=[self.namespace],
            headers={"Cookie": self.cookie},
            auth={"as": self.role},
            transports=["websocket"],
            wait_timeout=10,
        )
        return self

    async def call(self, event: str, data: Any, timeout: float = 10) -> Any:
        return await self.sio.call(event, data, namespace=self.namespace, timeout=timeout)

    async def wait_for(self, name: str, predicate: Any = None, timeout: float = 10) -> Any:
        """Wait until an event matching predicate has arrived; return it."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for item in self.events[name]:
                if predicate is None or predicate(item):
                    return item
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(
                    f"no {name} event matching in {timeout}s: {self.events[name]!r}"
                )
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass

    async def close(self) -> None:
        await self.sio.disconnect()


async def visitor_peer(base_url: str, token: str) -> Peer:
    return await Peer(base_url, f"{VISITOR_COOKIE}={token}", "visitor").connect()


async def admin_peer(base_url: str, token: str) -> Peer:
    return await Peer(base_url, f"{ADMIN_COOKIE}={token}", "admin").connect()


@asynccontextmanager
async def chat_sockets(
    base_url: str, admin_token: str, name: str
) -> AsyncIterator[tuple[str, str, Peer, Peer]]:
    """A new visitor's conversation, with the visitor's and the operator's sockets connected
    (closed afterwards): (visitor token, CID, visitor, operator)."""
    token, cid = await start_visitor(base_url, name)
    visitor = await visitor_peer(base_url, token)
    admin = await admin_peer(base_url, admin_token)
    try:
        yield token, cid, visitor, admin
    finally:
        await visitor.close()
        await admin.close()


def client_id() -> str:
    return secrets.token_hex(8)


def jarless() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())


async def call(
    server: Server, method: str, path: str, headers: dict[str, str], json: object = None
) -> tuple[int, Any]:
    async with jarless() as http:
        async with http.request(
            method, server.url + path, headers=headers, json=json, allow_redirects=False
        ) as r:
            body = await r.text()
            if r.content_type == "application/json":
                return r.status, await r.json()
            return r.status, body
