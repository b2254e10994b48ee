"""The room manager's index of each socket's rooms (app/realtime/manager.py).

The rooms, the `rooms()` answers and the packets queued on real engine.io sockets must be
python-socketio's own after any sequence of connects, joins, leaves, closed rooms and
disconnects; and a socket leaving must visit its own rooms only, not every room of the
namespace (python-socketio's scan made N sockets leaving at once cost O(N^2)).
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest
import socketio
from hypothesis import given, settings
from hypothesis import strategies as st

from app.realtime import lean_server
from app.realtime.engine import LeanSocket
from app.realtime.manager import LeanManager, LeanRedisManager
from app.realtime.server import LEAVING_AT_ONCE, GuardedServer
from tests.support.server import REDIS_URL

NAMESPACES = ("/chat", "/call")
NAMES = ("a", "b", "c", "d", "e")
ROOMS = ("r1", "r2", "admins")

names = st.sampled_from(NAMES)
namespaces = st.sampled_from(NAMESPACES)
# A room is a named room or another socket's own room (entering that one is refused).
rooms = st.sampled_from(ROOMS) | st.tuples(st.just("sid"), names)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("enter"), names, namespaces, rooms),
        st.tuples(st.just("leave"), names, namespaces, rooms),
        st.tuples(st.just("close"), namespaces, rooms),
        st.tuples(st.just("disconnect"), names, namespaces),
        st.tuples(st.just("close_socket"), names),
        st.tuples(st.just("connect"), names, namespaces),
        st.tuples(st.just("emit"), namespaces, rooms),
    ),
    max_size=40,
)


class Stack:
    """A Socket.IO server (never served) over real engine.io sockets, one per name."""

    def __init__(
        self, manager: socketio.AsyncManager, sio: socketio.AsyncServer | None = None
    ) -> None:
        self.manager = manager
        self.sio = sio or lean_server(
            socketio.AsyncServer, async_mode="asgi", client_manager=manager
        )
        self.sockets: dict[str, LeanSocket] = {}
        self.sids: dict[tuple[str, str], str] = {}  # (name, namespace) -> sid

    def eio_sid(self, name: str) -> str:
        return f"eio-{name}"

    async def connect(self, name: str, namespace: str) -> None:
        if name not in self.sockets:
            sock = LeanSocket(self.sio.eio, self.eio_sid(name))
            self.sio.eio.sockets[sock.sid] = sock
            self.sockets[name] = sock
        sid = await self.manager.pre_connect(self.eio_sid(name), namespace)
        if sid is not None:
            await self.manager.connect(sid, namespace)
            self.sids[name, namespace] = sid

    def room(self, room: Any, namespace: str) -> Any:
        if isinstance(room, tuple):
            return self.sids.get((room[1], namespace), f"gone-{room[1]}")
        return room

    async def apply(self, op: tuple[Any, ...]) -> str | None:
        """Run one operation as python-socketio's server would; the error it raised, if any."""
        kind = op[0]
        try:
            if kind == "connect":
                await self.connect(op[1], op[2])
            elif kind in ("enter", "leave", "disconnect"):
                sid = self.sids.get((op[1], op[2]))
                if sid is None:
                    return "not connected"
                if kind == "enter":
                    await self.sio.enter_room(sid, self.room(op[3], op[2]), namespace=op[2])
                elif kind == "leave":
                    await self.sio.leave_room(sid, self.room(op[3], op[2]), namespace=op[2])
                else:
                    await self.sio.disconnect(sid, namespace=op[2])
            elif kind == "close_socket":
                # What engine.io calls when a visitor's socket closes.
                await self.sio._handle_eio_disconnect(self.eio_sid(op[1]), "transport close")
            elif kind == "close":
                await self.sio.close_room(self.room(op[2], op[1]), namespace=op[1])
            elif kind == "emit":
                await self.sio.emit("ev", {"n": 1}, room=self.room(op[2], op[1]), namespace=op[1])
        except ValueError as exc:
            return str(exc)
        except KeyError:  # python-socketio's answer to a room change of a socket that is gone
            return "KeyError"
        return None

    def label(self, value: Any) -> Any:
        """A sid by its socket's name, so two servers (with random sids) compare."""
        for (name, namespace), sid in self.sids.items():
            if value == sid:
                return f"{name}{namespace}"
        return value

    def rooms_named(self, sid: str, namespace: str) -> list[str]:
        """`rooms()` with sids named (python-socketio lists them in its table's order)."""
        return sorted(str(self.label(room)) for room in self.sio.rooms(sid, namespace))

    def state(self) -> dict[str, Any]:
        """Everything python-socketio shows of its rooms, with sids named."""
        manager = self.manager
        rooms = {
            namespace: {
                self.label(room): {self.label(sid): eio for sid, eio in members.items()}
                for room, members in by_room.items()
            }
            for namespace, by_room in manager.rooms.items()
        }
        answers = {}
        for (name, namespace), sid in self.sids.items():
            answers[name, namespace] = (
                _answer(self.rooms_named, sid, namespace),
                _answer(manager.is_connected, sid, namespace),
                _answer(manager.eio_sid_from_sid, sid, namespace),
                self.label(_answer(manager.sid_from_eio_sid, self.eio_sid(name), namespace)),
            )
        queued = {}
        for name, sock in self.sockets.items():
            packets = []
            while True:
                try:
                    packets.append(sock.queue.get_nowait().encode())
                except asyncio.QueueEmpty:
                    break
            queued[name] = packets
        pending = {
            "connect": {ns: list(sids) for ns, sids in manager.pending_connect.items()},
            "disconnect": {ns: list(sids) for ns, sids in manager.pending_disconnect.items()},
        }
        return {"rooms": rooms, "answers": answers, "queued": queued, "pending": pending}


