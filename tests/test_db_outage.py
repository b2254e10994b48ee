"""A transaction whose BEGIN is lost with the database connection must not break the next ones.

tortoise (1.1.9) takes a pooled connection and makes it the task's connection before it sends
BEGIN; when BEGIN fails it leaves both behind, and every later transaction in that task nests
into the dead one ("connection has been released back to the pool"). The message writer is one
long-lived task: one such BEGIN stopped every message from being stored until a restart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.support.clients import Peer, client_id, start_visitor, visitor_peer
from tests.support.proxy import CuttingProxy, postgres_behind_proxy
from tests.support.server import Server

pytestmark = pytest.mark.postgres


@asynccontextmanager
async def visitor_in_chat_behind_proxy(
    tmp_path: Path, database: str
) -> AsyncIterator[tuple[CuttingProxy, Server, Peer, str]]:
    """A server that reaches PostgreSQL through a cutting proxy, and a visitor in their chat."""
    proxy, proxied = await postgres_behind_proxy(database)
    server = Server(database_url=proxied, workdir=tmp_path)
    await server.start()
    try:
        token, cid = await start_visitor(server.url, "Kesinti")
        visitor = await visitor_peer(server.url, token)
        try:
            assert (await visitor.call("join", {"chat_id": cid}))["ok"]
            yield proxy, server, visitor, cid
        finally:
            await visitor.close()
    finally:
        server.stop()
        await proxy.stop()


async def test_messages_are_stored_again_after_a_begin_lost_with_the_connection(
    tmp_path: Path, database: str
) -> None:
    async with visitor_in_chat_behind_proxy(tmp_path, database) as (proxy, _, visitor, cid):
        # The next BEGIN sent to PostgreSQL - this message's transaction - loses the connection.
        proxy.cut_at = b"BEGIN"
        first = {"chat_id": cid, "text": "bir", "client_id": client_id()}
        ack = await visitor.call("send", first)
        assert proxy.cut_at is None, "the message's BEGIN went through the proxy"
        if not ack["ok"]:
            # Not committed, so not acknowledged: the page sends it again with its id.
            assert ack["error"] == "server_error", ack
            ack = await visitor.call("send", first)
        assert ack["ok"] and ack["message"]["seq"] == 1, ack
        ack = await visitor.call("send", {"chat_id": cid, "text": "iki", "client_id": client_id()})
        assert ack["ok"] and ack["message"]["seq"] == 2, ack


async def test_an_outage_is_logged_once_when_it_starts_and_summed_up_when_it_ends(
    tmp_path: Path, database: str
) -> None:
    """Sends that fail while PostgreSQL cannot be reached log one warning, not a traceback
    each, and the first success after them logs how many failed."""
    async with visitor_in_chat_behind_proxy(tmp_path, database) as (proxy, server, visitor, cid):
        before = server.log()
        proxy.refusing = True
        proxy.cut()
        sends = [
            {"chat_id": cid, "text": f"mesaj {n}", "client_id": client_id()} for n in range(12)
        ]
        for send in sends:
            ack = await visitor.call("send", send)
            assert ack["ok"] is False and ack["error"] == "server_error", ack
        proxy.refusing = False
        for send in sends:  # the page's outbox sends them again, with their ids
            ack = await visitor.call("send", send)
            assert ack["ok"], ack
        during = server.log()[len(before) :]
    ours = [line for line in during.splitlines() if " sohbet." in line]
    assert not any("handler failed" in line or "batch of" in line for line in ours), during
    started = [line for line in ours if "the database cannot be reached" in line]
    assert len(started) == 1 and "WARNING sohbet.chat.socket: /chat:" in started[0], during
    ended = [line for line in ours if "the database answers again" in line]
    assert len(ended) == 1 and "failed meanwhile: 12 events (send 12)" in ended[0], during
    # Tracebacks left are the database driver's own (asyncpg's pool, once as it reconnects).
    tracebacks = during.count("Traceback (most recent call last)")
    assert tracebacks <= during.count("WARNING asyncpg"), during
