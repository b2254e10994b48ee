"""The lighter python-socketio pieces (app/realtime/) against python-socketio's own.

Each one must put the same bytes on the wire as the library's: the packet class's binary scan,
the JSON coders, and the room manager's emit (compared on real engine.io sockets' queues).
"""

from __future__ import annotations

import asyncio
import json

import engineio
import engineio.json
import pytest
import socketio
from engineio import async_server
from engineio import packet as eio_packet
from engineio.async_drivers import asgi as asgi_driver
from hypothesis import given, settings
from hypothesis import strategies as st
from socketio import packet as sio_packet

from app.realtime import install, lean_server
from app.realtime.engine import LeanSocket, lighten
from app.realtime.manager import LeanManager
from app.realtime.patches import TESTED_WITH, untested_versions
from app.realtime.protocol import JSON, LeanPacket

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)
with_bytes = st.recursive(
    scalars | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(with_bytes)
def test_the_binary_scan_agrees_with_python_socketio(data: object) -> None:
    assert LeanPacket.data_is_binary(data) == sio_packet.Packet.data_is_binary(data)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_the_json_coders_write_and_read_what_engineio_json_does(value: object) -> None:
    compact = JSON.dumps(value, separators=(",", ":"))
    assert compact == engineio.json.dumps(value, separators=(",", ":"))
    assert JSON.dumps(value) == engineio.json.dumps(value)
    assert JSON.loads(compact) == engineio.json.loads(compact)


def test_the_libraries_are_the_releases_the_replacements_were_written_for() -> None:
    """app/realtime/ replaces internals of these libraries: another release needs checking."""
    assert set(TESTED_WITH) == {"python-engineio", "python-socketio", "hypercorn", "wsproto"}
    assert untested_versions() == {}


def test_the_json_decoder_keeps_engineios_guards() -> None:
    with pytest.raises(ValueError, match="too large"):
        JSON.loads("[" + "9" * 101 + "]")
    assert JSON.loads("[" + "9" * 100 + "]") == [int("9" * 100)]
    with pytest.raises(json.JSONDecodeError):
        JSON.loads("\ufeff[1]")
    with pytest.raises(json.JSONDecodeError):
        JSON.loads('["send", {"text": "x"}')
    assert JSON.loads(b'["a"]') == ["a"]


async def _server_with_room(
    manager: socketio.AsyncManager, closed: frozenset[str] = frozenset()
) -> tuple[socketio.AsyncServer, dict[str, LeanSocket], dict[str, str]]:
    """A Socket.IO server (never served) with four sockets on /chat, three in room "r"."""
    sio = lean_server(socketio.AsyncServer, async_mode="asgi", client_manager=manager)
    sockets: dict[str, LeanSocket] = {}
    sids: dict[str, str] = {}
    for name in ("a", "b", "c", "d"):
        eio_sid = f"eio-{name}"
        sock = LeanSocket(sio.eio, eio_sid)
        sock.closed = name in closed
        sio.eio.sockets[eio_sid] = sock
        sid = await manager.pre_connect(eio_sid, "/chat")
        await manager.connect(sid, "/chat")
        if name != "d":
            await manager.enter_room(sid, "/chat", "r", eio_sid)
        sockets[name], sids[name] = sock, sid
    return sio, sockets, sids


def _queued(sock: LeanSocket) -> list[str]:
    out: list[str] = []
    while True:
        try:
            pkt = sock.queue.get_nowait()
        except asyncio.QueueEmpty:
            return out
        out.append(pkt.encode())


async def test_an_emit_queues_the_same_packets_as_python_socketios_manager() -> None:
    payload = {"chat_id": "Eda-7F3C", "seq": 3, "html": '<li>ş & "x"</li>', "n": [1, 2.5, None]}
    queues = {}
    for manager in (socketio.AsyncManager(), LeanManager()):
        sio, sockets, sids = await _server_with_room(manager)
        await sio.emit("chat:message", payload, room="r", skip_sid=sids["a"], namespace="/chat")
        await sio.emit("chat:typing", ("x", 2), room="r", namespace="/chat")
        await sio.emit("chat:seen", None, to=sids["d"], namespace="/chat")
        await sio.emit("chat:empty", {}, room="nobody", namespace="/chat")
        queues[type(manager).__name__] = {name: _queued(s) for name, s in sockets.items()}
    assert queues["LeanManager"] == queues["AsyncManager"]
    lean = queues["LeanManager"]
    assert len(lean["a"]) == 1 and lean["a"][0].startswith('42/chat,["chat:typing","x",2]')
    assert len(lean["b"]) == 2 and '"html":"<li>\\u015f &' in lean["b"][0]
    assert lean["d"] == ['42/chat,["chat:seen"]']


class _BrokenQueue:
    async def put(self, item: object) -> None:
        raise ConnectionResetError("the socket broke while the packet was handed over")


async def test_a_failing_recipient_does_not_stop_the_others() -> None:
    sio, sockets, _ = await _server_with_room(LeanManager(), closed=frozenset({"c"}))
    sockets["a"].queue = _BrokenQueue()
    await sio.emit("chat:message", {"seq": 1}, room="r", namespace="/chat")
    assert _queued(sockets["b"]) == ['42/chat,["chat:message",{"seq":1}]']
    assert _queued(sockets["c"]) == []  # closed: engine.io drops it


class _MemoryWebSocket:
    """engine.io's view of an ASGI WebSocket (wait/send/close), in memory: a peer that sends
    nothing unless the test says so."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[str | None] = asyncio.Queue()
        self.sent: list[str] = []
        self.closed = asyncio.Event()

    async def wait(self) -> str | None:
        return await self.inbox.get()

    async def send(self, data: str) -> None:
        self.sent.append(data)

    async def close(self) -> None:
        self.closed.set()


async def test_a_socket_closed_for_silence_sends_close_and_ends_its_websocket() -> None:
    """LeanSocket's writer waits on its queue without a timeout, so closing the socket (what
    engine.io's service task does when pings go unanswered) must end it."""
    eio = engineio.AsyncServer(async_mode="asgi")
    lighten(eio)
    sock = LeanSocket(eio, "s1")
    eio.sockets["s1"] = sock
    ws = _MemoryWebSocket()
    handler = asyncio.create_task(sock._websocket_handler(ws))
    await sock.send(eio_packet.Packet(eio_packet.MESSAGE, "hello"))
    await sock.send(eio_packet.Packet(eio_packet.MESSAGE, "world"))
    for _ in range(100):
        if len(ws.sent) == 2:
            break
        await asyncio.sleep(0.01)
    assert ws.sent == ["4hello", "4world"]
    await sock.close(wait=False, abort=False)
    await asyncio.wait_for(ws.closed.wait(), 2)
    assert ws.sent[-1] == "1", "the CLOSE packet goes out before the WebSocket closes"
    await ws.inbox.put(None)  # the peer's connection ends
    await asyncio.wait_for(handler, 2)


async def test_install_puts_the_engine_pieces_in_place_once() -> None:
    """install() is what every app (and the floor benchmark) calls: after it, a lightened
    server's sockets are LeanSockets and a WebSocket's environ has no body reader."""
    install(ws_compression=False)
    translate = asgi_driver._async["translate_request"]
    install(ws_compression=False)  # another app in the same process wraps nothing twice
    assert asgi_driver._async["translate_request"] is translate

    async def receive_ws() -> dict[str, object]:
        return {"type": "websocket.connect"}

    async def receive_http() -> dict[str, object]:
        return {"type": "http.request", "body": b"x", "more_body": False}

    ws = await translate(
        {"type": "websocket", "path": "/socket.io/", "headers": []}, receive_ws, None
    )
    assert "wsgi.input" not in ws and ws["PATH_INFO"] == "/socket.io/"
    post = {"type": "http", "path": "/socket.io/", "headers": [], "method": "POST"}
    assert await (await translate(post, receive_http, None))["wsgi.input"].read() == b"x"
    lean = lean_server(socketio.AsyncServer, async_mode="asgi")
    stock = socketio.AsyncServer(async_mode="asgi")
    assert type(async_server.async_socket.AsyncSocket(lean.eio, "a")) is LeanSocket
    assert type(async_server.async_socket.AsyncSocket(stock.eio, "b")) is not LeanSocket
