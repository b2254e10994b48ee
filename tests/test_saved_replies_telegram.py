"""Saved replies from Telegram, through the fake Bot API: `/r kargo` in a conversation's topic
and the `/r` button list each reach the visitor's socket exactly once, in the visitor's language
with the placeholders filled; an unknown shortcut gets a clear answer in the topic."""

from __future__ import annotations

import re

import aiohttp

from tests.support.clients import ADMIN_COOKIE, admin_csrf, page_with, panel_action
from tests.support.fake_telegram import FakeTelegram, SentMessage
from tests.support.saved_replies import admin_texts, save_reply, visitor_in
from tests.support.server import Server

# The shared fake and server (tests/support/telegram.py) as a forum: a topic per conversation.
TELEGRAM_FORUM = True
TELEGRAM_ENV = {"TELEGRAM_TOPICS": "on"}


async def topic_of(fake: FakeTelegram, cid: str) -> int:
    notice = await fake.wait_for_sent(
        lambda m: m.thread_id is not None and "chat'e girdi" in (m.text or "")
        and any(cid in t["name"] for t in fake.topics.values())
        and fake.topics.get(m.thread_id, {}).get("name", "").endswith(cid),
        timeout=10,
    )  # fmt: skip
    assert notice.thread_id is not None
    return notice.thread_id


async def test_r_shortcut_in_the_topic(
    tg_server: Server, fake: FakeTelegram, tg_admin_token: str
) -> None:
    await save_reply(
        tg_server,
        tg_admin_token,
        shortcut="kargo",
        text_tr="Merhaba {name}, kargonuz yolda ({cid}).",
        text_en="Hi {name}, your parcel is on its way ({cid}).",
    )
    async with visitor_in(tg_server, "Ada", "en") as (visitor, cid):
        thread = await topic_of(fake, cid)
        command = await fake.admin_command("/R KARGO", thread_id=thread)
        expected = f"Hi Ada, your parcel is on its way ({cid})."
        got = await visitor.wait_for("chat:message", lambda m: m["role"] == "admin")
        assert got["text"] == expected
        # The topic says what went out, as an answer to the command.
        said = await fake.wait_for_sent(
            lambda m: m.thread_id == thread and "gönderildi" in (m.text or "")
        )
        assert expected in (said.text or "") and "/kargo" in (said.text or "")
        assert said.reply_to_message_id == command.message["message_id"]

        # An unknown shortcut: a clear answer in the topic, nothing to the visitor.
        await fake.admin_command("/r yok-boyle", thread_id=thread)
        unknown = await fake.wait_for_sent(
            lambda m: m.thread_id == thread and "adında kayıtlı yanıt yok" in (m.text or "")
        )
        assert unknown.text == (
            "⚠️ /yok-boyle adında kayıtlı yanıt yok. Listeden seçmek için yalnızca /r gönderin."
        )
        # Outside any conversation the bot asks which one.
        await fake.admin_command("/r kargo")
        await fake.wait_for_sent(lambda m: m.thread_id is None and "Hangi sohbet" in (m.text or ""))
        # Everything above went through the one outbox lane of the topic after the reply:
        # by now a second copy of it would have reached the socket.
        await visitor.call(
            "send", {"chat_id": cid, "text": "teşekkürler", "client_id": "thanks-01"}
        )
        await fake.wait_for_sent(lambda m: "teşekkürler" in (m.text or ""))
        assert admin_texts(visitor) == [expected]


