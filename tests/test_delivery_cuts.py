"""Zero loss, zero duplicates while a proxy cuts every connection mid-stream.

Plain Socket.IO is at-most-once (a quick experiment here lost 468–637 of 1,000 room messages
across 5 cuts). These clients do what the page's chat.js does: a send is kept until the server
acknowledges it (after commit) and is retried with the same client id; a reconnecting reader
sends the last seq it has and gets a replay; a message is shown once per seq.
"""

from __future__ import annotations

import asyncio
import time

import socketio

from tests.support.clients import admin_login, client_id, start_visitor
from tests.support.proxy import CuttingProxy
from tests.support.reliable import Reader, Sender, close_for_good
from tests.support.server import Server

TOTAL = 1000
WINDOW = 8  # sends in flight at once


async def test_thousand_messages_through_connection_cuts(server: Server) -> None:
    admin_token = await admin_login(server)
    token, chat_id = await start_visitor(server.url, "Kesinti")
    proxy = await CuttingProxy(server.port).start()
    reader = Reader(proxy.url, f"sohbet_admin={admin_token}", chat_id)
    sender = Sender(proxy.url, f"sohbet_visitor={token}", chat_id)
    await reader.connect()
    await sender.connect()

    ids = [client_id() for _ in range(TOTAL)]
    queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    for n, cid in enumerate(ids):
        queue.put_nowait((cid, f"message {n}"))

    async def worker() -> None:
        while not queue.empty():
            cid, text = queue.get_nowait()
            await sender.send_until_acked(cid, text)

    async def cutter() -> None:
        # Cut by progress (every ~90 acknowledged messages) and by time, so the stream is cut
        # mid-flight at least ten times however fast the server is.
        next_cut = 90
        while True:
            started_wait = time.monotonic()
            while len(sender.acked) < next_cut and time.monotonic() - started_wait < 0.4:
                await asyncio.sleep(0.005)
            proxy.cut()
            next_cut = len(sender.acked) + 90

    started = time.monotonic()
    cutting = asyncio.create_task(cutter())
    try:
        await asyncio.wait_for(asyncio.gather(*[worker() for _ in range(WINDOW)]), 120)
    finally:
        cutting.cancel()
    cuts = proxy.cuts

    # Everything is acknowledged; now let the reader catch up over a stable connection.
    deadline = time.monotonic() + 30
    while len(reader.shown) < TOTAL and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    elapsed = time.monotonic() - started

    print(
        f"\n{TOTAL} messages, {cuts} connection cuts in {elapsed:.1f}s: "
        f"acked {len(sender.acked)}, shown {len(reader.shown)}, "
        f"deliveries {reader.deliveries}, retries {sender.retries}, duplicate acks {sender.duplicates}"
    )
    try:
        assert cuts >= 10
        assert len(sender.acked) == TOTAL
        assert sorted(sender.acked.values()) == list(range(1, TOTAL + 1)), "one seq per message"
        assert sorted(reader.shown) == list(range(1, TOTAL + 1)), "nothing lost, nothing twice"
        assert len(reader.shown) == len(set(reader.shown))

        # The database holds exactly one row per client id: read it all back from seq 0.
        fresh = socketio.AsyncClient(reconnection=False)
        got: list[dict[str, object]] = []
        fresh.on("chat:history", lambda msgs: got.extend(msgs), namespace="/chat")
        await fresh.connect(
            server.url,
            namespaces=["/chat"],
            headers={"Cookie": f"sohbet_visitor={token}"},
            auth={"as": "visitor"},
            transports=["websocket"],
        )
        last = 0
        while True:
            ack = await fresh.call(
                "join", {"chat_id": chat_id, "last_seq": last}, namespace="/chat"
            )
            await asyncio.sleep(0.2)
            last = max((int(m["seq"]) for m in got), default=0)  # type: ignore[call-overload]
            if not ack["more"]:
                break
        await fresh.disconnect()
        assert len(got) == TOTAL
        assert {m["client_id"] for m in got} == set(ids)
        assert {m["text"] for m in got} == {f"message {n}" for n in range(TOTAL)}
    finally:
        for client in (reader.sio, sender.sio):
            await close_for_good(client)
        await proxy.stop()