def _answer(question: Any, *args: Any) -> Any:
    """python-socketio's answer, or the exception it raises (a room entered by a socket that
    is gone is left behind empty, and a namespace without connected sockets has no None room)."""
    try:
        return question(*args)
    except KeyError:
        return "KeyError"


async def _compare(
    ours: socketio.AsyncManager, theirs: socketio.AsyncManager, ops: list[tuple[Any, ...]]
) -> None:
    lean, library = Stack(ours), Stack(theirs)
    for stack in (lean, library):
        for name in NAMES[:3]:
            await stack.connect(name, "/chat")
    assert lean.state() == library.state()
    for op in ops:
        assert await lean.apply(op) == await library.apply(op), op
        assert lean.state() == library.state(), op
    assert isinstance(ours, LeanManager)
    # The index holds exactly the rooms python-socketio's table says each socket is in.
    indexed = {
        (namespace, sid, room)
        for namespace, by_sid in ours.rooms_of.items()
        for sid, its_rooms in by_sid.items()
        for room in its_rooms
    }
    table = {
        (namespace, sid, room)
        for namespace, by_room in ours.rooms.items()
        for room, members in by_room.items()
        for sid in members
    }
    assert indexed == table


@settings(max_examples=150, deadline=None)
@given(operations)
def test_rooms_and_emits_are_python_socketios_after_any_sequence(ops: list[Any]) -> None:
    asyncio.run(_compare(LeanManager(), socketio.AsyncManager(), ops))


async def test_a_typical_visitor_life_matches_python_socketio() -> None:
    """The sequence the chat does: connect, a locale room, a conversation room, emits, gone."""
    ops: list[tuple[Any, ...]] = [
        ("enter", "a", "/chat", "r1"),
        ("enter", "a", "/chat", "admins"),
        ("enter", "b", "/chat", "r1"),
        ("connect", "a", "/call"),
        ("enter", "a", "/call", "r1"),
        ("emit", "/chat", "r1"),
        ("emit", "/chat", ("sid", "b")),
        ("leave", "a", "/chat", "admins"),
        ("enter", "c", "/chat", ("sid", "a")),  # refused: a socket's own room
        ("close_socket", "a"),
        ("emit", "/chat", "r1"),
        ("emit", "/call", "r1"),
        ("close", "/chat", "r1"),
        ("disconnect", "b", "/chat"),
        ("emit", "/chat", ("sid", "b")),
    ]
    await _compare(LeanManager(), socketio.AsyncManager(), ops)