async def test_r_alone_lists_them_as_buttons(
    tg_server: Server, fake: FakeTelegram, tg_admin_token: str
) -> None:
    await save_reply(
        tg_server, tg_admin_token, shortcut="iade", text_tr="İade için {cid} yazın, {name}."
    )
    await save_reply(
        tg_server,
        tg_admin_token,
        shortcut="kargo",
        text_tr="Merhaba {name}, kargonuz yolda ({cid}).",
        text_en="Hi {name}, your parcel is on its way ({cid}).",
    )
    async with visitor_in(tg_server, "Ece", "en") as (visitor, cid):
        thread = await topic_of(fake, cid)
        await fake.admin_command("/r", thread_id=thread)
        listing: SentMessage = await fake.wait_for_sent(
            lambda m: m.thread_id == thread and "kayıtlı yanıtlar" in (m.text or "")
        )
        labels = {b["text"].split(" · ")[0]: b["callback_data"] for b in listing.buttons}
        assert {"/iade", "/kargo"} <= labels.keys()

        # "iade" has no English text: the visitor gets the Turkish one, filled in.
        pressed = await fake.admin_button(listing, labels["/iade"])
        answer = await fake.wait_for_call(
            "answerCallbackQuery",
            lambda c: c.params.get("callback_query_id") == pressed.message["id"],
        )
        assert "gönderildi" in answer.params.get("text", "")
        expected = f"İade için {cid} yazın, Ece."
        got = await visitor.wait_for("chat:message", lambda m: m["role"] == "admin")
        assert got["text"] == expected
        # The list then says what was sent, and has no buttons left.
        picked = await fake.wait_for_sent(
            lambda m: m.message_id == listing.message_id and bool(m.edits)
        )
        assert expected in (picked.text or "") and picked.buttons == []

        # A second press (a double tap, or another operator on the old list) sends nothing.
        again = await fake.admin_button(listing, labels["/iade"])
        second = await fake.wait_for_call(
            "answerCallbackQuery",
            lambda c: c.params.get("callback_query_id") == again.message["id"],
        )
        assert "zaten gönderildi" in second.params.get("text", "")

        # A partial shortcut offers the ones it matches.
        await fake.admin_command("/r kar", thread_id=thread)
        suggested = await fake.wait_for_sent(
            lambda m: m.thread_id == thread and "demek istediniz" in (m.text or "")
        )
        assert [b["text"].split(" · ")[0] for b in suggested.buttons] == ["/kargo"]
        await visitor.call("send", {"chat_id": cid, "text": "tamam", "client_id": "tamam-001"})
        await fake.wait_for_sent(lambda m: "tamam" in (m.text or ""))
        assert admin_texts(visitor) == [expected]


async def test_r_with_a_cid_tag_and_the_panel_shows_it(
    tg_server: Server, fake: FakeTelegram, tg_admin_token: str
) -> None:
    await save_reply(tg_server, tg_admin_token, shortcut="selam", text_tr="Selam {name}!")
    async with visitor_in(tg_server, "Naz", "tr") as (visitor, cid):
        await topic_of(fake, cid)
        # Outside the topic, the conversation named by its CID tag (any case).
        await fake.admin_command(f"/r Selam [CID: {cid.lower()}]")
        await visitor.wait_for("chat:message", lambda m: m["text"] == "Selam Naz!")
        said = await fake.wait_for_sent(
            lambda m: m.thread_id is None and "Selam Naz!" in (m.text or "")
        )
        assert "/selam" in (said.text or "")
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
            async with http.get(
                f"{tg_server.url}/admin/c/{cid}",
                headers={"Cookie": f"{ADMIN_COOKIE}={tg_admin_token}"},
            ) as r:
                assert "Selam Naz!" in await r.text()


async def test_r_when_there_are_none(
    tg_server: Server, fake: FakeTelegram, tg_admin_token: str
) -> None:
    # The other tests add what they use when they start, so this one may remove them all.
    csrf = await admin_csrf(tg_server.url, tg_admin_token)
    page = await page_with(tg_server.url + "/admin/replies", ADMIN_COOKIE, tg_admin_token)
    for reply_id in re.findall(r'action="/admin/replies/(\d+)/delete"', page):
        path = f"/admin/replies/{reply_id}/delete"
        status, _ = await panel_action(tg_server.url, tg_admin_token, csrf, path)
        assert status == 200
    async with visitor_in(tg_server, "Oya", "tr") as (visitor, cid):
        thread = await topic_of(fake, cid)
        await fake.admin_command("/r", thread_id=thread)
        none = await fake.wait_for_sent(
            lambda m: m.thread_id == thread and "Henüz kayıtlı yanıt yok" in (m.text or "")
        )
        assert none.buttons == []
        await fake.admin_command("/r kargo", thread_id=thread)
        await fake.wait_for_sent(
            lambda m: m.thread_id == thread and "/kargo adında kayıtlı yanıt yok" in (m.text or "")
        )
        assert admin_texts(visitor) == []
