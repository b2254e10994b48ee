"""Zero loss, zero duplicates while a proxy cuts every connection mid-stream.

Plain Socket.IO is at-most-once (a quick experiment here lost 468–637 of 1,000 room messages
across 5 cuts). These clients do what the page's chat.js does: a send is kept until the server
acknowledges it (after commit) and is retried with the same client id; a reconnecting reader
sends the last seq it has and gets a replay; a message is shown once per seq.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import socketio

from tests.support.clients import admin_login, client_id, start_visitor
from tests.support.proxy import CuttingProxy
from tests.support.server import Server

TOTAL = 1000
WINDOW = 8  # sends in flight at once


def reliable_client(cookie: str) -> socketio.AsyncClient:
    """A reconnecting client. engine.io moves a Cookie header into its HTTP session's jar and
    drops it from the headers, so reconnects carry no cookie unless the jar is ours to keep."""
    name, value = cookie.split("=", 1)
    jar = aiohttp.CookieJar(unsafe=True)
    jar.update_cookies({name: value})
    return socketio.AsyncClient(
        reconnection=True,
        reconnection_delay=0.05,
        reconnection_delay_max=0.3,
        randomization_factor=0.2,
        request_timeout=5,
        http_session=aiohttp.ClientSession(cookie_jar=jar),
    )


async def close_for_good(sio: socketio.AsyncClient) -> None:
    """Disconnect without reconnecting, and close the HTTP session the client was given. A
    drop the client notices while closing would otherwise start a reconnect that opens a new
    session of its own, left unclosed (a ResourceWarning, an error under pytest's settings)."""
    sio.reconnection = False
    await sio.shutdown()
    await sio.eio.http.close()


async def connect_chat(sio: socketio.AsyncClient, url: str, role: str) -> None:
    """Open /chat as a page of `role` does (over WebSocket)."""
    await sio.connect(
        url, namespaces=["/chat"], auth={"as": role}, transports=["websocket"], wait_timeout=10
    )


class Reader:
    """The operator's page: show each seq once; after every (re)connect, join with the highest
    seq up to which it has everything (live pushes can arrive out of order, so not the max),
    and after the join's replay, everything up to the server's `last_seq` is known."""

    def __init__(self, url: str, cookie: str, chat_id: str, role: str = "admin") -> None:
        self.role = role
        self.shown: list[int] = []
        self.texts: dict[int, str] = {}
        self.deliveries = 0
        self.synced = 0
        self.sio = reliable_client(cookie)
        self.url, self.chat_id = url, chat_id
        self.sio.on("connect", self._joined, namespace="/chat")
        self.sio.on("chat:message", self._message, namespace="/chat")
        self.sio.on("chat:history", self._history, namespace="/chat")

    async def _joined(self) -> None:
        asyncio.get_running_loop().create_task(self._join())

    async def _join(self) -> None:
        try:
            ack = await self.sio.call(
                "join", {"chat_id": self.chat_id, "last_seq": self.synced}, namespace="/chat"
            )
        except Exception:
            return  # cut again before the ack: the next connect joins again
        if ack.get("ok"):
            if ack["more"]:
                await self._join()
            else:
                self.synced = max(self.synced, int(ack["last_seq"]))
                self._advance()

    def _advance(self) -> None:
        while self.synced + 1 in self.texts:
            self.synced += 1

    def _show(self, message: dict[str, object]) -> None:
        self.deliveries += 1
        seq = int(message["seq"])  # type: ignore[call-overload]
        if seq in self.texts:
            return
        self.texts[seq] = str(message["text"])
        self.shown.append(seq)
        self._advance()

    async def _message(self, message: dict[str, object]) -> None:
        self._show(message)

    async def _history(self, messages: list[dict[str, object]]) -> None:
        for message in messages:
            self._show(message)

    async def connect(self) -> None:
        await connect_chat(self.sio, self.url, self.role)


class Sender:
    """The visitor's page: an outbox of client ids, each retried until acknowledged.

    A send in flight when the connection drops is abandoned at once (its ack can no longer
    arrive) and sent again with the same client id after the reconnect.
    """

    def __init__(self, url: str, cookie: str, chat_id: str, role: str = "visitor") -> None:
        self.role = role
        self.sio = reliable_client(cookie)
        self.url, self.chat_id = url, chat_id
        self.acked: dict[str, int] = {}
        self.duplicates = 0
        self.retries = 0
        self.online = asyncio.Event()
        self.dropped = asyncio.Event()
        self.sio.on("connect", self._up, namespace="/chat")
        self.sio.on("disconnect", self._down, namespace="/chat")

    async def _up(self) -> None:
        self.online.set()

    async def _down(self, reason: object = None) -> None:
        self.online.clear()
        self.dropped.set()
        self.dropped = asyncio.Event()

    async def connect(self) -> None:
        await connect_chat(self.sio, self.url, self.role)

    async def _attempt(self, payload: dict[str, str]) -> dict[str, object] | None:
        await self.online.wait()
        dropped = asyncio.create_task(self.dropped.wait())
        call = asyncio.create_task(self.sio.call("send", payload, namespace="/chat", timeout=5))
        done, _ = await asyncio.wait({call, dropped}, return_when=asyncio.FIRST_COMPLETED)
        dropped.cancel()
        if call not in done:
            call.cancel()
            return None
        try:
            return call.result()
        except (
            socketio.exceptions.TimeoutError,
            socketio.exceptions.BadNamespaceError,
            socketio.exceptions.DisconnectedError,
        ):
            return None

    async def send_until_acked(self, cid: str, text: str) -> None:
        payload = {"chat_id": self.chat_id, "type": "text", "text": text, "client_id": cid}
        while True:
            ack = await self._attempt(payload)
            if ack is not None and ack.get("ok"):
                message = ack["message"]
                assert isinstance(message, dict)
                self.acked[cid] = message["seq"]
                self.duplicates += bool(ack["duplicate"])
                return
            assert ack is None or ack.get("error") == "server_error", ack
            self.retries += 1
            await asyncio.sleep(0.01)


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
