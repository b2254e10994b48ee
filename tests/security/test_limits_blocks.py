"""Floods and abusers: budgets with a visible message, X-Forwarded-For, blocking a visitor."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.security.attack import (
    SUITE_ENV,
    message_count,
    new_address,
    start_from,
    visitor,
)
from tests.support.clients import (
    VISITOR_COOKIE,
    admin_csrf,
    admin_peer,
    client_id,
    jarless,
    panel_action,
    start_visitor,
    visitor_peer,
)
from tests.support.fake_telegram import FakeTelegram
from tests.support.server import Server, query, sqlite_server
from tests.support.telegram import (
    telegram_env,
    visitor_with_chat,
    with_text,
)

SERVER_ENV = {**SUITE_ENV, "CONVERSATIONS_PER_HOUR": "3", "MESSAGES_PER_MINUTE": "5"}
TOO_MANY_CONVERSATIONS = "Bu bağlantıdan çok fazla yeni sohbet açıldı"
BLOCKED = "Bu sohbette artık mesaj gönderemezsiniz."
BLOCKED_ADDRESS = "Bu bağlantıdan yeni sohbet başlatılamaz."


async def test_flood_of_new_conversations_is_refused_with_a_message(server: Server) -> None:
    """Input: one address opens conversations as fast as it can. Safe: after the hourly
    budget (3 here) a 429 page says so in Turkish and keeps the typed name; another address
    is unaffected; the refused ones are not stored."""
    address = new_address()
    before = await query(server, "SELECT COUNT(*) FROM conversation")
    results = [await start_from(server, f"Flood{n}", address) for n in range(6)]
    assert [status for status, _, _ in results] == [303, 303, 303, 429, 429, 429]
    page = results[3][2]
    assert TOO_MANY_CONVERSATIONS in page and 'value="Flood3"' in page, page
    assert await query(server, "SELECT COUNT(*) FROM conversation") == [(int(before[0][0]) + 3,)]
    status, token, _ = await start_from(server, "Neighbour", new_address())
    assert status == 303 and token


async def test_forwarded_for_is_read_from_the_right(server: Server) -> None:
    """Input: a client behind our proxy prepends made-up addresses to X-Forwarded-For to get
    a fresh budget each time. Safe: the address our proxy saw (the right-most) is the one
    counted, so the flood is still stopped."""
    real = new_address()
    statuses = [(await start_from(server, "Spoof", f"10.9.9.{n}, {real}"))[0] for n in range(5)]
    assert statuses == [303, 303, 303, 429, 429]


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(tmp_path: Path) -> None:
    """Input: without TRUSTED_PROXIES, each request claims a different X-Forwarded-For.
    Safe: the header is ignored; the TCP peer's budget is used up."""
    env = {"CONVERSATIONS_PER_HOUR": "2", "MESSAGES_PER_MINUTE": "5"}
    async with sqlite_server(tmp_path, env) as server:
        statuses = [(await start_from(server, "Peer", new_address()))[0] for _ in range(3)]
    assert statuses == [303, 303, 429]


async def test_message_flood_is_slowed_with_a_message_and_nothing_is_lost(
    server: Server, admin_token: str
) -> None:
    """Input: a visitor sends 8 messages at once with a budget of 5 a minute. Safe: 5 are
    stored; the others get ok false with `too_many_messages`, a Turkish message and
    retry_after (the page keeps them queued and resends); the operator is never limited."""
    token, cid = await visitor(server, "Chatty")
    peer = await visitor_peer(server.url, token)
    admin = await admin_peer(server.url, admin_token)
    try:
        acks = [
            await peer.call("send", {"chat_id": cid, "text": f"m{n}", "client_id": client_id()})
            for n in range(8)
        ]
        assert [a["ok"] for a in acks] == [True] * 5 + [False] * 3
        refused = acks[5]
        assert refused["error"] == "too_many_messages", refused
        assert 0 < refused["retry_after"] <= 60
        assert "Çok hızlı gönderiyorsunuz" in refused["message"], refused
        assert await message_count(server, cid) == 5
        for n in range(8):
            ack = await admin.call(
                "send", {"chat_id": cid, "text": f"a{n}", "client_id": client_id()}
            )
            assert ack["ok"], ack
    finally:
        await peer.close()
        await admin.close()


