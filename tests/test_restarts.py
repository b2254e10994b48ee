"""Restarts and a database outage while a visitor and the operator exchange messages.

The clients behave like the pages (tests/test_delivery_cuts.py): a send is retried with the
same client id until acknowledged, a reconnecting reader joins with its last seq and shows
each seq once. Through SIGKILL and SIGTERM restarts, and through a PostgreSQL outage of a few
seconds: every message is stored once, shown once on both sides, and nothing is acknowledged
that was not committed.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tests.support.clients import (
    Peer,
    admin_login,
    admin_peer,
    client_id,
    start_visitor,
    visitor_peer,
)
from tests.support.proxy import postgres_behind_proxy
from tests.support.reliable import Reader, Sender, close_for_good
from tests.support.server import (
    REDIS_URL,
    Server,
    query,
)

# Four server starts (or two outages) and 120 messages: minutes on a busy 2-core machine.
pytestmark = [pytest.mark.postgres, pytest.mark.timeout(900)]
PER_SIDE = 60


async def exchange(
    url: str, server: Server, disturb: Callable[[Callable[[], int]], Awaitable[None]]
) -> None:
    """Both sides send PER_SIDE messages while `disturb` runs; then check every invariant."""
    admin_token = await admin_login(server)
    token, chat_id = await start_visitor(server.url, "Kesinti")
    admin_cookie, visitor_cookie = f"sohbet_admin={admin_token}", f"sohbet_visitor={token}"
    readers = [Reader(url, admin_cookie, chat_id), Reader(url, visitor_cookie, chat_id, "visitor")]
    senders = [Sender(url, visitor_cookie, chat_id), Sender(url, admin_cookie, chat_id, "admin")]
    clients: list[Reader | Sender] = [*readers, *senders]
    for client in clients:
        await client.connect()
    ids = {sender: [client_id() for _ in range(PER_SIDE)] for sender in senders}

    async def side(sender: Sender, who: str) -> None:
        for n, cid in enumerate(ids[sender]):
            await sender.send_until_acked(cid, f"{who} {n}")
            await asyncio.sleep(0.02)

    acked = lambda: sum(len(s.acked) for s in senders)  # noqa: E731
    trouble = asyncio.ensure_future(disturb(acked))
    try:
        await asyncio.wait_for(
            asyncio.gather(side(senders[0], "visitor"), side(senders[1], "operator")), 300
        )
        await trouble
        total = 2 * PER_SIDE
        deadline = time.monotonic() + 60
        while any(len(r.shown) < total for r in readers) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        print(
            f"\n{total} messages: shown {[len(r.shown) for r in readers]}, deliveries "
            f"{[r.deliveries for r in readers]}, retries {[s.retries for s in senders]}, "
            f"duplicate acks {[s.duplicates for s in senders]}"
        )
        for reader in readers:
            assert sorted(reader.shown) == list(range(1, total + 1)), "nothing lost or twice"
        rows = await query(
            server,
            "SELECT m.client_id, m.text FROM message m JOIN conversation c "
            f"ON c.id = m.conversation_id WHERE c.cid = '{chat_id}'",
        )
        assert len(rows) == total, "one row per message"
        assert {r[0] for r in rows} == {cid for s in senders for cid in ids[s]}
        acked_seqs = sorted(seq for s in senders for seq in s.acked.values())
        assert acked_seqs == list(range(1, total + 1)), "each acknowledged once, by its seq"
    finally:
        trouble.cancel()
        for client in clients:
            await close_for_good(client.sio)


async def test_restarts_with_sigkill_and_sigterm_lose_nothing(
    tmp_path: Path, database: str
) -> None:
    server = Server(database_url=database, workdir=tmp_path)
    await server.start()
    restarts: list[tuple[str, float]] = []

    async def restart_repeatedly(acked: Callable[[], int]) -> None:
        for n, sig in enumerate((signal.SIGKILL, signal.SIGTERM, signal.SIGKILL, signal.SIGTERM)):
            while acked() < (n + 1) * 2 * PER_SIDE // 5:
                await asyncio.sleep(0.02)
            started = time.monotonic()
            await asyncio.to_thread(server.stop, sig)
            stopped = time.monotonic() - started
            await server.start()
            restarts.append((signal.Signals(sig).name, stopped))

    try:
        await exchange(server.url, server, restart_repeatedly)
    finally:
        server.stop()
    print("restarts (signal, seconds to stop):", restarts)
    assert [name for name, _ in restarts] == ["SIGKILL", "SIGTERM", "SIGKILL", "SIGTERM"]
    # SIGTERM with open sockets: Hypercorn's graceful timeout, not a hang.
    assert all(seconds < 12 for name, seconds in restarts if name == "SIGTERM"), restarts


async def test_a_database_outage_acknowledges_nothing_uncommitted(
    tmp_path: Path, database: str
) -> None:
    """PostgreSQL is reached through a proxy that refuses and cuts every connection for 3 s,
    twice, mid-exchange; sends during it get `server_error` and are retried with their id."""
    proxy, proxied = await postgres_behind_proxy(database)
    server = Server(database_url=proxied, workdir=tmp_path)
    await server.start()
    outages: list[int] = []

    async def cut_the_database(acked: Callable[[], int]) -> None:
        for n in (1, 3):
            while acked() < n * 2 * PER_SIDE // 5:
                await asyncio.sleep(0.02)
            proxy.refusing = True
            try:
                outages.append(proxy.cut())
                await asyncio.sleep(3)
            finally:
                # Whatever happens here, the database comes back (an outage that never ends
                # would only show as a 300 s timeout of the whole exchange).
                proxy.refusing = False

    try:
        await exchange(server.url, server, cut_the_database)
    finally:
        server.stop()
        await proxy.stop()
        # Shown when the test fails: a database that stayed away says why here.
        print("proxy: refusing", proxy.refusing, "upstream errors", proxy.upstream_errors[-5:])
    print("database connections cut per outage:", outages)
    assert len(outages) == 2


@pytest.mark.redis
async def test_a_graceful_stop_tells_the_other_process_the_operator_left(
    tmp_path: Path, database: str
) -> None:
    """SIGTERM cuts the stopping process's sockets as disconnects (their handlers run): a
    visitor on another process sees the operator whose only panel was there go offline."""
    env = {"REDIS_URL": REDIS_URL, "REDIS_CHANNEL": f"sohbet-stop-{secrets.token_hex(4)}"}
    stopping = Server(database, tmp_path, env_extra=env)
    staying = Server(database, tmp_path, env_extra=env)
    await asyncio.gather(stopping.start(), staying.start())
    peers: list[Peer] = []
    try:
        admin_token = await admin_login(stopping)
        token, _ = await start_visitor(staying.url, "Kalan")
        visitor = await visitor_peer(staying.url, token)
        peers.append(visitor)
        peers.append(await admin_peer(stopping.url, admin_token))
        await visitor.wait_for("presence:operator", lambda e: e["online"])
        await asyncio.to_thread(stopping.stop)
        await visitor.wait_for("presence:operator", lambda e: not e["online"], timeout=10)
    finally:
        for peer in peers:
            await peer.close()
        stopping.stop()
        staying.stop()