@pytest.mark.redis
async def test_the_redis_manager_keeps_the_same_rooms_as_python_socketios() -> None:
    channel = f"sohbet-test-{secrets.token_hex(4)}"
    ours = LeanRedisManager(REDIS_URL, channel=channel)
    theirs = socketio.AsyncRedisManager(REDIS_URL, channel=channel + "-library")
    ops: list[tuple[Any, ...]] = [
        ("enter", "a", "/chat", "r1"),
        ("enter", "b", "/chat", "r1"),
        ("enter", "b", "/chat", "r2"),
        ("emit", "/chat", "r1"),
        ("leave", "b", "/chat", "r1"),
        ("close", "/chat", "r2"),
        ("close_socket", "a"),
        ("disconnect", "b", "/chat"),
        ("emit", "/chat", "r1"),
    ]
    try:
        await _compare(ours, theirs, ops)
    finally:
        await ours.flush()  # its emits are published after they return
        for manager in (ours, theirs):
            if getattr(manager, "redis", None) is not None:
                await manager.redis.aclose()


class _CountingRooms(dict[Any, Any]):
    """A namespace's room table that counts the rooms looked at by a scan over it."""

    visited = 0

    def copy(self) -> dict[Any, Any]:
        self.visited += len(self)
        return dict(self)

    def items(self) -> Any:
        self.visited += len(self)
        return super().items()

    def __iter__(self) -> Any:
        self.visited += len(self)
        return super().__iter__()


@pytest.mark.parametrize("count", [500, 4000])
async def test_a_socket_leaving_visits_only_its_own_rooms(count: int) -> None:
    """Each of `count` visitors (its sid room, a locale room, its conversation's room) closes
    its socket: the room work per socket must not grow with the number of sockets."""
    stack = Stack(LeanManager())
    await stack.connect("operator", "/chat")
    operator = stack.sids["operator", "/chat"]
    await stack.sio.enter_room(operator, "admins", namespace="/chat")
    table = _CountingRooms(stack.manager.rooms["/chat"])
    stack.manager.rooms["/chat"] = table
    eio_sids = []
    for i in range(count):
        name = f"v{i}"
        await stack.connect(name, "/chat")
        sid = stack.sids[name, "/chat"]
        await stack.sio.enter_room(sid, "v:tr", namespace="/chat")
        await stack.sio.enter_room(sid, f"v:{i}", namespace="/chat")
        eio_sids.append(stack.eio_sid(name))
    assert len(table) == 2 * count + 4  # None, the operator's, admins, v:tr, sid and v:<i> each
    table.visited = 0
    for eio_sid in eio_sids:
        assert stack.sio.rooms(stack.manager.sid_from_eio_sid(eio_sid, "/chat"), "/chat")
        await stack.sio._handle_eio_disconnect(eio_sid, "transport close")
    # python-socketio's scan visits every room of /chat for each socket (2 * count + 4 here).
    assert table.visited / count <= 4
    assert stack.manager.rooms["/chat"] is table
    assert set(table) == {None, operator, "admins"}
    assert stack.sio.rooms(operator, "/chat") == [operator, "admins"]
    assert stack.manager.rooms_of["/chat"].keys() == {operator}


class _SlowLeaving(socketio.AsyncNamespace):  # type: ignore[misc]
    """A disconnect handler that waits (as the chat's reads the database), counting how many
    run at once."""

    def __init__(self) -> None:
        super().__init__("/chat")
        self.running = 0
        self.most = 0
        self.done = 0
        self.release = asyncio.Event()

    async def on_disconnect(self, sid: str, reason: object = None) -> None:
        self.running += 1
        self.most = max(self.most, self.running)
        await self.release.wait()
        self.running -= 1
        self.done += 1


async def test_sockets_closing_at_once_run_a_few_disconnect_handlers_at_a_time() -> None:
    """A proxy restart closes every socket in the same instant: their disconnect handlers must
    not all start in one turn of the event loop, where a SIGTERM (or another socket's message)
    waits behind every one of them."""
    sio = lean_server(GuardedServer, async_mode="asgi")
    handlers = _SlowLeaving()
    sio.register_namespace(handlers)
    stack = Stack(sio.manager, sio)
    count = 400
    for i in range(count):
        await stack.connect(f"v{i}", "/chat")
    closing = [
        asyncio.create_task(sio._handle_eio_disconnect(stack.eio_sid(f"v{i}"), "transport close"))
        for i in range(count)
    ]
    for _ in range(5):  # a few turns of the loop: every handler that can start has started
        await asyncio.sleep(0)
    assert 0 < handlers.most <= LEAVING_AT_ONCE
    handlers.release.set()
    await asyncio.wait_for(asyncio.gather(*closing), 30)
    assert handlers.done == count and handlers.most <= LEAVING_AT_ONCE
    assert set(sio.manager.rooms.get("/chat", {})) <= {None}
