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

import asyncio
import logging
from collections.abc import AsyncIterator
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


# The first bytes of a batch this module publishes: the marker, the sender's host id (32 hex
# characters), a colon, then a JSON list of python-socketio's own messages.
BATCH_MARK = b"sohbet-batch:"
# Messages per PUBLISH at most (a batch of rendered messages stays well under a megabyte).
BATCH_MAX = 256
# Emits waiting for Redis beyond which an emit waits for its batch (Redis slow or away).
BACKLOG_MAX = 2048


class LeanRedisManager(socketio.AsyncRedisManager, LeanManager):  # type: ignore[misc]
    """AsyncRedisManager whose local delivery (after Redis) is LeanManager's, with less Redis
    work per emit.

    python-socketio publishes every emit (one PUBLISH, awaited) even when its only recipient is
    a socket of this process, and every process, the sender included, reads and decodes every
    published emit (the sender drops its own after decoding). Here:

    - an emit to sockets of this process only (a sid, or a list of sids, connected here: a sid
      is made by the process that accepted the socket and is in no other process's rooms) is
      delivered here and not published; any other target (a room, whose members on other
      processes are not known here, or a sid of another process) is published as before;
    - what is published goes out in order through one queue, one PUBLISH per batch: the
      messages queued while the previous PUBLISH was on its way (a writer's batch of chat
      messages is one PUBLISH, not three per message). Order is kept: one queue, one
      PUBLISH at a time, and Redis hands a channel's messages to each subscriber in the
      order they were published;
    - a process skips its own batches by their header, without decoding them;
    - an emit returns once delivered here and queued for Redis (`flush()` waits until Redis
      has everything queued so far: the chat writer waits for it before it acknowledges a
      send, so an acknowledged message is in Redis even if this process dies right after).
      Other methods (disconnect, rooms of sockets elsewhere, callbacks) wait for their batch
      as python-socketio's `_publish` waited for its PUBLISH.

    A message from a python-socketio emitter that does not batch (one JSON object per PUBLISH)
    is still understood. Every process of a deployment must run this manager: python-socketio's
    own would ignore the batches.
    """

    connected: bool  # python-socketio's: the publishing connection is made

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._host = self.host_id.encode()
        self._outbox: list[dict[str, Any]] = []
        # Resolved once the batch now being filled is in Redis.
        self._open_batch: asyncio.Future[None] | None = None
        self._last_batch: asyncio.Future[None] | None = None
        self._sender: asyncio.Task[None] | None = None

    def local_only(self, namespace: str, room: Any) -> bool:
        """True if `room` is a sid, or a list of sids, of sockets of this process."""
        here = self.rooms.get(namespace, {}).get(None)
        if not here or room is None:
            return False
        if isinstance(room, str):
            return room in here
        if isinstance(room, (list, tuple)):
            return bool(room) and all(isinstance(r, str) and r in here for r in room)
        return False

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str | None = None,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> None:
        room = to or room
        namespace = namespace or "/"
        if callback is None and not kwargs.get("ignore_queue") and self.local_only(namespace, room):
            await LeanManager.emit(self, event, data, namespace, room=room, skip_sid=skip_sid)
            return
        await super().emit(
            event,
            data,
            namespace=namespace,
            room=room,
            skip_sid=skip_sid,
            callback=callback,
            **kwargs,
        )

    async def _publish(self, data: dict[str, Any]) -> None:
        batch = self._queue(data)
        if data.get("method") != "emit" or len(self._outbox) > BACKLOG_MAX:
            await asyncio.shield(batch)

    def _queue(self, message: dict[str, Any]) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        if self._open_batch is None:
            self._open_batch = loop.create_future()
        self._outbox.append(message)
        self._last_batch = self._open_batch
        if self._sender is None or self._sender.done():
            self._sender = loop.create_task(self._send_all(), name="socketio-publish")
        return self._open_batch

    async def flush(self) -> None:
        """Wait until Redis has every message queued so far."""
        if self._last_batch is not None and not self._last_batch.done():
            await asyncio.shield(self._last_batch)

    async def _send_all(self) -> None:
        while self._outbox:
            batch, self._outbox = self._outbox[:BATCH_MAX], self._outbox[BATCH_MAX:]
            # A batch split by BATCH_MAX is done once its last part is sent.
            done = None
            if not self._outbox:
                done, self._open_batch = self._open_batch, None
            try:
                await self._send(batch)
            finally:
                if done is not None and not done.done():
                    done.set_result(None)

    async def _send(self, batch: list[dict[str, Any]]) -> None:
        payload = b"%s%s:%s" % (
            BATCH_MARK,
            self._host,
            self.json.dumps(batch, separators=(",", ":")).encode(),
        )
        for retries_left in (1, 0):  # python-socketio's two attempts
            try:
                if not self.connected:
                    self._redis_connect()
                await self.redis.publish(self.channel, payload)
                return
            except Exception as exc:  # what python-socketio's _publish catches, logged the same
                if retries_left:
                    log.error("Cannot publish to redis... retrying (%s)", exc)
                    self.connected = False
                else:
                    log.error("Cannot publish to redis... giving up (%d messages)", len(batch))

    async def _listen(self) -> AsyncIterator[Any]:
        channel = self.channel.encode()
        skip = len(BATCH_MARK) + len(self._host) + 1
        async for message in self._redis_listen_with_retries():
            if message["channel"] != channel or message["type"] != "message":
                continue
            data = message.get("data")
            if isinstance(data, bytes) and data.startswith(BATCH_MARK):
                if data[len(BATCH_MARK) : skip - 1] == self._host:
                    continue  # this process's own batch, handled here before it was sent
                try:
                    batch = self.json.loads(data[skip:])
                except ValueError:
                    log.error("undecodable batch on %s dropped", self.channel)
                    continue
                for item in batch:
                    yield item
            elif data is not None:
                yield data  # one message of python-socketio's own format
