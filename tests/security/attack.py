"""What the attack cases share: clients that come from a chosen address, raw handshakes."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import aiohttp
import socketio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from playwright.async_api import Page, Request

from tests.support.clients import VISITOR_COOKIE, cookie_from, jarless, start_visitor
from tests.support.server import Server, query

# Servers in this suite trust 127.0.0.1 as their proxy, so each case can come from its own
# address (X-Forwarded-For) and the per-address budgets of one case never touch another's.
SUITE_ENV = {"TRUSTED_PROXIES": "127.0.0.1"}
_addresses = itertools.count(1)
T = TypeVar("T")
# Any JSON value, small: what a client could put in an event's payload.
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def fuzz_settings(examples: int) -> settings:
    """Hypothesis settings of the suite's fuzzers: every example is a real round trip to a
    server (no deadline, slow is expected), the server fixture outlives the examples, and no
    example database is kept between runs."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,
    )


async def message_count(server: Server, cid: str) -> int:
    """Messages stored in a conversation, read from the database (not from what the API shows)."""
    rows = await query(
        server,
        "SELECT COUNT(*) FROM message m JOIN conversation c ON c.id = m.conversation_id "
        f"WHERE c.cid = '{cid}'",
    )
    return int(rows[0][0])


def new_address() -> str:
    """A fresh client address from the documentation range 198.18.0.0/15."""
    n = next(_addresses)
    return f"198.18.{n // 250}.{n % 250 + 1}"


async def start_from(
    server: Server, name: str, address: str | None = None
) -> tuple[int, str | None, str]:
    """POST the name form from an address; (status, visitor token or None, page)."""
    async with jarless() as http:
        async with http.post(
            server.url + "/start",
            data={"name": name},
            headers={"X-Forwarded-For": address or new_address()},
            allow_redirects=False,
        ) as resp:
            return resp.status, cookie_from(resp, VISITOR_COOKIE), await resp.text()


async def visitor(server: Server, name: str = "Eda") -> tuple[str, str]:
    """A new visitor from a fresh address: (token, CID)."""
    return await start_visitor(server.url, name, headers={"X-Forwarded-For": new_address()})


async def handshake(
    url: str,
    cookie: str,
    *,
    origin: str | None = None,
    transport: str = "websocket",
    auth: dict[str, Any] | None = None,
    namespace: str = "/chat",
) -> bool:
    """Try a Socket.IO connection to a namespace; True if the server accepted it (then closed)."""
    headers = {"Cookie": cookie}
    if origin is not None:
        headers["Origin"] = origin
    # Our own HTTP session: engine.io leaks the one it makes when a connect fails.
    async with aiohttp.ClientSession() as http:
        client = socketio.AsyncClient(reconnection=False, http_session=http)
        try:
            await client.connect(
                url,
                namespaces=[namespace],
                headers=headers,
                auth=auth,
                transports=[transport],
                wait_timeout=10,
            )
        except socketio.exceptions.ConnectionError:
            return False
        if transport == "polling":
            # A polite polling disconnect waits for the pending long-poll GET, which the server
            # holds until its next ping (25 s); end it here instead.
            read_loop = client.eio.read_loop_task
            await client.eio.disconnect(abort=True)
            if read_loop is not None:
                read_loop.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await read_loop
        else:
            await client.disconnect()
        return True


class LoopThread:
    """An event loop in a thread, so synchronous hypothesis tests can drive async clients."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class Requests:
    """Every request a page makes; those the content could have caused fail the test."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.suspicious: list[str] = []

    def attach(self, page: Page) -> None:
        page.on("request", self._seen)

    def _seen(self, request: Request) -> None:
        url = request.url
        if "xss-canary" in url or not (url.startswith(self.base) or url.startswith("data:")):
            self.suspicious.append(url)
