"""Lighter per-socket state for engine.io (python-socketio's transport layer) on ASGI.

An idle Socket.IO connection cost ~42 KiB on this stack (bench/README.md, target (d): 30 KiB at
10,000 sockets), most of it in objects engine.io keeps for the socket's whole life, and every
received packet made a task and a timeout of its own. Three things change, each measured with
bench/probe_idle_memory.py and bench/chat_load.py:

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
engine.io's own code: LeanSocket subclasses its AsyncSocket and keeps its methods. `lighten(eio)`
gives one server the lean queue; `install()` (called by app.realtime.patches.install) makes
engine.io create a LeanSocket for such a server, and lightens every WebSocket's environ.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import engineio
from engineio import async_server, async_socket, exceptions, packet, payload
from engineio.async_drivers import asgi as asgi_driver

from app.realtime.lean_queue import LeanQueue

log = logging.getLogger("sohbet.sockets")

# The largest packet answered with a refusal instead of the end of the connection: Hypercorn's
# own limit for a WebSocket message (its `websocket_max_message_size` default).
OVERSIZED_CAP = 16 * 1024 * 1024


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

    async def _refused(self, data: str | bytes) -> bool:
        """Answer a packet over the size limit through the server's `refuse_oversized` hook
        (True), rather than ending the connection (False: no hook, or nothing to answer)."""
        refuse = getattr(self.server, "refuse_oversized", None)
        if refuse is None or not isinstance(data, str):
            return False
        try:
            answered: bool = await refuse(self.sid, data)
        except Exception:
            log.exception("refusing an oversized packet failed")
            return False
        return answered

    async def handle_post_request(self, environ: dict[str, Any]) -> None:
        """engine.io's long-polling POST, where a packet over the limit is answered too.

        engine.io's ASGI driver has read the whole body already (it has no limit of its own);
        engine.io would then end the connection for a body over the limit. Up to OVERSIZED_CAP
        its packets are taken one by one instead, and each one over the limit is refused.
        """
        length = int(environ.get("CONTENT_LENGTH", "0"))
        limit = self.server.max_http_buffer_size
        if length <= limit or length > OVERSIZED_CAP:
            await super().handle_post_request(environ)
            return
        body = (await environ["wsgi.input"].read(length)).decode("utf-8")
        encoded_packets = body.split("\x1e")  # engine.io's payload separator
        if body.startswith("d=") or len(encoded_packets) > payload.Payload.max_decode_packets:
            raise exceptions.ContentTooLongError()  # JSONP, or a flood: as engine.io does
        for encoded in encoded_packets:
            if len(encoded) <= limit:
                await self.receive(packet.Packet(encoded_packet=encoded))
            elif not await self._refused(encoded):
                raise exceptions.ContentTooLongError()

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
                data = await ws.wait()
            except (Exception, asyncio.CancelledError):
                # Disconnected (OSError) or cancelled at shutdown (Hypercorn's graceful
                # timeout): as in engine.io, the socket is still closed below, so its
                # disconnect handler runs and other processes hear of it.
                break
            if data is None:
                break
            if len(data) > limit:
                if await self._refused(data):
                    continue
                break  # engine.io's answer: the connection ends
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


def lighten(eio: engineio.AsyncServer) -> None:
    """Give one engine.io server the lean queue, and with it (once installed) LeanSocket."""
    eio.create_queue = LeanQueue


def install() -> None:
    """Process-wide: engine.io creates a LeanSocket for each lightened server, and its ASGI
    driver's WebSocket environs drop `wsgi.input` (for every server: a WebSocket has no body)."""
    # engine.io creates server sockets as `async_socket.AsyncSocket(server, sid)`; only
    # servers lightened here use LeanSocket, others get engine.io's class back.
    if not isinstance(async_server.async_socket, _SocketModule):
        async_server.async_socket = _SocketModule()
    # Every ASGI server of engine.io holds this same table (not a copy), made at import.
    drivers = asgi_driver._async
    if drivers["translate_request"] is asgi_driver.translate_request:
        drivers["translate_request"] = _lean_environ(asgi_driver.translate_request)


class _SocketModule:
    """Stands in for the `async_socket` module inside engine.io's async_server."""

    def __getattr__(self, name: str) -> Any:
        return getattr(async_socket, name)

    @staticmethod
    def AsyncSocket(server: Any, sid: str) -> async_socket.AsyncSocket:
        if server.create_queue is LeanQueue:
            return LeanSocket(server, sid)
        return async_socket.AsyncSocket(server, sid)
