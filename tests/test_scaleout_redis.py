"""Two server processes, one PostgreSQL, one Redis: rooms and presence span processes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest

from tests.support.clients import (
    VISITOR_COOKIE,
    admin_login,
    admin_peer,
    client_id,
    cookie_from,
    jarless,
    start_visitor,
    visitor_peer,
)
from tests.support.server import Server, redis_pair

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture(scope="module")
async def pair(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Server, Server]]:
    async with redis_pair(tmp_path_factory.mktemp("scaleout")) as servers:
        yield servers


async def test_visitor_on_one_process_admin_on_the_other(pair: tuple[Server, Server]) -> None:
    one, two = pair
    admin_token = await admin_login(two)
    token, cid = await start_visitor(one.url, "Redis")
    visitor = await visitor_peer(one.url, token)
    try:
        admin = await admin_peer(two.url, admin_token)
        # Presence crosses processes: the operator connected to process two is online for a
        # visitor on process one.
        online = await visitor.wait_for("presence:operator", lambda p: p["online"] is True)
        assert "status--online" in online["html"]
        await visitor.call("join", {"chat_id": cid})
        assert (await admin.call("join", {"chat_id": cid}))["ok"]

        for n in range(20):
            ack = await visitor.call(
                "send", {"chat_id": cid, "text": f"v{n}", "client_id": client_id()}
            )
            assert ack["ok"]
        await admin.wait_for("chat:message", lambda m: m["seq"] == 20)
        assert [m["text"] for m in admin.events["chat:message"]] == [f"v{n}" for n in range(20)]
        row = await admin.wait_for(
            "admin:conversation", lambda r: r["chat_id"] == cid and "v19" in r["html"]
        )
        assert "status__dot--online" in row["html"], "visitor presence is shared too"

        for n in range(20):
            ack = await admin.call(
                "send", {"chat_id": cid, "text": f"a{n}", "client_id": client_id()}
            )
            assert ack["ok"]
        await visitor.wait_for("chat:message", lambda m: m["seq"] == 40)
        assert [m["text"] for m in visitor.events["chat:message"] if m["role"] == "admin"] == [
            f"a{n}" for n in range(20)
        ]

        await admin.close()
        offline = await visitor.wait_for("presence:operator", lambda p: p["online"] is False)
        assert "status--offline" in offline["html"]
    finally:
        await visitor.close()


async def test_a_handoff_cuts_the_old_device_on_every_process(pair: tuple[Server, Server]) -> None:
    """The old device's socket is on process one; the link is redeemed on process two. The old
    socket is cut there too (through Redis), so it neither hears nor writes any more."""
    one, two = pair
    token, cid = await start_visitor(one.url, "Taşınan")
    old = await visitor_peer(one.url, token)
    try:
        assert (await old.call("join", {"chat_id": cid}))["ok"]
        async with jarless() as http:
            cookie = {"Cookie": f"{VISITOR_COOKIE}={token}"}
            async with http.post(two.url + "/handoff", headers=cookie) as r:
                link = re.search(r"/continue/([^\"]+)\"", await r.text())
            assert link
            async with http.post(two.url + link.group(0)[:-1], allow_redirects=False) as r:
                assert r.status == 303
                assert cookie_from(r, VISITOR_COOKIE)
        await old.wait_for("chat:closed", lambda e: e["chat_id"] == cid and e["moved"])
        deadline = asyncio.get_running_loop().time() + 10
        while "/chat" in old.sio.namespaces:
            assert asyncio.get_running_loop().time() < deadline, "the old device is still connected"
            await asyncio.sleep(0.05)
    finally:
        await old.close()
