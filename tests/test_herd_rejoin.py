"""A herd of visitors leaving and coming back: what each disconnect and each stale join costs.

The server logs every SQL statement it runs (tortoise's `tortoise.db_client` logger at debug,
through Hypercorn's `--log-config`), so a test can see which database reads a socket caused.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, Route, WebSocketRoute, expect

from tests.support.clients import (
    admin_login,
    admin_peer,
    client_id,
    start_visitor,
    visitor_peer,
)
from tests.support.pages import PHONE, close_all, open_page, start_chat
from tests.support.server import SERVE_ARGS, Server

METRICS_TOKEN = "herd-metrics-token"
# A read of one conversation by id (the list row's), as tortoise writes it for SQLite.
ROW_READ = re.compile(r'^SQL .*FROM "conversation" WHERE "id"=', re.M)


def _log_config(folder: Path) -> Path:
    path = folder / "sql-log.json"
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"sql": {"format": "SQL %(message)s"}},
        "handlers": {
            "sql": {
                "class": "logging.StreamHandler",
                "formatter": "sql",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "tortoise.db_client": {"level": "DEBUG", "handlers": ["sql"], "propagate": False}
        },
    }
    path.write_text(json.dumps(config))
    return path


@pytest.fixture(scope="module", name="server")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    workdir = tmp_path_factory.mktemp("herd")
    srv = Server(
        database_url=f"sqlite://{workdir / 'sohbet.db'}",
        workdir=workdir,
        env_extra={"METRICS_TOKEN": METRICS_TOKEN},
        serve_args=(*SERVE_ARGS, "--log-config", f"json:{_log_config(workdir)}"),
    )
    await srv.start()
    try:
        yield srv
    finally:
        await asyncio.to_thread(srv.stop)


async def _visitor_sockets(server: Server) -> float:
    async with aiohttp.ClientSession() as http:
        async with http.get(
            server.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
        ) as resp:
            text = await resp.text()
    match = re.search(r'^sohbet_sockets_connected\{role="visitor"\} ([0-9.e+]+)$', text, re.M)
    assert match, text
    return float(match.group(1))


async def test_a_visitor_leaving_with_no_panel_open_reads_nothing(server: Server) -> None:
    token, cid = await start_visitor(server.url, "Herd")
    visitor = await visitor_peer(server.url, token)
    assert (await visitor.call("join", {"chat_id": cid}))["ok"]
    assert "SQL " in server.log(), "the server does not log its SQL: the test would see nothing"
    before = len(server.log())
    await visitor.close()
    # The socket leaves its rooms (which the metric counts) once its disconnect handler is done.
    deadline = asyncio.get_running_loop().time() + 20
    while await _visitor_sockets(server) > 0:
        assert asyncio.get_running_loop().time() < deadline, "the visitor never left"
        await asyncio.sleep(0.05)
    assert not ROW_READ.findall(server.log()[before:]), "a disconnect read the conversation"


async def test_twenty_joins_at_once_are_answered_by_one_replay(server: Server) -> None:
    token, cid = await start_visitor(server.url, "Herd")
    visitor = await visitor_peer(server.url, token)
    try:
        sent = await visitor.call("send", {"chat_id": cid, "text": "hi", "client_id": client_id()})
        assert sent["ok"]
        acks = await asyncio.gather(
            *(visitor.call("join", {"chat_id": cid, "last_seq": 0}, timeout=30) for _ in range(20))
        )
        for ack in acks:
            assert ack["ok"] and ack["chat_id"] == cid
            assert ack["last_seq"] == ack["through"] == sent["message"]["seq"]
        # The copies sent while the first was running share its replay; only a copy that came
        # after it had ended can have started another. Without the sharing each of the 20 runs
        # its own; on a loaded machine the joins can reach the server in a few bursts (4
        # replays were seen with two CPU hogs running), so the bound is half, not one.
        replays = visitor.events["chat:history"]
        assert 1 <= len(replays) <= len(acks) // 2, f"{len(replays)} replays for 20 joins"
        assert all([m["seq"] for m in r] == [sent["message"]["seq"]] for r in replays)
        # A different join waits for the running one, then gets its own answer.
        later = await asyncio.gather(
            visitor.call("join", {"chat_id": cid, "last_seq": 0}),
            visitor.call("join", {"chat_id": cid, "last_seq": sent["message"]["seq"]}),
        )
        assert [a["replayed"] for a in later] == [1, 0]
    finally:
        await visitor.close()


def _is_chat_join(packets: str) -> bool:
    # The /chat namespace's join (the /call namespace has a `join` of its own).
    return re.search(r'42/chat,\d*\["join"', packets) is not None


@pytest.mark.browser
async def test_a_page_whose_joins_go_unanswered_sends_them_ever_further_apart(
    browser: Browser, server: Server
) -> None:
    """Every /chat join the page sends is lost on its way; the page's clock is run ahead (its
    own timers, the ack timeout included) and each re-sent join is timed on it."""
    sent: list[float | None] = []  # page time (ms) each join left at; None until stamped
    routes: list[WebSocketRoute] = []

    async def relay(ws: WebSocketRoute) -> None:
        routes.append(ws)
        upstream = ws.connect_to_server()

        def to_server(message: str | bytes) -> None:
            if isinstance(message, str) and _is_chat_join(message):
                sent.append(None)
                return
            upstream.send(message)

        ws.on_message(to_server)

    async def poll(route: Route) -> None:
        # Before its upgrade to a WebSocket the page sends over long-polling POSTs.
        body = route.request.post_data or ""
        if route.request.method == "POST" and _is_chat_join(body):
            sent.append(None)
            rest = "\x1e".join(p for p in body.split("\x1e") if not _is_chat_join(p))
            if not rest:
                await route.fulfill(status=200, body="ok")
                return
            await route.continue_(post_data=rest)
            return
        await route.continue_()

    _, page, _ = await open_page(browser, PHONE)
    await page.clock.install()
    await page.route_web_socket(re.compile(r".*/socket\.io/.*"), relay)
    await page.route(re.compile(r".*/socket\.io/.*"), poll)

    async def stamp() -> float:
        now = float(await page.evaluate("Date.now()"))
        sent[:] = [now if t is None else t for t in sent]
        return now

    try:
        await start_chat(page, server.url, "Sürü")
        await expect(page.locator("body[data-socket=up]")).to_be_attached()
        for _ in range(200):  # the first join, and the upgrade to a WebSocket
            if sent and routes:
                break
            await asyncio.sleep(0.1)
        assert sent and routes, "the page never joined over a WebSocket"
        start = await stamp()
        now = start
        while len(sent) < 6 and now - start < 120_000:
            # The server's pings come in real time: the page hears one each fake 10 s, or it
            # would take the connection for dead and reconnect (and join at once).
            if int(now - start) % 10_000 < 200:
                routes[-1].send("2")
            await page.clock.run_for(200)
            await asyncio.sleep(0.01)
            now = await stamp()
        assert len(sent) >= 6, f"{len(sent)} joins in {now - start:.0f} ms of the page's time"
        # The first join went out before the page's clock was watched: timed from the second.
        times = [t for t in sent[1:6] if t is not None]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # Each join is sent only once the one before it has timed out (8 s) ...
        assert all(gap >= 8000 - 300 for gap in gaps), gaps
        # ... and the pause after that doubles: 1-2 s, 2-4 s, 4-8 s, 8-16 s.
        assert gaps[2] > gaps[0] + 1500 and gaps[3] > gaps[0] + 5000, gaps
    finally:
        await close_all(page)


async def test_visitors_leaving_at_once_with_a_panel_open_are_read_in_one_query(
    server: Server,
) -> None:
    token = await admin_login(server)
    panel = await admin_peer(server.url, token)
    visitors, cids = [], []
    try:
        for i in range(5):
            visitor_token, cid = await start_visitor(server.url, f"Giden {i}")
            visitor = await visitor_peer(server.url, visitor_token)
            assert (await visitor.call("join", {"chat_id": cid}))["ok"]
            visitors.append(visitor)
            cids.append(cid)
        for cid in cids:
            await panel.wait_for(
                "admin:conversation",
                lambda r, cid=cid: r["chat_id"] == cid and "status__dot--online" in r["html"],
            )
        before, rows = len(server.log()), len(panel.events["admin:conversation"])
        await asyncio.gather(*(visitor.close() for visitor in visitors))

        def offline(cid: str) -> bool:
            return any(
                r["chat_id"] == cid and "status__dot--online" not in r["html"]
                for r in panel.events["admin:conversation"][rows:]
            )

        # The panel still sees each of them go offline.
        deadline = asyncio.get_running_loop().time() + 20
        while not all(offline(cid) for cid in cids):
            assert asyncio.get_running_loop().time() < deadline, "a visitor never went offline"
            await asyncio.sleep(0.05)
        assert not ROW_READ.findall(server.log()[before:]), "a row read per leaving visitor"
    finally:
        await panel.close()
