"""How emits travel between processes through Redis (app/realtime/manager.py, LeanRedisManager).

Two Socket.IO servers (never served) each with its own manager on one real Redis channel, as two
processes of a deployment are, over real engine.io sockets whose queues show what each socket
would be sent. A third client watches the channel itself, to see what went through Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import socketio
from redis.asyncio import Redis

from app.realtime import lean_server
from app.realtime.engine import LeanSocket
from app.realtime.manager import BATCH_MARK, LeanRedisManager
from tests.support.server import REDIS_URL

pytestmark = pytest.mark.redis

NS = "/chat"
# Bound for anything to cross Redis on a loaded machine (locally it takes a millisecond).
CROSSING_SECONDS = 10.0


class Process:
    """One process's Socket.IO server and manager, with named sockets."""

    def __init__(self, channel: str) -> None:
        self.manager = LeanRedisManager(REDIS_URL, channel=channel)
        self.sio = lean_server(socketio.AsyncServer, async_mode="asgi", client_manager=self.manager)
        self.sockets: dict[str, LeanSocket] = {}
        self.sids: dict[str, str] = {}
        self.received: dict[str, list[Any]] = {}

    async def connect(self, name: str) -> str:
        eio_sid = f"eio-{name}-{secrets.token_hex(3)}"
        sock = LeanSocket(self.sio.eio, eio_sid)
        self.sio.eio.sockets[eio_sid] = sock
        self.sockets[name] = sock
        self.received[name] = []
        sid = await self.manager.pre_connect(eio_sid, NS)
        await self.manager.connect(sid, NS)
        self.sids[name] = sid
        return str(sid)

    def collect(self) -> None:
        """Move what each socket was sent into `received`, as (event, data)."""
        for name, sock in self.sockets.items():
            while True:
                try:
                    encoded = sock.queue.get_nowait().encode()
                except asyncio.QueueEmpty:
                    break
                prefix = f"42{NS},"
                assert encoded.startswith(prefix), encoded
                event, data = json.loads(encoded[len(prefix) :])
                self.received[name].append((event, data))

    async def close(self) -> None:
        thread = getattr(self.manager, "thread", None)
        if thread is not None:
            thread.cancel()
            with contextlib.suppress(BaseException):
                await thread
        for client in (self.manager.pubsub, self.manager.redis):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()


async def wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + CROSSING_SECONDS
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {CROSSING_SECONDS} s: {what}")
        await asyncio.sleep(0.01)


class Watcher:
    """A plain Redis subscriber on the channel: every message that went through Redis."""

    def __init__(self, channel: str) -> None:
        self.redis = Redis.from_url(REDIS_URL)
        self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        self.channel = channel
        self.published: list[bytes] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.pubsub.subscribe(self.channel)
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.pubsub.listen():
            if message["type"] == "message":
                self.published.append(message["data"])

    def emits(self) -> list[dict[str, Any]]:
        """The emits published so far, batches unpacked."""
        found: list[dict[str, Any]] = []
        for data in self.published:
            if data.startswith(BATCH_MARK):
                found.extend(json.loads(data[len(BATCH_MARK) + 33 :]))
            else:
                found.append(json.loads(data))
        return [m for m in found if m.get("method") == "emit"]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        await self.pubsub.aclose()
        await self.redis.aclose()


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[Process, Process, Watcher]]:
    channel = f"sohbet-test-{secrets.token_hex(4)}"
    one, two, watcher = Process(channel), Process(channel), Watcher(channel)
    await watcher.start()
    for process in (one, two):
        process.manager.initialize()  # what the server does on its first connection
    probe = Redis.from_url(REDIS_URL)
    try:

        async def subscribers() -> int:
            counts = await probe.pubsub_numsub(channel)
            return int(counts[0][1])

        deadline = time.monotonic() + CROSSING_SECONDS
        while await subscribers() < 3:
            assert time.monotonic() < deadline, "the managers never subscribed"
            await asyncio.sleep(0.01)
        yield one, two, watcher
    finally:
        await probe.aclose()
        for process in (one, two):
            await process.close()
        await watcher.close()


def events(process: Process, name: str, event: str) -> list[Any]:
    process.collect()
    return [data for ev, data in process.received[name] if ev == event]


