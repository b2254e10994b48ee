"""The Socket.IO server: built once per process with every lighter piece of this package."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, TypeVar

import socketio
from engineio import packet as eio_packet
from socketio import packet as sio_packet

from app.config import Settings
from app.realtime.engine import lighten
from app.realtime.handshake import origin_allowed
from app.realtime.manager import LeanManager, LeanRedisManager
from app.realtime.protocol import JSON, LeanPacket

log = logging.getLogger("sohbet.realtime")
_Server = TypeVar("_Server", bound=socketio.AsyncServer)

# A chat payload is a few KB at most; refuse anything far larger before it is parsed.
MAX_PACKET_BYTES = 64 * 1024
# Disconnect handlers running at once; the others wait their turn (bench/README.md, the herd).
LEAVING_AT_ONCE = 32


_NAMESPACE = re.compile(r"/[^,]{0,200},")
_ACK_ID = re.compile(r"[0-9]{1,15}")
# Inside a JSON string every quote is escaped: an unescaped `"client_id":"` is a key.
_CLIENT_ID = re.compile(r'(?<!\\)"client_id"\s*:\s*"([A-Za-z0-9_.:-]{8,64})"')


def event_header(encoded: str) -> tuple[str, int | None, str | None] | None:
    """The namespace, ack id and `client_id` of a Socket.IO EVENT packet, read without decoding
    its JSON (it is too large or undecodable); None for any other packet."""
    if not encoded.startswith(str(sio_packet.EVENT)):
        return None
    rest, namespace = encoded[1:], "/"
    if rest.startswith("/"):
        named = _NAMESPACE.match(rest)
        if named is None:
            return None
        namespace, rest = named.group()[:-1], rest[named.end() :]
    ack = _ACK_ID.match(rest)
    client = _CLIENT_ID.search(rest)
    return namespace, int(ack.group()) if ack else None, client.group(1) if client else None


class GuardedServer(socketio.AsyncServer):  # type: ignore[misc]
    """A Socket.IO server that answers a packet it cannot take, and ignores a client's events
    named like its own (`connect`, `disconnect`).

    A send over the size limit (MAX_PACKET_BYTES) or that cannot be decoded (python-socketio
    parses packets with `json.loads` outside any handler: a payload nested a few thousand deep
    raises RecursionError, broken JSON a ValueError) is refused with `too_large` or
    `bad_packet`: in its ack when its id can be read, and as the namespace's error event (the
    namespace's `refused`); the connection stays. Only a packet nothing can be answered to (not
    an event, or no namespace of this socket) still ends the connection, without a traceback.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # LeanSocket asks this before it drops a connection for a packet over the limit.
        self.eio.refuse_oversized = self._refuse_oversized
        self._leaving = asyncio.Semaphore(LEAVING_AT_ONCE)

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any) -> None:
        # Thousands of sockets closing at once (a proxy restart) would all run their disconnect
        # handlers in one turn of the event loop, each a database read and a render: a SIGTERM,
        # and every other socket's message, waited behind all of them (seconds at 10,000).
        async with self._leaving:
            await super()._handle_eio_disconnect(eio_sid, reason)

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        try:
            await super()._handle_eio_message(eio_sid, data)
        except (ValueError, RecursionError) as exc:
            if isinstance(data, str) and await self._refuse(eio_sid, data, "bad_packet"):
                log.info("undecodable Socket.IO packet (%s) refused", type(exc).__name__)
                return
            log.warning("undecodable Socket.IO packet (%s): connection dropped", type(exc).__name__)
            await self.eio.disconnect(eio_sid)

    async def _handle_event(
        self, eio_sid: str, namespace: str | None, id: int | None, data: Any
    ) -> None:
        # python-socketio hands a client's `disconnect` event to the namespace's disconnect
        # handler like its own: the socket would be taken for gone while it stays open.
        if isinstance(data, list) and data and data[0] in self.reserved_events:
            log.info("event named %s from a client ignored", data[0])
            return
        await super()._handle_event(eio_sid, namespace, id, data)

    async def _refuse_oversized(self, eio_sid: str, encoded: str) -> bool:
        """An Engine.IO packet over the limit: answer it if it is a Socket.IO event."""
        if not encoded.startswith(str(eio_packet.MESSAGE)):
            return False
        refused = await self._refuse(eio_sid, encoded[1:], "too_large")
        log.info(
            "packet of %d bytes over the limit %s",
            len(encoded),
            "refused" if refused else "dropped",
        )
        return refused

    async def _refuse(self, eio_sid: str, encoded: str, code: str) -> bool:
        """Refuse a Socket.IO event packet with `code`; False when there is no one to answer."""
        header = event_header(encoded)
        if header is None:
            return False
        namespace, ack_id, client_id = header
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        handler = self.namespace_handlers.get(namespace)
        refused = getattr(handler, "refused", None)
        if sid is None or refused is None or not self.manager.is_connected(sid, namespace):
            return False
        reply = await refused(sid, code, client_id)
        if ack_id is not None:
            ack = self.packet_class(sio_packet.ACK, namespace=namespace, id=ack_id, data=[reply])
            await self._send_packet(eio_sid, ack)
        return True


def lean_server(server_class: type[_Server], **options: Any) -> _Server:
    """A Socket.IO server of `server_class` with the lighter packet class, JSON coders, room
    manager and engine.io sockets (app/realtime/protocol.py, manager.py, engine.py).

    `options` go to the server; `client_manager` defaults to a LeanManager.
    """
    options.setdefault("client_manager", LeanManager())
    sio: _Server = server_class(serializer=LeanPacket, json=JSON, **options)
    lighten(sio.eio)
    return sio


def create_sio(settings: Settings) -> socketio.AsyncServer:
    """Build the Socket.IO server; with REDIS_URL, rooms are shared by every process via Redis."""
    manager: socketio.AsyncManager = LeanManager()
    if settings.redis_url:
        manager = LeanRedisManager(settings.redis_url, channel=settings.redis_channel)

    def handshake_origin(origin: str | None, environ: dict[str, Any]) -> bool:
        # A refused origin gets no socket, whatever cookies it carries. engine.io also asks
        # without an Origin (for its CORS headers): then there is nothing to allow.
        if origin is None:
            return False
        own = f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', '')}"
        return origin_allowed(origin, own, settings)

    # Less memory per idle socket, less work per packet, the same bytes.
    return lean_server(
        GuardedServer,
        async_mode="asgi",
        client_manager=manager,
        # A callable, never "*" or []: both of those switch engine.io's origin check off.
        cors_allowed_origins=handshake_origin,
        max_http_buffer_size=MAX_PACKET_BYTES,
        ping_interval=20,
        ping_timeout=20,
        logger=False,
        engineio_logger=False,
    )
