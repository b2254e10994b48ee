"""Lighter per-socket state for engine.io (python-socketio's transport layer) on ASGI.

An idle Socket.IO connection cost ~42 KiB on this stack (bench/README.md, target (d): 30 KiB at
10,000 sockets), most of it in objects engine.io keeps for the socket's whole life, and every
received packet made a task and a timeout of its own. `lighten(eio)` changes three things for
one engine.io server, each measured with bench/probe_idle_memory.py and bench/chat_load.py:

- the packet queue (`LeanQueue`): a list and futures made only while someone waits, instead of
  asyncio.Queue's four deques (~600 bytes each even when empty);
- the WebSocket's environ drops `wsgi.input`, an instance of a class that engine.io's ASGI
  driver defines anew for every request (~2.5 KiB per socket), as a WebSocket has no body;
- the WebSocket loop (`LeanSocket`) awaits each frame directly instead of through a new task
  with its own timeout per frame, its writer waits on the queue without a timeout per packet,
  and the ping timer is a timer handle instead of a sleeping task. A silent peer is still
  dropped: engine.io's service task closes every socket whose ping went unanswered for
  `ping_timeout` (the per-frame timeouts only duplicated it), and closing ends the writer.

Everything else (the Engine.IO protocol, upgrades from polling, close and ping semantics) is
engine.io's own code: LeanSocket subclasses its AsyncSocket and keeps its methods.

Three more cut python-socketio's own cost per packet, through its public options
(`serializer`, `json`, `client_manager`); the packets on the wire are byte for byte the same.
On bench/floor_server.py (the stack with no work of Sohbet's) they were a third of its CPU:

- `LeanPacket`: python-socketio looks for bytes in every packet's data (binary attachments)
  with a recursive scan that builds a list and a `functools.reduce` per level and never stops
  early (16 % of the floor's CPU); this scan stops at the first bytes it finds;
- `JSON`: engine.io's `loads` passes `parse_int` (its guard against huge numbers), and
  python-socketio's `dumps` passes `separators`, so the standard library built a new decoder
  or encoder for every packet; these are built once, with the same settings;
- `LeanManager`: an emit made an asyncio task per recipient and waited for them all
  (`asyncio.wait`), while handing a packet to a socket only appends it to the socket's queue;
  the packets are now handed over in a loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import engineio
import socketio
from engineio import async_server, async_socket, exceptions, packet
from socketio import packet as sio_packet

log = logging.getLogger("sohbet.sockets")
_Server = TypeVar("_Server", bound=socketio.AsyncServer)


class LeanQueue:
    """A FIFO queue with the parts of asyncio.Queue's interface that engine.io and Hypercorn use.

    Both keep one queue per connection for its whole life (engine.io's packets to send,
    Hypercorn's ASGI events for the app: app/serving.py). An asyncio.Queue holds three deques
    and an Event (a fourth deque), ~600 bytes each even when empty; this one holds a list and
    creates futures only while someone waits. `get()` returns a future rather than a coroutine,
    so engine.io's `wait_for(queue.get(), timeout)` needs no extra task per wait. `maxsize`
    bounds it like asyncio.Queue's (`put` waits for room). Measured with
    bench/probe_idle_memory.py: ~2.5-3 KiB less per queue.
    """

    __slots__ = ("_getters", "_items", "_joiners", "_maxsize", "_putters", "_unfinished")

    def __init__(self, maxsize: int = 0) -> None:
        self._items: list[Any] = []
        self._maxsize = maxsize
        self._getters: list[asyncio.Future[Any]] | None = None
        self._putters: list[asyncio.Future[None]] | None = None
        self._joiners: list[asyncio.Future[None]] | None = None
        self._unfinished = 0

    def full(self) -> bool:
        return 0 < self._maxsize <= len(self._items)

    def put_nowait(self, item: Any) -> None:
        if self.full():
            raise asyncio.QueueFull
        self._unfinished += 1
        while self._getters:
            getter = self._getters.pop(0)
            if not getter.done():  # a getter whose wait timed out is cancelled: skip it
                getter.set_result(item)
                return
        self._items.append(item)

    async def put(self, item: Any) -> None:
        while self.full():
            putter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            if self._putters is None:
                self._putters = []
            self._putters.append(putter)
            try:
                await putter
            except BaseException:
                if not putter.done() or putter.cancelled():
                    with contextlib.suppress(ValueError):
                        self._putters.remove(putter)
                if not self.full():
                    self._wake_putter()  # pass the free slot on
                raise
        self.put_nowait(item)

    def _wake_putter(self) -> None:
        while self._putters:
            putter = self._putters.pop(0)
            if not putter.done():
                putter.set_result(None)
                return

    def _take(self) -> Any:
        item = self._items.pop(0)
        if self._putters:
            self._wake_putter()
        return item

    def get_nowait(self) -> Any:
        if not self._items:
            raise asyncio.QueueEmpty
        return self._take()

    def get(self) -> asyncio.Future[Any]:
        """An awaitable for the next item (in order of the calls)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._items and not self._getters:
            future.set_result(self._take())
        else:
            if self._getters is None:
                self._getters = []
            self._getters.append(future)
        return future

    def task_done(self) -> None:
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if self._unfinished == 0 and self._joiners:
            joiners, self._joiners = self._joiners, None
            for joiner in joiners:
                if not joiner.done():
                    joiner.set_result(None)

    async def join(self) -> None:
        if self._unfinished == 0:
            return
        joiner: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._joiners is None:
            self._joiners = []
        self._joiners.append(joiner)
        await joiner


def _lean_environ(translate: Callable[..., Awaitable[dict[str, Any]]]) -> Callable[..., Any]:
    """engine.io's ASGI request translation, minus what a WebSocket keeps for nothing.

    The environ of a WebSocket lives as long as the socket (engine.io's handler frames hold it),
    and its `wsgi.input` is an instance of a class that engine.io defines anew for every
    request (~2.5 KiB each). A WebSocket has no request body to read: drop it.
    """

    async def translate_request(scope: dict[str, Any], *args: Any) -> dict[str, Any]:
        environ = await translate(scope, *args)
        if scope.get("type") == "websocket":
            environ.pop("wsgi.input", None)
        return environ

    return translate_request


class LeanSocket(async_socket.AsyncSocket):  # type: ignore[misc]
    """engine.io's server-side socket with a lighter WebSocket loop and ping timer."""

    _ping_handle: asyncio.TimerHandle | None = None
    _writing = False  # the WebSocket writer task runs
    # Set by engine.io's BaseSocket.__init__ (declared for the type checker).
    last_ping: float | None
    connected: bool
    upgrading: bool
    upgraded: bool
    closing: bool
    closed: bool

    def schedule_ping(self) -> None:
        # Same rule as engine.io: only after the previous ping was answered (or at connect).
        if self.last_ping:
            self.last_ping = None
            loop = asyncio.get_running_loop()
            self._ping_handle = loop.call_later(self.server.ping_interval, self._ping)

    def _ping(self) -> None:
        self._ping_handle = None
        if not self.closing and not self.closed:
            self.last_ping = time.time()
            self.queue.put_nowait(packet.Packet(packet.PING))

    async def close(self, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
        if self._ping_handle is not None:
            self._ping_handle.cancel()
            self._ping_handle = None
        await super().close(wait=wait, abort=abort, reason=reason)
        if self._writing and self.closed:
            # The WebSocket writer waits without a timeout: let it send what is queued (the
            # CLOSE packet) and close the WebSocket.
            self.queue.put_nowait(None)

    async def _websocket_handler(self, ws: Any) -> None:
        """engine.io's WebSocket transport loop, without a task and a timeout per frame."""
        limit = self.server.max_http_buffer_size

        async def websocket_wait() -> Any:
            data = await ws.wait()
            if data and len(data) > limit:
                raise ValueError("packet is too large")
            return data

        if self.connected:
            # Upgrade from long-polling (browsers start with polling): engine.io's handshake.
            self.upgrading = True  # hold packet sends during the upgrade
            try:
                pkt = await websocket_wait()
            except OSError:
                return
            decoded = packet.Packet(encoded_packet=pkt)
            if decoded.packet_type != packet.PING or decoded.data != "probe":
                self.upgrading = False
                return
            await ws.send(packet.Packet(packet.PONG, data="probe").encode())
            await self.queue.put(packet.Packet(packet.NOOP))  # end the pending poll
            try:
                pkt = await websocket_wait()
            except OSError:
                self.upgrading = False
                return
            decoded = packet.Packet(encoded_packet=pkt)
            if decoded.packet_type != packet.UPGRADE:
                self.upgraded = False
                self.upgrading = False
                return
            self.upgraded = True
            self.upgrading = False
        else:
            self.connected = True
            self.upgraded = True

        async def writer() -> None:
            # engine.io's writer waits for each packet through `poll()`, an asyncio.wait_for
            # with a timeout of ping_interval + ping_timeout (a waiter, a timer and callbacks
            # for every packet sent: ~5 % of the server's CPU at 1,500 msg/s). This one waits on
            # the queue alone: a socket that stops answering pings is closed by engine.io's
            # service task, and `close()` below ends this loop, as the timeout did.
            queue = self.queue
            while True:
                try:
                    pkt = await queue.get()
                except asyncio.CancelledError:
                    break
                queue.task_done()
                if pkt is None:
                    break  # the connection is closing
                packets, closing = [pkt], False
                while True:  # what else is queued goes out now, as poll() returns it
                    try:
                        pkt = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                    queue.task_done()
                    if pkt is None:
                        closing = True
                        break
                    packets.append(pkt)
                try:
                    for pkt in packets:
                        await ws.send(pkt.encode())
                except Exception:
                    break
                if closing:
                    break
            await ws.close()

        self._writing = True

        writer_task = asyncio.ensure_future(writer())
        while True:
            try:
                data = await websocket_wait()
            except (Exception, asyncio.CancelledError):
                # Disconnected (OSError), too large, or cancelled at shutdown (Hypercorn's
                # graceful timeout): as in engine.io, the socket is still closed below, so its
                # disconnect handler runs and other processes hear of it.
                break
            if data is None:
                break
            try:
                await self.receive(packet.Packet(encoded_packet=data))
            except exceptions.UnknownPacketError:
                pass
            except exceptions.SocketIsClosedError:
                break
            except Exception:
                log.exception("engine.io receive error")
        await self.queue.put(None)  # let the writer finish
        await writer_task
        await self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)


_installed = False


def lighten(eio: engineio.AsyncServer) -> None:
    """Give one engine.io server the lean queue, environ and socket class."""
    global _installed
    eio.create_queue = LeanQueue
    # The driver's table is shared by every server of the process: this one gets its own copy.
    drivers = dict(eio._async)
    drivers["translate_request"] = _lean_environ(drivers["translate_request"])
    eio._async = drivers
    if not _installed:
        # engine.io creates server sockets as `async_socket.AsyncSocket(server, sid)`; only
        # servers lightened here use LeanSocket, others get engine.io's class back.
        async_server.async_socket = _SocketModule()
        _installed = True


class _SocketModule:
    """Stands in for the `async_socket` module inside engine.io's async_server."""

    def __getattr__(self, name: str) -> Any:
        return getattr(async_socket, name)

    @staticmethod
    def AsyncSocket(server: Any, sid: str) -> async_socket.AsyncSocket:
        if server.create_queue is LeanQueue:
            return LeanSocket(server, sid)
        return async_socket.AsyncSocket(server, sid)


# python-socketio ------------------------------------------------------------------------------


class LeanPacket(sio_packet.Packet):  # type: ignore[misc]
    """python-socketio's packet, with a binary scan that stops at the first bytes it finds."""

    @classmethod
    def data_is_binary(cls, data: Any) -> bool:
        if isinstance(data, (bytes, bytearray)):
            return True
        if isinstance(data, dict):
            data = data.values()
        elif not isinstance(data, list):
            return False
        return any(cls.data_is_binary(item) for item in data)


def _safe_int(text: str) -> int:
    """engine.io's guard: a number of more than 100 digits in a packet is refused."""
    if len(text) > 100:
        raise ValueError("Integer is too large")
    return int(text)


class JSON:
    """The json module for engine.io and python-socketio, with its coders built once.

    Same output and the same guard as theirs (`engineio.json`): compact separators where they
    ask for them, `parse_int` limited to 100 digits. Any other arguments go to the standard
    library as they would have.
    """

    _decode = json.JSONDecoder(parse_int=_safe_int).decode
    _compact = json.JSONEncoder(separators=(",", ":")).encode

    @staticmethod
    def loads(text: str | bytes, **kwargs: Any) -> Any:
        if kwargs:
            kwargs.setdefault("parse_int", _safe_int)
            return json.loads(text, **kwargs)
        if isinstance(text, (bytes, bytearray)):
            text = text.decode()
        if text.startswith("\ufeff"):
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        return JSON._decode(text)

    @staticmethod
    def dumps(obj: Any, **kwargs: Any) -> str:
        if kwargs == {"separators": (",", ":")}:
            return JSON._compact(obj)
        return json.dumps(obj, **kwargs)


class LeanManager(socketio.AsyncManager):  # type: ignore[misc]
    """python-socketio's room manager, handing a packet to each recipient without a task each.

    Giving a packet to an engine.io socket appends it to the socket's queue (the socket's own
    writer task sends it), so there is nothing to wait for in parallel. A recipient whose
    hand-over fails is logged and skipped, as a failed task was (a socket that has just closed
    is dropped by engine.io itself). Emits that ask for acknowledgements take python-socketio's
    own path.
    """

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> None:
        room = to or room
        if callback is not None or namespace not in self.rooms:
            await super().emit(
                event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, **kwargs
            )
            return
        skip = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        recipients = [
            eio_sid for sid, eio_sid in self.get_participants(namespace, room) if sid not in skip
        ]
        if not recipients:
            return
        if isinstance(data, tuple):
            args = list(data)
        else:
            args = [data] if data is not None else []
        encoded = self.server.packet_class(
            sio_packet.EVENT, namespace=namespace, data=[event, *args]
        ).encode()
        parts = encoded if isinstance(encoded, list) else [encoded]
        eio_packets = [packet.Packet(packet.MESSAGE, part) for part in parts]
        for eio_sid in recipients:
            try:
                for eio_packet in eio_packets:
                    await self.server._send_eio_packet(eio_sid, eio_packet)
            except Exception:
                log.exception("emit of %s to %s failed", event, eio_sid)


class LeanRedisManager(socketio.AsyncRedisManager, LeanManager):  # type: ignore[misc]
    """AsyncRedisManager whose local delivery (after Redis) is LeanManager's."""


def lean_server(server_class: type[_Server], **options: Any) -> _Server:
    """A Socket.IO server of `server_class` with every lighter piece of this module.

    `options` go to the server; `client_manager` defaults to a LeanManager.
    """
    options.setdefault("client_manager", LeanManager())
    sio: _Server = server_class(serializer=LeanPacket, json=JSON, **options)
    lighten(sio.eio)
    return sio
