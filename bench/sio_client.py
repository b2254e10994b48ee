"""A thin Socket.IO v5 / Engine.IO v4 client over one websocket (the `websockets` library).

python-socketio's AsyncClient costs too much per socket to drive thousands of them from one
process; this speaks just what the benchmark needs, on the websocket transport only:

    server -> client   0{"sid":..,"pingInterval":..}     Engine.IO open
    client -> server   40/chat,{"as":"visitor"}           Socket.IO CONNECT with auth
    server -> client   40/chat,{"sid":..} | 44/chat,{..}  connected | refused
    server -> client   2            client -> server 3    ping / pong
    client -> server   42/chat,<id>["send",{..}]          EVENT with an ack id
    server -> client   43/chat,<id>[{..}]                 ACK
    server -> client   42/chat,["chat:message",{..}]      EVENT
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

NAMESPACE = "/chat"
P_CONNECT = f"40{NAMESPACE},"
P_DISCONNECT = f"41{NAMESPACE},"
P_EVENT = f"42{NAMESPACE},"
P_ACK = f"43{NAMESPACE},"
P_REFUSED = f"44{NAMESPACE},"

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

# Called with (client, raw payload after the `42/chat,` prefix); the handler decides whether the
# event is worth a json.loads (the visitor's echo of its own message is not).
EventHandler = Callable[["SioClient", str], None]
AckHandler = Callable[[Any], None]


class SioError(Exception):
    """The handshake failed or the server refused the namespace."""


def ws_url(base: str) -> str:
    """ws://host:port/socket.io/?EIO=4&transport=websocket from http://host:port."""
    if base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    elif base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    return base.rstrip("/") + "/socket.io/?EIO=4&transport=websocket"


class SioClient:
    """One Socket.IO connection to the `/chat` namespace."""

    __slots__ = (
        "_acks",
        "_next_id",
        "_reader",
        "_tasks",
        "auth",
        "closed",
        "compression",
        "cookie",
        "deflate",
        "on_event",
        "tag",
        "url",
        "ws",
    )

    def __init__(
        self,
        url: str,
        *,
        cookie: str | None,
        auth: dict[str, Any],
        on_event: EventHandler | None = None,
        compression: bool = True,
        tag: Any = None,
    ) -> None:
        self.url = url
        self.cookie = cookie
        self.auth = auth
        self.on_event = on_event
        self.compression = compression
        self.tag = tag
        self.ws: ClientConnection | None = None
        self.closed = False
        self.deflate = False  # whether the server accepted permessage-deflate
        self._acks: dict[int, AckHandler] = {}
        self._next_id = 0
        self._reader: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def connect(self, wait: float = 20.0) -> None:
        """Websocket handshake (cookie in the HTTP headers), Engine.IO open, namespace CONNECT."""
        headers = {"Cookie": self.cookie} if self.cookie else None
        self.ws = await connect(
            self.url,
            additional_headers=headers,
            # Browsers offer permessage-deflate and Hypercorn/eventlet accept it: mirror them.
            compression="deflate" if self.compression else None,
            proxy=None,
            ping_interval=None,  # Engine.IO has its own ping; no websocket-level pings
            close_timeout=2,
            open_timeout=wait,
            max_size=8 * 2**20,
            max_queue=4096,
        )
        extensions = (
            self.ws.response.headers.get("Sec-WebSocket-Extensions") if self.ws.response else None
        )
        self.deflate = bool(extensions and "permessage-deflate" in extensions)
        first = await asyncio.wait_for(self.ws.recv(), wait)
        if not isinstance(first, str) or not first.startswith("0"):
            raise SioError(f"no Engine.IO open packet: {first!r:.80}")
        await self.ws.send(P_CONNECT + _dumps(self.auth))
        while True:
            msg = await asyncio.wait_for(self.ws.recv(), wait)
            if not isinstance(msg, str):
                continue
            if msg.startswith(P_CONNECT):
                break
            if msg.startswith(P_REFUSED):
                raise SioError(f"namespace refused: {msg[len(P_REFUSED) :]:.120}")
            self._dispatch(msg)
        self._reader = asyncio.get_running_loop().create_task(self._read_loop())

    async def _read_loop(self) -> None:
        assert self.ws is not None
        try:
            async for msg in self.ws:
                if isinstance(msg, str):
                    self._dispatch(msg)
        except ConnectionClosed:
            pass
        finally:
            self.closed = True
            acks, self._acks = self._acks, {}
            for handler in acks.values():
                handler(None)

    def _dispatch(self, msg: str) -> None:
        if msg.startswith(P_EVENT):
            if self.on_event is not None:
                self.on_event(self, msg[len(P_EVENT) :])
        elif msg.startswith(P_ACK):
            bracket = msg.index("[", len(P_ACK))
            handler = self._acks.pop(int(msg[len(P_ACK) : bracket]), None)
            if handler is not None:
                args = json.loads(msg[bracket:])
                handler(args[0] if args else None)
        elif msg == "2":
            self._spawn(self._send_raw("3"))
        elif msg.startswith(P_DISCONNECT) or msg == "1":
            self.closed = True

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_raw(self, text: str) -> None:
        if self.ws is None:
            return
        try:
            await self.ws.send(text)
        except ConnectionClosed:
            self.closed = True

    async def emit(self, event: str, data: Any, on_ack: AckHandler | None = None) -> None:
        """Send an event; `on_ack(payload)` gets the ack (None if the socket closes first)."""
        if on_ack is None:
            await self._send_raw(P_EVENT + _dumps([event, data]))
            return
        ack_id = self._next_id
        self._next_id += 1
        self._acks[ack_id] = on_ack
        await self._send_raw(f"{P_EVENT}{ack_id}{_dumps([event, data])}")

    async def call(self, event: str, data: Any, wait: float = 20.0) -> Any:
        """Send an event and wait for its ack."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def done(payload: Any) -> None:
            if not future.done():
                future.set_result(payload)

        await self.emit(event, data, done)
        return await asyncio.wait_for(future, wait)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self.ws is not None:
            try:
                await asyncio.wait_for(self.ws.close(), 2)
            except (TimeoutError, ConnectionClosed, OSError):
                pass
        self.closed = True