async def test_a_room_with_members_on_two_processes_gets_each_emit_once_each(
    cluster: tuple[Process, Process, Watcher],
) -> None:
    one, two, _ = cluster
    for process, names in ((one, ("a1", "a2")), (two, ("b1",))):
        for name in names:
            sid = await process.connect(name)
            await process.sio.enter_room(sid, "room", namespace=NS)
    await one.sio.enter_room(one.sids["a2"], "other", namespace=NS)

    for n in range(5):
        await one.sio.emit("ev", {"n": n}, room="room", namespace=NS)
    await two.sio.emit("ev", {"n": 5}, room="room", namespace=NS)
    # The end marker, to a room only process one has: once it is there, everything before it
    # from process two has crossed too (one channel, in order).
    await two.sio.emit("end", {}, room="other", namespace=NS)
    await wait_until(lambda: events(one, "a2", "end") != [], "the end marker on process one")
    await wait_until(lambda: len(events(two, "b1", "ev")) == 6, "six emits on process two")
    for process, name in ((one, "a1"), (one, "a2"), (two, "b1")):
        got = [d["n"] for d in events(process, name, "ev")]
        # Once each, and process one's in the order it made them (each process delivers its
        # own emits at once, so process two's may come first on process two).
        assert sorted(got) == list(range(6)), (name, got)
        assert [n for n in got if n < 5] == list(range(5)), (name, got)


async def test_an_emit_to_a_socket_of_this_process_does_not_go_through_redis(
    cluster: tuple[Process, Process, Watcher],
) -> None:
    one, two, watcher = cluster
    local = await one.connect("a1")
    await two.connect("b1")

    await one.sio.emit("direct", {"n": 1}, to=local, namespace=NS)
    assert events(one, "a1", "direct") == [{"n": 1}], "delivered at once, here"
    await one.sio.emit("marker", {}, room="nobody-here", namespace=NS)
    await wait_until(lambda: len(watcher.emits()) == 1, "the marker in Redis")
    assert [m["event"] for m in watcher.emits()] == ["marker"]
    assert events(one, "a1", "direct") == [{"n": 1}], "not a second time from Redis"
    assert events(two, "b1", "direct") == []


async def test_an_emit_to_a_socket_of_another_process_arrives(
    cluster: tuple[Process, Process, Watcher],
) -> None:
    one, two, _ = cluster
    await one.connect("a1")
    remote = await two.connect("b1")
    both = [one.sids["a1"], remote]

    await one.sio.emit("direct", {"n": 1}, to=remote, namespace=NS)
    # A list of sids with one elsewhere goes through Redis: each socket gets it once.
    await one.sio.emit("direct", {"n": 2}, to=both, namespace=NS)
    await wait_until(lambda: len(events(two, "b1", "direct")) == 2, "both emits on process two")
    assert events(two, "b1", "direct") == [{"n": 1}, {"n": 2}]
    assert events(one, "a1", "direct") == [{"n": 2}]


async def test_a_burst_crosses_in_order_in_fewer_publishes(
    cluster: tuple[Process, Process, Watcher],
) -> None:
    """What a writer's batch does: many emits in one turn of the loop, to a room and to sockets
    on either process, arrive in the order they were made, and go out in a few PUBLISHes."""
    one, two, watcher = cluster
    local = await one.connect("a1")
    remote = await two.connect("b1")
    for process, sid in ((one, local), (two, remote)):
        await process.sio.enter_room(sid, "room", namespace=NS)

    count = 600
    for n in range(count):
        target = (local, remote, "room")[n % 3]
        await one.sio.emit("ev", {"n": n}, to=target, namespace=NS)
    await one.manager.flush()
    # Everything queued is in Redis once flush() returns: the watcher only has to read it.
    await wait_until(lambda: len(watcher.emits()) == 2 * count // 3, "the burst in Redis")
    await wait_until(lambda: len(events(two, "b1", "ev")) == 2 * count // 3, "the burst there")
    assert [d["n"] for d in events(one, "a1", "ev")] == [n for n in range(count) if n % 3 != 1]
    assert [d["n"] for d in events(two, "b1", "ev")] == [n for n in range(count) if n % 3 != 0]
    assert len(watcher.published) <= count // 10, len(watcher.published)


async def test_an_emit_in_python_socketios_own_format_is_still_delivered(
    cluster: tuple[Process, Process, Watcher],
) -> None:
    """An emitter outside the app (python-socketio's write-only manager) publishes one JSON
    object per emit: both processes deliver it."""
    one, two, _ = cluster
    for process, name in ((one, "a1"), (two, "b1")):
        sid = await process.connect(name)
        await process.sio.enter_room(sid, "room", namespace=NS)
    outside = socketio.AsyncRedisManager(REDIS_URL, channel=one.manager.channel, write_only=True)
    try:
        await outside.emit("ev", {"n": 1}, room="room", namespace=NS)
    finally:
        if outside.redis is not None:
            await outside.redis.aclose()
    await wait_until(lambda: events(one, "a1", "ev") == [{"n": 1}], "on process one")
    await wait_until(lambda: events(two, "b1", "ev") == [{"n": 1}], "on process two")