async def test_operator_blocks_and_unblocks_a_visitor_from_the_panel(
    server: Server, admin_token: str
) -> None:
    """Input: the operator presses Block on a conversation. Safe: the visitor's sends are
    refused with a visible message (and the page says so), no new conversation starts from
    their address, others are unaffected; Unblock lifts both."""
    address = new_address()
    token, cid = await start_visitor(server.url, "Troll", headers={"X-Forwarded-For": address})
    peer = await visitor_peer(server.url, token)
    csrf = await admin_csrf(server.url, admin_token)
    try:
        async with jarless() as http:
            assert (await peer.call("join", {"chat_id": cid}))["ok"]
            status, pane = await panel_action(
                server.url, admin_token, csrf, f"/admin/c/{cid}/block"
            )
            assert status == 200
            assert "Engeli kaldır" in pane and 'id="blocked-badge"' in pane
            ack = await peer.call("send", {"chat_id": cid, "text": "hi", "client_id": client_id()})
            assert ack["ok"] is False and ack["error"] == "blocked" and ack["message"] == BLOCKED
            async with http.get(
                server.url + "/", headers={"Cookie": f"{VISITOR_COOKIE}={token}"}
            ) as r:
                assert BLOCKED in await r.text()
            status, _, page = await start_from(server, "Troll again", address)
            assert status == 403 and BLOCKED_ADDRESS in page
            assert (await start_from(server, "Someone else", new_address()))[0] == 303

            status, pane = await panel_action(
                server.url, admin_token, csrf, f"/admin/c/{cid}/unblock"
            )
            assert status == 200 and "Engelle" in pane
        ack = await peer.call("send", {"chat_id": cid, "text": "sorry", "client_id": client_id()})
        assert ack["ok"], ack
        assert (await start_from(server, "Troll back", address))[0] == 303
    finally:
        await peer.close()


async def test_ban_and_unban_from_telegram(tmp_path: Path) -> None:
    """Input: the operator writes `/ban <CID>` (and `/unban` as a reply to the visitor's
    forwarded message) in the admin chat; a stranger's chat sends `/ban` too. Safe: the
    operator's commands block and unblock, with a confirmation; the stranger's does nothing."""
    async with FakeTelegram() as fake:
        env = telegram_env(fake, **SUITE_ENV)
        async with sqlite_server(tmp_path, env) as server:
            peer, cid = await visitor_with_chat(server, "Spam")
            try:
                ack = await peer.call(
                    "send", {"chat_id": cid, "text": "buy now", "client_id": client_id()}
                )
                assert ack["ok"]
                forwarded = await fake.wait_for_sent(with_text("buy now"))

                stranger_chat = {"id": 55501, "type": "private", "first_name": "Eve"}
                stranger = {"id": 55501, "is_bot": False, "first_name": "Eve"}
                await fake.push_update(
                    {
                        "message": {
                            "message_id": 1, "date": 1700000000, "chat": stranger_chat,
                            "from": stranger, "text": f"/ban {cid}",
                            "entities": [{"type": "bot_command", "offset": 0, "length": 4}],
                        }
                    }
                )  # fmt: skip
                await fake.admin_command(f"/ban {cid}")
                await fake.wait_for_sent(with_text("engellendi"))
                ack = await peer.call(
                    "send", {"chat_id": cid, "text": "more", "client_id": client_id()}
                )
                assert ack["ok"] is False and ack["error"] == "blocked"

                await fake.admin_text("/unban", reply_to=forwarded)
                await fake.wait_for_sent(with_text("artık engelli değil"))
                for _ in range(50):  # the write path re-reads a block at most every 2 s
                    ack = await peer.call(
                        "send", {"chat_id": cid, "text": "ok now", "client_id": client_id()}
                    )
                    if ack["ok"]:
                        break
                    await asyncio.sleep(0.2)
                assert ack["ok"], ack
                bans = [m for m in fake.sent() if "engellendi" in (m.text or "")]
                assert len(bans) == 1, "the stranger's /ban did nothing"
            finally:
                await peer.close()
