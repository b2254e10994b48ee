"""python-socketio's room manager, handing a packet to each recipient without a task each.

Given to python-socketio through its public `client_manager` option; the packets on the wire are
the same. An emit made an asyncio task per recipient and waited for them all (`asyncio.wait`),
while handing a packet to a socket only appends it to the socket's queue.
"""

from __future__ import annotations

import logging
from typing import Any

import socketio
from engineio import packet
from socketio import packet as sio_packet

log = logging.getLogger("sohbet.sockets")


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
