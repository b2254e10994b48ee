"""Seen receipts reach Telegram: when the visitor has seen a reply the operator wrote in
Telegram, the bot puts 👀 on that Telegram message (setMessageReaction, through the outbox)."""

from __future__ import annotations

from collections.abc import Callable

from tests.support.clients import client_id
from tests.support.fake_telegram import Call, FakeTelegram
from tests.support.server import Server
from tests.support.telegram import joined_visitor, with_text


async def test_forwarded_to_telegram_is_delivered(tg_server: Server, fake: FakeTelegram) -> None:
    async with joined_visitor(tg_server, "Teslim") as (visitor, cid):
        ack = await visitor.call(
            "send", {"chat_id": cid, "text": "Orada mısınız?", "client_id": client_id()}
        )
        seq = ack["message"]["seq"]
        assert 'data-receipt="sent"' in ack["message"]["html"]
        await fake.wait_for_sent(with_text("Orada mısınız?"))
        got = await visitor.wait_for(
            "chat:receipt", lambda r: r["reader"] == "admin" and r["delivered"] >= seq
        )
        assert got["seen"] < seq  # reached the operator's Telegram, not read yet


async def test_seen_reply_gets_eyes_in_telegram(tg_server: Server, fake: FakeTelegram) -> None:
    async with joined_visitor(tg_server, "Göz") as (visitor, cid):
        ack = await visitor.call(
            "send", {"chat_id": cid, "text": "Kargom nerede?", "client_id": client_id()}
        )
        forwarded = await fake.wait_for_sent(with_text("Kargom nerede?"))
        first = await fake.admin_text("Yolda.", reply_to=forwarded)
        second = await fake.admin_text("Yarın teslim edilir.", reply_to=forwarded)
        got = await visitor.wait_for("chat:message", lambda m: m["text"] == "Yarın teslim edilir.")

        # Answering in Telegram means the operator read the question: the visitor sees ✓✓ seen.
        asked = ack["message"]["seq"]
        receipt = await visitor.wait_for(
            "chat:receipt", lambda r: r["reader"] == "admin" and r["seen"] >= asked
        )
        assert receipt["delivered"] >= asked

        # Delivered only: no reaction yet.
        await visitor.call("receipt", {"chat_id": cid, "delivered": got["seq"]})
        # Seen: both replies get 👀, once each.
        await visitor.call("receipt", {"chat_id": cid, "seen": got["seq"]})
        await visitor.call("receipt", {"chat_id": cid, "seen": got["seq"]})
        chat_id = fake.admin_chat_id
        for injected in (first, second):
            mid: int = injected.message["message_id"]
            await fake.wait_for_call("setMessageReaction", reacted_to(mid))
            assert fake.reactions[(chat_id, mid)] == [{"type": "emoji", "emoji": "👀"}]
        calls = fake.calls("setMessageReaction")
        assert len(calls) == 2
        # The visitor's own question is not reacted to.
        assert (chat_id, forwarded.message_id) not in fake.reactions


async def test_reaction_on_a_deleted_message_is_not_an_alert(
    tg_server: Server, fake: FakeTelegram
) -> None:
    async with joined_visitor(tg_server, "Silinen") as (visitor, cid):
        await visitor.call("send", {"chat_id": cid, "text": "Soru", "client_id": client_id()})
        forwarded = await fake.wait_for_sent(with_text("Soru"))
        fake.fail_next(
            "setMessageReaction", "400", description="Bad Request: message to react not found"
        )
        reply = await fake.admin_text("Cevap", reply_to=forwarded)
        got = await visitor.wait_for("chat:message", lambda m: m["text"] == "Cevap")
        await visitor.call("receipt", {"chat_id": cid, "seen": got["seq"]})
        mid = reply.message["message_id"]
        await fake.wait_for_call("setMessageReaction", lambda c: c.params.get("message_id") == mid)
        assert (fake.admin_chat_id, mid) not in fake.reactions
        # The outbox moved on: the next message still goes out, and no alert was raised.
        await visitor.call("send", {"chat_id": cid, "text": "Tamam", "client_id": client_id()})
        await fake.wait_for_sent(with_text("Tamam"))
        assert "failed for good" not in tg_server.log()


def reacted_to(message_id: int) -> Callable[[Call], bool]:
    return lambda c: c.params.get("message_id") == message_id
