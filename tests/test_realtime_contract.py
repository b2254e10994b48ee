"""The realtime contract as other clients speak it: reserved event names, the original `send`
shape, and sends the server cannot take."""

from __future__ import annotations

import pytest

from tests.support.calls import call_peer
from tests.support.clients import (
    ADMIN_COOKIE,
    VISITOR_COOKIE,
    Peer,
    chat_sockets,
    client_id,
    start_visitor,
)
from tests.support.server import Server


async def test_a_clients_disconnect_event_does_not_take_its_chat_socket_for_gone(
    server: Server, admin_token: str
) -> None:
    """A visitor emitting `disconnect` (and `connect`, with the operator's cookie in the
    environ it would stand for) stays an online visitor: the operator's row says online."""
    async with chat_sockets(server.url, admin_token, "Reserved") as (_, cid, visitor, admin):
        fake_environ = {"HTTP_COOKIE": f"{ADMIN_COOKIE}={admin_token}"}
        await visitor.sio.emit("connect", fake_environ, namespace="/chat")
        await visitor.sio.emit("disconnect", "client namespace disconnect", namespace="/chat")
        # Events are handled in the order they came: this send's row is published after both.
        sent = await visitor.call(
            "send", {"chat_id": cid, "type": "text", "text": "still here", "client_id": client_id()}
        )
        assert sent["ok"], sent
        row = await admin.wait_for(
            "admin:conversation", lambda r: r["chat_id"] == cid and "still here" in r["html"]
        )
        assert "status__dot--online" in row["html"], "the visitor was taken for offline"
        assert not any(
            r["chat_id"] == cid and "status__dot--online" not in r["html"]
            for r in admin.events["admin:conversation"]
        )
        # Still a visitor: an operator-only event is refused.
        read = await visitor.call("read", {"chat_id": cid})
        assert read["error"] == "forbidden", read


async def test_a_clients_disconnect_event_does_not_end_its_call(
    server: Server, admin_token: str
) -> None:
    token, cid = await start_visitor(server.url, "Reserved call")
    caller = await call_peer(server.url, "visitor", token)
    admin = await call_peer(server.url, "admin", admin_token)
    try:
        ring = await caller.call("call:ring", {"chat_id": cid})
        assert ring["ok"], ring
        await admin.wait_for("call:incoming", lambda m: m["call_id"] == ring["call_id"])
        await caller.sio.emit("disconnect", "client namespace disconnect", namespace="/call")
        joined = await caller.call("join", {"chat_id": cid})
        assert joined["call"] is not None and joined["call"]["call_id"] == ring["call_id"], joined
        ended = await caller.call("call:end", {"call_id": ring["call_id"]})
        assert ended["ok"], ended
        first = await admin.wait_for("call:ended", lambda m: m["call_id"] == ring["call_id"])
        assert first["reason"] == "hangup", first
    finally:
        await caller.close()
        await admin.close()


async def test_a_send_without_client_id_is_stored_with_an_id_made_by_the_server(
    server: Server, admin_token: str
) -> None:
    """The original contract's `send {chat_id, role, type, text, time}`: accepted, at most once
    (each such send is a message of its own); a send with an id stays exactly-once."""
    async with chat_sockets(server.url, admin_token, "Original") as (_, cid, visitor, admin):
        assert (await admin.call("join", {"chat_id": cid}))["ok"]
        original = {"chat_id": cid, "role": "visitor", "type": "text", "text": "merhaba"}
        first = await visitor.call("send", {**original, "time": "2024-05-01T10:00:00Z"})
        assert first["ok"] and first["duplicate"] is False, first
        made = first["message"]["client_id"]
        assert isinstance(made, str) and len(made) >= 8
        second = await visitor.call("send", {**original, "time": "2024-05-01T10:00:01Z"})
        assert second["ok"] and second["message"]["client_id"] != made, second
        assert second["message"]["seq"] == first["message"]["seq"] + 1
        pushed = await admin.wait_for("chat:message", lambda m: m["client_id"] == made)
        assert pushed["text"] == "merhaba" and pushed["role"] == "visitor"
        # A client that sends its own id keeps exactly-once, as before.
        own = {**original, "client_id": client_id()}
        again = [await visitor.call("send", own) for _ in range(2)]
        assert [a["duplicate"] for a in again] == [False, True], again
        assert again[0]["message"]["seq"] == again[1]["message"]["seq"]


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_an_oversized_send_is_refused_with_an_error_and_the_connection_stays(
    server: Server, transport: str
) -> None:
    """A send over the packet limit (put there by a script: the text box stops far below it)
    is answered `too_large` in its ack and with `chat:error`; the connection was dropped
    without a word before, and the page resent it on every reconnect."""
    token, cid = await start_visitor(server.url, "Oversized")
    visitor = Peer(server.url, f"{VISITOR_COOKIE}={token}", "visitor")
    disconnects: list[object] = []
    visitor.sio.on("disconnect", lambda *reason: disconnects.append(reason), namespace="/chat")
    await visitor.sio.connect(
        server.url,
        namespaces=["/chat"],
        headers={"Cookie": visitor.cookie},
        auth={"as": "visitor"},
        transports=[transport],
        wait_timeout=10,
    )
    try:
        huge = {"chat_id": cid, "type": "text", "text": "A" * 100_000, "client_id": client_id()}
        ack = await visitor.call("send", huge)
        assert ack["ok"] is False and ack["error"] == "too_large", ack
        assert ack["client_id"] == huge["client_id"] and "64 KB" in ack["message"], ack
        error = await visitor.wait_for("chat:error", lambda e: e["error"] == "too_large")
        assert error == ack
        # The same connection carries the next message.
        fine = {"chat_id": cid, "type": "text", "text": "kısa", "client_id": client_id()}
        ack = await visitor.call("send", fine)
        assert ack["ok"] and ack["message"]["seq"] == 1, ack
        assert visitor.sio.connected and not disconnects
    finally:
        # A polling client's close would wait for its long-poll to end (up to a ping interval).
        await visitor.sio.eio.disconnect(abort=True)
