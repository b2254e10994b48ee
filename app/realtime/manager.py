"""python-socketio's room manager, with an index of each socket's rooms and an emit without a
task per recipient.

Given to python-socketio through its public `client_manager` option; the packets on the wire and
the rooms each socket is in are the same. python-socketio finds a socket's rooms by scanning
(a copy of) every room of the namespace, on each disconnect and `rooms()`: every visitor has
rooms of its own, so N sockets leaving at once cost O(N^2). An emit made an asyncio task per
recipient and waited for them all (`asyncio.wait`), while handing a packet to a socket only
appends it to the socket's queue.
"""

from __future__ import annotations

import logging
from typing import Any

import socketio
from engineio import packet
from socketio import packet as sio_packet

from app.chat.rooms import OPERATOR_PREFIX

log = logging.getLogger("sohbet.sockets")


class _SidSet(dict[str, None]):
    """The sockets of a namespace waiting for their connect or disconnect handler: the list
    methods python-socketio calls on it, with a hashed `in` and `remove`.

    During a mass disconnect every leaving socket waits here, and python-socketio asks whether
    a socket is in it on every event and removes each one: on a list, O(N) each.
    """

    def append(self, sid: str) -> None:
        self[sid] = None

    def remove(self, sid: str) -> None:
        del self[sid]


class _PendingTable(dict[str, _SidSet]):
    """python-socketio's `pending_connect` / `pending_disconnect`: the list it puts in for a
    namespace is kept as a _SidSet."""

    def __setitem__(self, namespace: str, sids: Any) -> None:
        super().__setitem__(namespace, _SidSet((sid, None) for sid in sids))


class LeanManager(socketio.AsyncManager):  # type: ignore[misc]
    """python-socketio's room manager, with an index of each socket's rooms, handing a packet to
    each recipient without a task each.

    Every change of a room goes through `basic_enter_room` / `basic_leave_room` (python-socketio's
    connect, join, leave, close and disconnect, locally or heard from Redis), so the index is
    kept there; a disconnect and `get_rooms` read it instead of scanning every room. `rooms` stays
    python-socketio's own table (room -> sid -> engine.io sid), read by its emits.

    Giving a packet to an engine.io socket appends it to the socket's queue (the socket's own
    writer task sends it), so there is nothing to wait for in parallel. A recipient whose
    hand-over fails is logged and skipped, as a failed task was (a socket that has just closed
    is dropped by engine.io itself). Emits that ask for acknowledgements take python-socketio's
    own path.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # namespace -> sid -> its rooms (None, the namespace's "connected" room, included),
        # a dict for a set kept in the order they were entered.
        self.rooms_of: dict[str, dict[str, dict[Any, None]]] = {}
        self.pending_connect = _PendingTable()
        self.pending_disconnect = _PendingTable()

    def basic_enter_room(self, sid: str, namespace: str, room: Any, eio_sid: Any = None) -> None:
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        self.rooms_of.setdefault(namespace, {}).setdefault(sid, {})[room] = None

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        super().basic_leave_room(sid, namespace, room)
        sids = self.rooms_of.get(namespace)
        rooms = sids.get(sid) if sids is not None else None
        if sids is None or rooms is None:
            return
        rooms.pop(room, None)
        if not rooms:
            del sids[sid]
            if not sids:
                del self.rooms_of[namespace]

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        """python-socketio's disconnect, leaving the socket's own rooms instead of scanning all."""
        if namespace not in self.rooms:
            return
        for room in list(self.rooms_of.get(namespace, {}).get(sid, ())):
            self.basic_leave_room(sid, namespace, room)
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            sids = pending.get(namespace)
            if sids is not None and sid in sids:
                sids.remove(sid)
                if not sids:
                    del pending[namespace]

    async def close_room(self, room: Any, namespace: str) -> None:
        """python-socketio's close, except that closing an operator's room disconnects its
        sockets: how a deactivation ends an operator's sockets. With Redis, python-socketio
        publishes the close and every process runs this for its own sockets."""
        if isinstance(room, str) and room.startswith(OPERATOR_PREFIX):
            for sid, _ in list(self.get_participants(namespace, room)):
                await self.server.disconnect(sid, namespace=namespace, ignore_queue=True)
        await super().close_room(room, namespace)

    def get_rooms(self, sid: str, namespace: str) -> list[Any]:
        """The rooms a socket is in (its own sid room included), in the order it entered them."""
        return [room for room in self.rooms_of.get(namespace, {}).get(sid, ()) if room is not None]

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
