"""Reading the audit trail in tests: its rows straight from the database, its page and its CSV
through HTTP as the owner's browser would, and operator requests from a chosen address."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tests.support.clients import ADMIN_COOKIE, jarless
from tests.support.server import Server, query

# What tests/support/server.py sets SECRET_KEY to: the keyed hash of an address is computed
# here independently of the app's code.
SECRET_KEY = "test-secret-key"
COLUMNS = "id, actor_id, actor_name, action, target, detail, address, surface"


def address_hash(address: str) -> str:
    return hmac.new(SECRET_KEY.encode(), address.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Entry:
    id: int
    actor_id: int | None
    actor_name: str
    action: str
    target: str
    detail: dict[str, Any]
    address: str
    surface: str


async def entries(server: Server, where: str = "1 = 1") -> list[Entry]:
    """The audit rows matching a SQL condition, oldest first."""
    rows = await query(server, f"SELECT {COLUMNS} FROM audit_entry WHERE {where} ORDER BY id")
    return [
        Entry(int(r[0]), r[1], r[2], r[3], r[4], json.loads(r[5]) if r[5] else {}, r[6], r[7])
        for r in rows
    ]


async def last_id(server: Server) -> int:
    """The newest entry's id (0 when there is none): a test's own entries come after it."""
    rows = await query(server, "SELECT MAX(id) FROM audit_entry")
    return int(rows[0][0] or 0)


async def wait_for_entries(
    server: Server, where: str, done: Callable[[list[Entry]], bool], timeout: float = 15
) -> list[Entry]:
    """Poll the trail until `done` holds for the rows matching `where` (Telegram updates are
    handled asynchronously); fail with what was there."""
    deadline = time.monotonic() + timeout
    while True:
        found = await entries(server, where)
        if done(found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"audit entries for {where!r} never matched: {found!r}")
        await asyncio.sleep(0.05)


def operator_headers(
    token: str, csrf: str = "", address: str = "", htmx: bool = False
) -> dict[str, str]:
    """An operator's request: the session cookie, the CSRF token, a client address sent through
    the trusted proxy (X-Forwarded-For), an HTMX request."""
    headers = {"Cookie": f"{ADMIN_COOKIE}={token}"}
    if csrf:
        headers["X-CSRF-Token"] = csrf
    if address:
        headers["X-Forwarded-For"] = address
    if htmx:
        headers["HX-Request"] = "true"
    return headers


async def post_as(
    server: Server, path: str, headers: dict[str, str], data: Any = None
) -> tuple[int, str]:
    async with jarless() as http:
        async with http.post(
            server.url + path, data=data, headers=headers, allow_redirects=False
        ) as r:
            return r.status, await r.text()


async def get_as(
    server: Server, path: str, headers: dict[str, str], params: dict[str, str] | None = None
) -> tuple[int, str, Mapping[str, str]]:
    """GET a page; (status, body, headers: any case of a name finds it)."""
    async with jarless() as http:
        async with http.get(
            server.url + path, headers=headers, params=params, allow_redirects=False
        ) as r:
            return r.status, await r.text(encoding="utf-8"), r.headers.copy()


def listed_ids(page: str) -> list[int]:
    """The entry ids the audit page lists, in its order."""
    return [int(n) for n in re.findall(r'data-entry="(\d+)"', page)]
