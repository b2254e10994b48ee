"""The Socket.IO server: built once per process with every lighter piece of this package."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import socketio

from app.config import Settings
from app.realtime.engine import lighten
from app.realtime.handshake import origin_allowed
from app.realtime.manager import LeanManager, LeanRedisManager
from app.realtime.protocol import JSON, LeanPacket

log = logging.getLogger("sohbet.realtime")
_Server = TypeVar("_Server", bound=socketio.AsyncServer)

# A chat payload is a few KB at most; refuse anything far larger before it is parsed.
MAX_PACKET_BYTES = 64 * 1024


class GuardedServer(socketio.AsyncServer):  # type: ignore[misc]
    """A Socket.IO server that drops a connection sending a packet it cannot decode, and
    ignores a client's events named like its own (`connect`, `disconnect`).

    python-socketio parses packets with `json.loads` outside any handler: a payload nested a
    few thousand deep raises RecursionError, broken JSON a ValueError, and each one was logged
    with a full traceback while the sender stayed connected to try again.
    """

    async def _handle_event(
        self, eio_sid: str, namespace: str | None, id: int | None, data: Any
    ) -> None:
        # python-socketio hands a client's `disconnect` event to the namespace's disconnect
        # handler like its own: the socket would be taken for gone while it stays open.
        if isinstance(data, list) and data and data[0] in self.reserved_events:
            log.info("event named %s from a client ignored", data[0])
            return
        await super()._handle_event(eio_sid, namespace, id, data)

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        try:
            await super()._handle_eio_message(eio_sid, data)
        except (ValueError, RecursionError) as exc:
            log.warning("undecodable Socket.IO packet (%s): connection dropped", type(exc).__name__)
            await self.eio.disconnect(eio_sid)


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
