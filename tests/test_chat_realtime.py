"""The `/chat` contract on a real server: names and shapes, authorization, idempotency, replay."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
import socketio

from tests.support.clients import (
    admin_csrf,
    admin_peer,
    chat_sockets,
    client_id,
    panel_action,
    start_visitor,
    visitor_peer,
)
from tests.support.server import Server


async def test_contract_names_and_shapes(server: Server, admin_token: str) -> None:
    async with chat_sockets(server.url, admin_token, "Eda") as (_, cid, visitor, admin):
        joined = await visitor.call("join", {"chat_id": cid, "name": "Eda"})
        assert joined["ok"] and joined["chat_id"] == cid
        assert await visitor.wait_for("chat:history") == []
        assert (await admin.call("join", {"chat_id": cid}))["ok"]

        ack = await visitor.call(
            "send",
            {
                "chat_id": cid,
                "role": "visitor",
                "type": "text",
                "text": "Merhaba",
                "time": "x",
                "client_id": client_id(),
            },
        )
        assert ack["ok"] and not ack["duplicate"]
        msg = ack["message"]
        assert {"chat_id", "role", "type", "text", "time", "seq", "client_id", "html"} <= msg.keys()
        assert (msg["chat_id"], msg["role"], msg["type"], msg["text"], msg["seq"]) == (
            cid,
            "visitor",
            "text",
            "Merhaba",
            1,
        )
        assert msg["time"].endswith("Z")

        pushed = await admin.wait_for("chat:message", lambda m: m["seq"] == 1)
        assert pushed["text"] == "Merhaba" and "msg--theirs" in pushed["html"]
        row = await admin.wait_for("admin:conversation", lambda r: "Merhaba" in r["html"])
        assert row["chat_id"] == cid

        reply = await admin.call(
            "send",
            {
                "chat_id": cid,
                "role": "admin",
                "type": "text",
                "text": "Buyrun",
                "client_id": client_id(),
            },
        )
        assert reply["ok"] and reply["message"]["role"] == "admin" and reply["message"]["seq"] == 2
        seen = await visitor.wait_for("chat:message", lambda m: m["seq"] == 2)
        assert seen["role"] == "admin" and "msg--theirs" in seen["html"]


async def test_role_comes_from_the_cookie_not_the_payload(server: Server, admin_token: str) -> None:
    token, cid = await start_visitor(server.url, "Forger")
    visitor = await visitor_peer(server.url, token)
    try:
        ack = await visitor.call(
            "send",
            {
                "chat_id": cid,
                "role": "admin",
                "type": "text",
                "text": "I am admin",
                "client_id": client_id(),
            },
        )
        assert ack["ok"] and ack["message"]["role"] == "visitor"
    finally:
        await visitor.close()


async def test_visitor_cannot_use_another_conversation(server: Server) -> None:
    token_a, cid_a = await start_visitor(server.url, "Ayse")
    token_b, cid_b = await start_visitor(server.url, "Bora")
    a = await visitor_peer(server.url, token_a)
    b = await visitor_peer(server.url, token_b)
    try:
        await a.call("join", {"chat_id": cid_a})
        denied = await b.call("join", {"chat_id": cid_a})
        assert denied == {"ok": False, "error": "bad_chat", "message": denied["message"]}
        assert denied["message"]
        assert (await b.wait_for("chat:error"))["error"] == "bad_chat"
        sent = await b.call("send", {"chat_id": cid_a, "text": "sneak", "client_id": client_id()})
        assert sent["ok"] is False
        # A message in A's room never reaches B.
        ok = await a.call("send", {"chat_id": cid_a, "text": "secret", "client_id": client_id()})
        assert ok["ok"]
        await asyncio.sleep(0.3)
        assert all(m.get("chat_id") != cid_a for m in b.events["chat:message"])
        # And B's own conversation still works.
        assert (await b.call("join", {"chat_id": cid_b}))["ok"]
        # A's history does not contain B's attempt.
        a2 = await visitor_peer(server.url, token_a)
        await a2.call("join", {"chat_id": cid_a})
        history = await a2.wait_for("chat:history")
        assert [m["text"] for m in history] == ["secret"]
        await a2.close()
    finally:
        await a.close()
        await b.close()


async def test_connection_without_identity_is_refused(server: Server) -> None:
    client = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(
            server.url, namespaces=["/chat"], transports=["websocket"], wait_timeout=5
        )
    forged = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await forged.connect(
            server.url,
            namespaces=["/chat"],
            transports=["websocket"],
            wait_timeout=5,
            headers={"Cookie": "sohbet_visitor=not-a-real-token; sohbet_admin=nope"},
        )


async def test_retry_with_same_client_id_is_stored_once(server: Server) -> None:
    token, cid = await start_visitor(server.url, "Retry")
    visitor = await visitor_peer(server.url, token)
    try:
        cid_msg = client_id()
        payload = {"chat_id": cid, "type": "text", "text": "once", "client_id": cid_msg}
        first = await visitor.call("send", payload)
        second = await visitor.call("send", payload)
        assert first["ok"] and second["ok"] and second["duplicate"]
        assert first["message"]["seq"] == second["message"]["seq"]
        # Concurrent retries race on the unique constraint, not on a check-then-act.
        burst_id = client_id()
        acks = await asyncio.gather(
            *[
                visitor.call("send", {"chat_id": cid, "text": "burst", "client_id": burst_id})
                for _ in range(20)
            ]
        )
        assert len({a["message"]["seq"] for a in acks}) == 1
        assert sum(not a["duplicate"] for a in acks) == 1
        other = await visitor_peer(server.url, token)
        await other.call("join", {"chat_id": cid})
        history = await other.wait_for("chat:history")
        assert [m["text"] for m in history] == ["once", "burst"]
        assert [m["seq"] for m in history] == [1, 2]
        await other.close()
    finally:
        await visitor.close()


async def test_reconnect_replays_exactly_what_was_missed(server: Server, admin_token: str) -> None:
    token, cid = await start_visitor(server.url, "Replay")
    visitor = await visitor_peer(server.url, token)
    admin = await admin_peer(server.url, admin_token)
    try:
        await visitor.call("join", {"chat_id": cid})
        await admin.call("join", {"chat_id": cid})
        for i in range(3):
            await visitor.call(
                "send", {"chat_id": cid, "text": f"before {i}", "client_id": client_id()}
            )
        await admin.wait_for("chat:message", lambda m: m["seq"] == 3)
        await admin.close()
        for i in range(4):
            await visitor.call(
                "send", {"chat_id": cid, "text": f"while away {i}", "client_id": client_id()}
            )
        admin = await admin_peer(server.url, admin_token)
        ack = await admin.call("join", {"chat_id": cid, "last_seq": 3})
        assert ack["ok"] and ack["replayed"] == 4 and ack["last_seq"] == 7
        history = await admin.wait_for("chat:history")
        assert [m["seq"] for m in history] == [4, 5, 6, 7]
        assert [m["text"] for m in history] == [f"while away {i}" for i in range(4)]
    finally:
        await visitor.close()
        await admin.close()


async def test_messages_arrive_in_order(server: Server, admin_token: str) -> None:
    async with chat_sockets(server.url, admin_token, "Order") as (_, cid, visitor, admin):
        await admin.call("join", {"chat_id": cid})
        acks = await asyncio.gather(
            *[
                visitor.call("send", {"chat_id": cid, "text": f"m{i}", "client_id": client_id()})
                for i in range(100)
            ]
        )
        assert sorted(a["message"]["seq"] for a in acks) == list(range(1, 101))
        await admin.wait_for("chat:message", lambda m: m["seq"] == 100)
        received = [m["seq"] for m in admin.events["chat:message"]]
        assert received == list(range(1, 101))


BAD_SENDS = [
    ("empty", {"text": ""}, "message_empty"),
    ("whitespace", {"text": " \n\t  \u200b "}, "message_empty"),
    ("too long", {"text": "x" * 4001}, "message_too_long"),
    ("number", {"text": 42}, "message_not_text"),
    ("list", {"text": ["a"]}, "message_not_text"),
    ("missing text", {"text": None}, "message_not_text"),
    ("no client id", {"client_id": None}, "bad_client_id"),
    ("short client id", {"client_id": "abc"}, "bad_client_id"),
    ("weird client id", {"client_id": "a b c d e f g h"}, "bad_client_id"),
    ("media type", {"type": "image"}, "bad_payload"),
    ("missing chat", {"chat_id": None}, "bad_chat"),
    ("chat as object", {"chat_id": {"$ne": 1}}, "bad_chat"),
]


@pytest.mark.parametrize(("label", "override", "error"), BAD_SENDS, ids=[b[0] for b in BAD_SENDS])
async def test_bad_sends_get_a_clear_error_and_store_nothing(
    server: Server, label: str, override: dict[str, object], error: str
) -> None:
    token, cid = await start_visitor(server.url, "Bad")
    visitor = await visitor_peer(server.url, token)
    try:
        payload: dict[str, object] = {
            "chat_id": cid,
            "type": "text",
            "text": "ok",
            "client_id": client_id(),
        }
        payload.update(override)
        ack = await visitor.call("send", payload)
        assert ack["ok"] is False and ack["error"] == error, (label, ack)
        assert isinstance(ack["message"], str) and ack["message"]
        await visitor.call("join", {"chat_id": cid})
        assert await visitor.wait_for("chat:history") == []
    finally:
        await visitor.close()


@pytest.mark.parametrize("payload", ["string", 12, None, ["list"], True], ids=repr)
async def test_malformed_payloads_for_every_event(server: Server, payload: object) -> None:
    token, cid = await start_visitor(server.url, "Mal")
    visitor = await visitor_peer(server.url, token)
    try:
        for event in ("join", "send", "typing", "leave", "read"):
            ack = await visitor.call(event, payload)
            assert ack["ok"] is False and ack["error"] in {"bad_payload", "forbidden"}, (event, ack)
        # The server is still fine for this client afterwards.
        good = await visitor.call(
            "send", {"chat_id": cid, "text": "still here", "client_id": client_id()}
        )
        assert good["ok"]
    finally:
        await visitor.close()


async def test_html_in_names_and_messages_is_text(server: Server, admin_token: str) -> None:
    name = "<img src=x onerror=alert(1)>"
    async with chat_sockets(server.url, admin_token, name) as (token, cid, visitor, admin):
        await admin.call("join", {"chat_id": cid})
        text = '<script>alert(1)</script><b hx-get="/admin">x</b>'
        ack = await visitor.call("send", {"chat_id": cid, "text": text, "client_id": client_id()})
        assert "<script>" not in ack["message"]["html"]
        assert "&lt;script&gt;" in ack["message"]["html"]
        pushed = await admin.wait_for("chat:message")
        assert "<b hx-get" not in pushed["html"] and "&lt;b hx-get" in pushed["html"]
        assert "<img" not in pushed["html"] and "&lt;img" in pushed["html"]
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
            async with http.get(
                server.url + "/", headers={"Cookie": f"sohbet_visitor={token}"}
            ) as r:
                page = await r.text()
            async with http.get(
                server.url + "/admin", headers={"Cookie": f"sohbet_admin={admin_token}"}
            ) as r:
                panel = await r.text()
        for html in (page, panel):
            assert "<img src=x" not in html
        assert "&lt;script&gt;" in page and "<script>alert" not in page


async def test_typing_reaches_the_other_side_only(server: Server, admin_token: str) -> None:
    async with chat_sockets(server.url, admin_token, "Typer") as (_, cid, visitor, admin):
        await visitor.call("join", {"chat_id": cid})
        await admin.call("join", {"chat_id": cid})
        assert (await admin.call("typing", {"chat_id": cid}))["ok"]
        got = await visitor.wait_for("chat:typing")
        # The contract's fields, and which operator types (issue 18).
        assert {k: got[k] for k in ("chat_id", "role")} == {"chat_id": cid, "role": "admin"}
        assert got["name"] == got["operator"]["name"] == "Destek"
        await visitor.call("typing", {"chat_id": cid})
        assert (await admin.wait_for("chat:typing"))["role"] == "visitor"
        await asyncio.sleep(0.2)
        assert len(visitor.events["chat:typing"]) == 1


async def test_presence_of_operator_and_visitor(server: Server, admin_token: str) -> None:
    token, cid = await start_visitor(server.url, "Presence")
    visitor = await visitor_peer(server.url, token)
    try:
        admin = await admin_peer(server.url, admin_token)
        # The visitor may or may not see the first "online" (other modules' admins); a second
        # admin tab must not flip anything, closing every tab must say offline.
        second = await admin_peer(server.url, admin_token)
        await second.close()
        await admin.close()
        offline = await visitor.wait_for("presence:operator", lambda p: p["online"] is False)
        assert "status--offline" in offline["html"]
        admin = await admin_peer(server.url, admin_token)
        online = await visitor.wait_for("presence:operator", lambda p: p["online"] is True)
        assert "status--online" in online["html"]
        tab2 = await visitor_peer(server.url, token)
        await visitor.close()
        await asyncio.sleep(0.2)
        assert not any(
            r["chat_id"] == cid and "status__dot--online" not in r["html"]
            for r in admin.events["admin:conversation"]
        ), "one of two visitor tabs closing must not mark the visitor offline"
        await tab2.close()
        row = await admin.wait_for(
            "admin:conversation",
            lambda r: r["chat_id"] == cid and "status__dot--online" not in r["html"],
        )
        assert row["chat_id"] == cid
        await admin.close()
    finally:
        if visitor.sio.connected:
            await visitor.close()


async def test_admin_deletes_messages_and_conversation(server: Server, admin_token: str) -> None:
    token, cid = await start_visitor(server.url, "Deleter")
    visitor = await visitor_peer(server.url, token)
    csrf = await admin_csrf(server.url, admin_token)
    cookie = {"Cookie": f"sohbet_admin={admin_token}"}
    try:
        await visitor.call("join", {"chat_id": cid})
        for i in range(4):
            await visitor.call("send", {"chat_id": cid, "text": f"m{i}", "client_id": client_id()})
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
            url = f"{server.url}/admin/c/{cid}/messages/delete"
            async with http.post(url, data={"seq": ["2", "3"]}, headers=cookie) as r:
                assert r.status == 403, "no CSRF token, no deletion"
            status, pane = await panel_action(
                server.url,
                admin_token,
                csrf,
                f"/admin/c/{cid}/messages/delete",
                {"seq": ["2", "3"]},
            )
            assert status == 200
            assert "m1" not in pane and "m0" in pane and "m3" in pane
            deleted = await visitor.wait_for("chat:deleted")
            assert deleted == {"chat_id": cid, "seqs": [2, 3]}
            fresh = await visitor_peer(server.url, token)
            await fresh.call("join", {"chat_id": cid})
            assert [m["text"] for m in await fresh.wait_for("chat:history")] == ["m0", "m3"]
            await fresh.close()

            status, _ = await panel_action(server.url, admin_token, csrf, f"/admin/c/{cid}/delete")
            assert status == 200
            assert (await visitor.wait_for("chat:closed"))["chat_id"] == cid
            async with http.get(
                server.url + "/", headers={"Cookie": f"sohbet_visitor={token}"}
            ) as r:
                assert 'action="/start"' in await r.text()
            async with http.get(f"{server.url}/admin/c/{cid}", headers=cookie) as r:
                assert r.status == 404
    finally:
        await visitor.close()
