"""The reference cluster (HAProxy in front of 2-3 processes, one PostgreSQL, one Redis): the
two sides of a conversation on different processes, and a process killed mid-stream."""

from __future__ import annotations

import asyncio
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from app.chat.rooms import ADMINS
from tests.support.clients import (
    ADMIN_COOKIE,
    VISITOR_COOKIE,
    Peer,
    admin_login,
    client_id,
    jarless,
    start_visitor,
)
from tests.support.cluster import PROCESS_COOKIE, Cluster, cluster, on_process
from tests.support.reliable import Reader, Sender, close_for_good
from tests.support.server import (
    REDIS_URL,
    ROOT,
    Server,
    create_pg_database,
    drop_pg_database,
    free_port,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

TOTAL = 300
WINDOW = 4
# The product's promise for a killed process: its sockets leave presence within 30 s.
WITHIN = 30


async def process_of(c: Cluster, key: str) -> set[int]:
    """Which processes (1-based) hold sockets under a presence key, read from Redis."""
    prefix = c.servers[0].environment()["REDIS_CHANNEL"]
    client = aioredis.from_url(REDIS_URL, decode_responses=True)
    try:
        members = await client.smembers(f"{prefix}:presence:{key}")
    finally:
        await client.aclose()
    pids = {n: server.proc.pid for n, server in enumerate(c.servers, 1) if server.proc}
    host = socket.gethostname()
    return {n for m in members for n, pid in pids.items() if str(m).startswith(f"{host}-{pid}-")}


async def page(url: str, cookie: str) -> str:
    async with jarless() as http, http.get(url, headers={"Cookie": cookie}) as r:
        assert r.status == 200
        return await r.text()


def pin(client: Reader | Sender, n: int) -> None:
    """Send this reconnecting client's requests to process n, through HAProxy."""
    http = client.sio.eio.http
    assert isinstance(http, aiohttp.ClientSession)
    http.cookie_jar.update_cookies({PROCESS_COOKIE: f"p{n}"})


async def test_the_two_sides_on_different_processes_behind_the_balancer(tmp_path: Path) -> None:
    async with cluster(tmp_path, 2) as c:
        admin_token = await admin_login(c.servers[1])
        token, cid = await start_visitor(c.url, "Küme", headers={"Cookie": f"{PROCESS_COOKIE}=p1"})
        visitor_cookie = on_process(f"{VISITOR_COOKIE}={token}", 1)
        admin_cookie = on_process(f"{ADMIN_COOKIE}={admin_token}", 2)
        admin = await Peer(c.url, admin_cookie, "admin").connect()
        visitor = await Peer(c.url, visitor_cookie, "visitor").connect()
        try:
            # Each side is where the test put it, through the one address of the balancer.
            # The one conversation of this fresh database is the first.
            assert await process_of(c, "v:1") == {1}
            assert await process_of(c, ADMINS) == {2}

            # Presence both ways: the panel sees the visitor come online; the visitor page,
            # served by process one, sees the operator connected to process two.
            await admin.wait_for(
                "admin:conversation",
                lambda r: r["chat_id"] == cid and "status__dot--online" in r["html"],
            )
            html = await page(c.url + "/", visitor_cookie)
            assert 'id="operator-status" class="status status--online"' in html

            assert (await visitor.call("join", {"chat_id": cid}))["ok"]
            assert (await admin.call("join", {"chat_id": cid}))["ok"]
            for n in range(10):
                ack = await visitor.call(
                    "send", {"chat_id": cid, "text": f"v{n}", "client_id": client_id()}
                )
                assert ack["ok"]
                ack = await admin.call(
                    "send", {"chat_id": cid, "text": f"a{n}", "client_id": client_id()}
                )
                assert ack["ok"]
            await admin.wait_for("chat:message", lambda m: m["seq"] == 19)
            await visitor.wait_for("chat:message", lambda m: m["seq"] == 20)
            got = [m["text"] for m in admin.events["chat:message"] if m["role"] == "visitor"]
            assert got == [f"v{n}" for n in range(10)]
            got = [m["text"] for m in visitor.events["chat:message"] if m["role"] == "admin"]
            assert got == [f"a{n}" for n in range(10)]

            # Typing, each way once.
            assert (await admin.call("typing", {"chat_id": cid}))["ok"]
            typing = await visitor.wait_for("chat:typing")
            assert {k: typing[k] for k in ("chat_id", "role")} == {"chat_id": cid, "role": "admin"}
            assert typing["name"] == "Destek"  # which operator types, across processes too
            assert (await visitor.call("typing", {"chat_id": cid}))["ok"]
            assert (await admin.wait_for("chat:typing"))["role"] == "visitor"

            # Receipts: the operator has seen the visitor's messages, and the other way.
            assert (await admin.call("receipt", {"chat_id": cid, "delivered": 19, "seen": 19}))[
                "ok"
            ]
            seen = await visitor.wait_for(
                "chat:receipt", lambda r: r["reader"] == "admin" and r["seen"] == 19
            )
            assert seen["by"]["name"] == "Destek"
            await visitor.call("receipt", {"chat_id": cid, "delivered": 20, "seen": 20})
            await admin.wait_for(
                "chat:receipt", lambda r: r["reader"] == "visitor" and r["seen"] == 20
            )

            # Leaving is seen across processes too.
            await admin.close()
            offline = await visitor.wait_for("presence:operator", lambda p: p["online"] is False)
            assert "status--offline" in offline["html"]
            admin = await Peer(c.url, admin_cookie, "admin").connect()
            await visitor.wait_for("presence:operator", lambda p: p["online"] is True)
            await visitor.close()
            await admin.wait_for(
                "admin:conversation",
                lambda r: r["chat_id"] == cid and "status__dot--online" not in r["html"],
            )
        finally:
            for peer in (admin, visitor):
                if peer.sio.connected:
                    await peer.close()


async def test_a_process_killed_while_messages_flow(tmp_path: Path) -> None:
    """Through HAProxy: the visitor's page on process one, the operator's on two, a panel on
    three. Process one is killed mid-stream: the page reconnects through the balancer to a
    live process and resends what was not acknowledged; nothing is lost or shown twice, and
    a visitor who was only on process one is shown offline within 30 s."""
    async with cluster(tmp_path, 3, {"PRESENCE_TTL_SECONDS": "3"}) as c:
        admin_token = await admin_login(c.servers[2])
        token, cid = await start_visitor(c.url, "Akış", headers={"Cookie": f"{PROCESS_COOKIE}=p1"})
        idle_token, idle_cid = await start_visitor(c.url, "Boşta")
        panel = await Peer(c.url, on_process(f"{ADMIN_COOKIE}={admin_token}", 3), "admin").connect()
        idle = await Peer(
            c.url, on_process(f"{VISITOR_COOKIE}={idle_token}", 1), "visitor"
        ).connect()
        reader = Reader(c.url, f"{ADMIN_COOKIE}={admin_token}", cid)
        sender = Sender(c.url, f"{VISITOR_COOKIE}={token}", cid)
        pin(reader, 2)
        pin(sender, 1)
        try:
            await reader.connect()
            await sender.connect()
            # Both visitors are on process one, the operator's two sockets on two and three.
            assert await process_of(c, "v:1") == {1}
            assert await process_of(c, "v:2") == {1}
            assert await process_of(c, ADMINS) == {2, 3}
            await panel.wait_for(
                "admin:conversation",
                lambda r: r["chat_id"] == idle_cid and "status__dot--online" in r["html"],
            )
            ids = [client_id() for _ in range(TOTAL)]
            queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
            for n, cl in enumerate(ids):
                queue.put_nowait((cl, f"message {n}"))

            async def worker() -> None:
                while not queue.empty():
                    cl, text = queue.get_nowait()
                    await sender.send_until_acked(cl, text)

            workers = asyncio.gather(*[worker() for _ in range(WINDOW)])
            while len(sender.acked) < TOTAL // 3:
                await asyncio.sleep(0.01)
            killed_at = time.monotonic()
            await asyncio.to_thread(c.kill, 1)
            await asyncio.wait_for(workers, 120)

            deadline = time.monotonic() + 30
            while len(reader.shown) < TOTAL and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert sorted(sender.acked.values()) == list(range(1, TOTAL + 1)), "one seq each"
            assert sorted(reader.shown) == list(range(1, TOTAL + 1)), "nothing lost"
            assert len(reader.shown) == len(set(reader.shown)), "nothing shown twice"
            assert sender.retries > 0, "the kill cut sends in flight"

            # The visitor who was only on the killed process goes offline in the panel...
            remaining = WITHIN - (time.monotonic() - killed_at)
            await panel.wait_for(
                "admin:conversation",
                lambda r: r["chat_id"] == idle_cid and "status__dot--online" not in r["html"],
                timeout=max(remaining, 0.1),
            )
            # ...while the one whose page moved to a live process is still online there.
            admin_cookie = on_process(f"{ADMIN_COOKIE}={admin_token}", 3)
            moved = await page(f"{c.url}/admin/c/{cid}", admin_cookie)
            gone = await page(f"{c.url}/admin/c/{idle_cid}", admin_cookie)
            status = re.compile(r'class="status (status--\w+)" id="visitor-status"')
            assert status.findall(moved) == ["status--online"]
            assert status.findall(gone) == ["status--offline"]
        finally:
            for client in (reader.sio, sender.sio):
                await close_for_good(client)
            for peer in (panel, idle):
                if peer.sio.connected:
                    await peer.close()


def launch(workdir: Path, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`scripts/cluster.py -n 2`, as `make cluster N=2` runs it."""
    command = [sys.executable, "scripts/cluster.py", "-n", "2", "--port", str(port)]
    with (workdir / "launcher.log").open("ab") as log:
        return subprocess.Popen(
            [*command, "--workdir", str(workdir)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def test_the_launcher_starts_and_stops_the_whole_cluster(tmp_path: Path) -> None:
    """`make cluster`'s script: N processes behind HAProxy on one address, new clients spread
    round-robin, a socket through the balancer, and one SIGTERM stops everything."""
    url, name = await create_pg_database()
    env = Server(database_url=url, workdir=tmp_path).environment()
    env.update(REDIS_URL=REDIS_URL, REDIS_CHANNEL=f"sohbet-test-{secrets.token_hex(4)}")
    port = free_port()
    launcher = launch(tmp_path, port, env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        ready = False
        async with aiohttp.ClientSession() as http:
            while not ready:
                assert launcher.poll() is None, (tmp_path / "launcher.log").read_text()
                assert time.monotonic() < deadline, "the cluster did not come up"
                try:
                    async with http.get(base + "/health/ready") as r:
                        ready = r.status == 200
                except aiohttp.ClientError:
                    await asyncio.sleep(0.2)
        processes = set()
        for _ in range(4):
            async with jarless() as http, http.get(base + "/health/ready") as r:
                processes.add(r.cookies[PROCESS_COOKIE].value)
        assert processes == {"p1", "p2"}
        token, _ = await start_visitor(base, "Başlatıcı")
        visitor = await Peer(base, f"{VISITOR_COOKIE}={token}", "visitor").connect()
        await visitor.close()
    finally:
        launcher.send_signal(signal.SIGTERM)
        await asyncio.to_thread(launcher.wait, 30)
        await drop_pg_database(name)
    assert launcher.returncode == 0
    log = (tmp_path / "p1.log").read_text()
    assert "Tortoise-ORM shutdown" in log, "each process stopped cleanly"
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientError):
            async with http.get(base + "/health/ready"):
                pass
