"""Presence that heals: the sockets of a killed process leave presence within 30 s, and the
pages on the surviving process are told, as for a disconnect."""

from __future__ import annotations

import asyncio
import secrets
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.clients import (
    ADMIN_COOKIE,
    VISITOR_COOKIE,
    admin_login,
    admin_peer,
    jarless,
    start_visitor,
    visitor_peer,
)
from tests.support.server import REDIS_URL, Server, create_pg_database, drop_pg_database

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

# Short heartbeats so the test waits seconds, not the default's 15-20 s; the promise checked
# is the product's: gone from presence within 30 s of the kill.
TTL = "3"
WITHIN = 30


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Server, Server]]:
    url, name = await create_pg_database()
    env = {
        "REDIS_URL": REDIS_URL,
        "REDIS_CHANNEL": f"sohbet-test-{secrets.token_hex(4)}",
        "PRESENCE_TTL_SECONDS": TTL,
    }
    first = Server(database_url=url, workdir=tmp_path, env_extra=env)
    second = Server(database_url=url, workdir=tmp_path, env_extra=env)
    await asyncio.gather(first.start(), second.start())
    yield first, second
    await asyncio.gather(asyncio.to_thread(first.stop), asyncio.to_thread(second.stop))
    await drop_pg_database(name)


async def test_the_panel_sees_a_visitor_on_a_killed_process_go_offline(
    pair: tuple[Server, Server],
) -> None:
    doomed, survivor = pair
    admin_token = await admin_login(survivor)
    token, cid = await start_visitor(doomed.url, "Kesilen")
    # The panel is open first; it sees the visitor come online, then go.
    admin = await admin_peer(survivor.url, admin_token)
    visitor = await visitor_peer(doomed.url, token)
    try:
        await visitor.call("join", {"chat_id": cid})
        row = await admin.wait_for(
            "admin:conversation",
            lambda r: r["chat_id"] == cid and "status__dot--online" in r["html"],
        )
        assert row
        await asyncio.to_thread(doomed.stop, signal.SIGKILL)
        offline = await admin.wait_for(
            "admin:conversation",
            lambda r: r["chat_id"] == cid and "status__dot--online" not in r["html"],
            timeout=WITHIN,
        )
        assert offline
        # The conversation page the operator opens now says so too.
        async with jarless() as http:
            cookie = {"Cookie": f"{ADMIN_COOKIE}={admin_token}"}
            async with http.get(f"{survivor.url}/admin/c/{cid}", headers=cookie) as r:
                page = await r.text()
        assert 'id="visitor-status"' in page and "status--offline" in page, page[:2000]
    finally:
        await admin.close()
        await visitor.close()


async def test_a_visitor_sees_an_operator_on_a_killed_process_go_offline(
    pair: tuple[Server, Server],
) -> None:
    doomed, survivor = pair
    admin_token = await admin_login(doomed)
    token, _ = await start_visitor(survivor.url, "Bekleyen")
    visitor = await visitor_peer(survivor.url, token)
    admin = await admin_peer(doomed.url, admin_token)
    try:
        await visitor.wait_for("presence:operator", lambda p: p["online"] is True)
        await asyncio.to_thread(doomed.stop, signal.SIGKILL)
        offline = await visitor.wait_for(
            "presence:operator", lambda p: p["online"] is False, timeout=WITHIN
        )
        assert "status--offline" in offline["html"]
        # A reload of the visitor page on the surviving process shows the operator offline.
        async with jarless() as http:
            cookie = {"Cookie": f"{VISITOR_COOKIE}={token}"}
            async with http.get(survivor.url + "/", headers=cookie) as r:
                page = await r.text()
        assert 'id="operator-status" class="status status--offline"' in page, page[:2000]
    finally:
        await admin.close()
        await visitor.close()
