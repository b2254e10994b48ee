"""Clients that deliver the way the pages' chat.js does, through any number of connection cuts.

A Sender keeps each send until the server acknowledges it (after commit) and retries it with
the same client id; a Reader rejoins with the last seq it has everything up to, gets a replay,
and shows each seq once.
"""

from __future__ import annotations

import asyncio

import aiohttp
import socketio


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
