"""Telegram in a forum supergroup (a topic per conversation) and in webhook mode."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.calls import call_peer
from tests.support.clients import client_id, start_visitor, visitor_peer
from tests.support.fake_telegram import FakeTelegram
from tests.support.server import Server
from tests.support.telegram import joined_visitor, telegram_env, visitor_with_chat, with_text

SECRET = "s3cret-token_for-tests"

# The shared fake and server (tests/support/telegram.py) as a forum: a topic per conversation.
TELEGRAM_FORUM = True
TELEGRAM_ENV = {"TELEGRAM_TOPICS": "on", "PUBLIC_URL": "https://destek.example.com"}


async def test_each_conversation_gets_its_topic(tg_server: Server, fake: FakeTelegram) -> None:
    visitor, cid = await visitor_with_chat(tg_server, "Zeynep")
    # Several messages at once with the notice: still exactly one topic for the conversation.
    await asyncio.gather(
        *[
            visitor.call("send", {"chat_id": cid, "text": f"ilk {n}", "client_id": client_id()})
            for n in range(5)
        ]
    )
    try:
        last = await fake.wait_for_sent(with_text("ilk 4"), timeout=10)
        topics = [t for t in fake.topics.values() if cid in t["name"]]
        assert len(topics) == 1 and topics[0]["name"] == f"Zeynep · {cid}"
        thread = topics[0]["message_thread_id"]
        in_topic = [m.text for m in fake.sent(thread_id=thread)]
        assert any("chat'e girdi" in (t or "") for t in in_topic)
        assert [t.rsplit(" ", 1)[-1] for t in in_topic if t and "ilk" in t] == [
            "0",
            "1",
            "2",
            "3",
            "4",
        ]
        assert last.thread_id == thread and "[CID:" not in (last.text or ""), "the topic names it"
        notice = next(m for m in fake.sent(thread_id=thread) if "chat'e girdi" in (m.text or ""))
        assert {
            "text": "Panelde aç",
            "url": f"https://destek.example.com/admin/c/{cid}",
        } in notice.buttons

        # Writing inside the topic answers that conversation (no reply, no tag needed).
        await fake.admin_text("Konudan yanıt", thread_id=thread)
        got = await visitor.wait_for("chat:message", lambda m: m["role"] == "admin")
        assert got["text"] == "Konudan yanıt"

        # The operator deletes the topic by hand: the next message makes a new one, none lost.
        fake.delete_topic(thread)
        await visitor.call(
            "send", {"chat_id": cid, "text": "konu silindi mi?", "client_id": client_id()}
        )
        again = await fake.wait_for_sent(with_text("konu silindi mi?"), timeout=10)
        assert again.thread_id != thread
        renewed = [t for t in fake.topics.values() if cid in t["name"]]
        assert len(renewed) == 1 and renewed[0]["message_thread_id"] == again.thread_id
    finally:
        await visitor.close()


async def test_conversations_never_mix(tg_server: Server, fake: FakeTelegram) -> None:
    a, cid_a = await visitor_with_chat(tg_server, "Ali")
    b, cid_b = await visitor_with_chat(tg_server, "Banu")
    try:
        for n in range(3):
            # Texts no CID can contain (a CID's tail is hex: "A2" could be part of one).
            await a.call("send", {"chat_id": cid_a, "text": f"ali-{n}", "client_id": client_id()})
            await b.call("send", {"chat_id": cid_b, "text": f"banu-{n}", "client_id": client_id()})
        ta = (await fake.wait_for_sent(with_text("ali-2"), timeout=10)).thread_id
        tb = (await fake.wait_for_sent(with_text("banu-2"), timeout=10)).thread_id
        assert ta != tb
        assert all(
            "ali-" in (m.text or "") or "Ali" in (m.text or "") for m in fake.sent(thread_id=ta)
        )
        assert not any("banu-" in (m.text or "") for m in fake.sent(thread_id=ta))
        await fake.admin_text("B'ye yanıt", thread_id=tb)
        await b.wait_for("chat:message", lambda m: m["role"] == "admin")
        await asyncio.sleep(0.3)
        assert not [m for m in a.events["chat:message"] if m["role"] == "admin"]
    finally:
        await a.close()
        await b.close()


# Webhook mode -------------------------------------------------------------------------------


async def test_the_ring_opens_the_panel_and_says_how_the_call_ended(
    tg_server: Server, fake: FakeTelegram, tg_admin_token: str
) -> None:
    token, cid = await start_visitor(tg_server.url, "Hakan")
    caller = await call_peer(tg_server.url, "visitor", token)
    admin = await call_peer(tg_server.url, "admin", tg_admin_token)
    try:
        assert (await caller.call("join", {"chat_id": cid}))["ok"]

        # Rung, not answered, the visitor hangs up: the ring then says the call was missed.
        ring = await caller.call("call:ring", {"chat_id": cid})
        assert ring["ok"], ring
        notice = await fake.wait_for_sent(lambda m: "Hakan</b> sizi arıyor" in (m.text or ""))
        answer = {"text": "Panelden cevapla", "url": f"https://destek.example.com/admin/c/{cid}"}
        assert answer in notice.buttons
        await admin.wait_for("call:incoming", lambda m: m["call_id"] == ring["call_id"])
        assert (await caller.call("call:end", {"call_id": ring["call_id"]}))["ok"]
        missed = await fake.wait_for_sent(
            lambda m: m.message_id == notice.message_id and "aradı" in (m.text or "")
        )
        assert "Hakan</b> aradı: Cevapsız arama" in (missed.text or ""), missed.text
        assert not missed.buttons, "nothing left to answer"

        # Answered in the panel, then hung up: the ring says it ended, with its length.
        ring = await caller.call("call:ring", {"chat_id": cid})
        assert ring["ok"], ring
        await admin.wait_for("call:incoming", lambda m: m["call_id"] == ring["call_id"])
        second = await fake.wait_for_sent(
            lambda m: "sizi arıyor" in (m.text or "") and m.message_id != notice.message_id
        )
        assert (await admin.call("call:accept", {"call_id": ring["call_id"]}))["ok"]
        assert (await admin.call("call:end", {"call_id": ring["call_id"]}))["ok"]
        ended = await fake.wait_for_sent(
            lambda m: m.message_id == second.message_id and "aradı" in (m.text or "")
        )
        assert "Hakan</b> aradı: Arama, 0:0" in (ended.text or ""), ended.text
    finally:
        await caller.close()
        await admin.close()


@pytest.fixture(scope="module")
async def hooked() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as f:
        yield f


@pytest.fixture(scope="module")
async def hook_server(
    hooked: FakeTelegram, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Server]:
    workdir: Path = tmp_path_factory.mktemp("hook")
    srv = Server(database_url=f"sqlite://{workdir / 'h.db'}", workdir=workdir)
    srv.env_extra = telegram_env(
        hooked,
        TELEGRAM_MODE="webhook",
        TELEGRAM_WEBHOOK_URL=f"http://127.0.0.1:{srv.port}/tg/webhook",
        TELEGRAM_WEBHOOK_SECRET=SECRET,
    )
    await srv.start()
    await hooked.wait_for_call("setWebhook", timeout=10)
    yield srv
    srv.stop()


async def test_webhook_is_registered_with_the_secret(
    hook_server: Server, hooked: FakeTelegram
) -> None:
    call = await hooked.wait_for_call("setWebhook")
    assert call.params["url"] == f"{hook_server.url}/tg/webhook"
    assert call.params["secret_token"] == SECRET
    assert not hooked.calls("getUpdates"), "no polling in webhook mode"


async def test_webhook_round_trip(hook_server: Server, hooked: FakeTelegram) -> None:
    async with joined_visitor(hook_server, "Kanca") as (visitor, cid):
        notice = await hooked.wait_for_sent(with_text(f"[CID: {cid}]"))
        injected = await hooked.admin_text("Webhook'tan merhaba", reply_to=notice)
        assert injected.status == 200
        got = await visitor.wait_for("chat:message", lambda m: m["role"] == "admin")
        assert got["text"] == "Webhook'tan merhaba"


async def test_forged_and_repeated_webhook_requests(
    hook_server: Server, hooked: FakeTelegram
) -> None:
    token, cid = await start_visitor(hook_server.url, "Sahte")
    visitor = await visitor_peer(hook_server.url, token)
    await visitor.call("join", {"chat_id": cid})
    notice = await hooked.wait_for_sent(with_text(f"[CID: {cid}]"))
    update = {
        "update_id": 990001,
        "message": {
            "message_id": 777001, "date": 1700000000, "text": "sahte yanıt",
            "chat": {"id": hooked.admin_chat_id, "type": "private", "first_name": "Operatör"},
            "from": hooked.admin_user,
            "reply_to_message": {"message_id": notice.message_id, "date": 1700000000,
                                 "chat": {"id": hooked.admin_chat_id, "type": "private", "first_name": "Operatör"},
                                 "from": hooked.bot_user, "text": notice.text},
        },
    }  # fmt: skip
    url = hook_server.url + "/tg/webhook"
    body = json.dumps(update)
    try:
        async with aiohttp.ClientSession() as http:
            for headers in (
                {},
                {"X-Telegram-Bot-Api-Secret-Token": "wrong-secret-value"},
                {"X-Telegram-Bot-Api-Secret-Token": SECRET[:-1]},
                {"X-Forwarded-For": "149.154.167.220"},  # a Telegram address: not proof of anything
            ):
                async with http.post(
                    url, data=body, headers={"Content-Type": "application/json", **headers}
                ) as r:
                    assert r.status == 401, headers
            await asyncio.sleep(0.5)
            assert not [m for m in visitor.events["chat:message"] if m["role"] == "admin"], (
                "forgeries change nothing"
            )

            ok = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET}
            async with http.post(url, data="not json", headers=ok) as r:
                assert r.status == 400
            for _ in range(3):  # Telegram redelivers when it misses a 200: still one message
                async with http.post(url, data=body, headers=ok) as r:
                    assert r.status == 200
        await visitor.wait_for("chat:message", lambda m: m["text"] == "sahte yanıt")
        await asyncio.sleep(0.5)
        assert len([m for m in visitor.events["chat:message"] if m["text"] == "sahte yanıt"]) == 1
        visitor2 = await visitor_peer(hook_server.url, token)
        await visitor2.call("join", {"chat_id": cid})
        history = await visitor2.wait_for("chat:history")
        assert [m["text"] for m in history if m["role"] == "admin"] == ["sahte yanıt"]
        await visitor2.close()
    finally:
        await visitor.close()
