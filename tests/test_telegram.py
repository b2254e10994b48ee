"""The Telegram console end to end: a real server (polling mode) and a fake Bot API server.

The test plays the human operator through the fake: replies, CID tags, edits, commands,
buttons; and plays Telegram's failures: 429, an HTML 502, dropped connections, a blocked bot.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.support.clients import (
    ADMIN_COOKIE,
    ask_code,
    client_id,
    page_with,
    redeem_code,
)
from tests.support.fake_telegram import FakeTelegram, FaultKind, SentMessage
from tests.support.server import Server
from tests.support.telegram import (
    joined_visitor,
    visitor_and_panel,
    with_text,
)


async def test_login_code_arrives_in_telegram_not_the_log(
    tg_server: Server, tg_admin_token: str
) -> None:
    assert tg_admin_token
    assert "LOGIN CODE" not in tg_server.log()


async def test_visitor_to_telegram_to_visitor(
    tg_server: Server, fake: FakeTelegram, tg_admin_token: str
) -> None:
    async with visitor_and_panel(tg_server, tg_admin_token, "Eda") as (visitor, panel, cid):
        await panel.call("join", {"chat_id": cid})
        notice = await fake.wait_for_sent(with_text(f"[CID: {cid}]"))
        assert "chat'e girdi" in (notice.text or "") and "<b>Eda</b>" in (notice.text or "")
        assert {"text": "Sohbeti kapat", "callback_data": f"close:{cid}"} in notice.buttons

        await visitor.call(
            "send", {"chat_id": cid, "text": "Siparişim nerede?", "client_id": client_id()}
        )
        forwarded = await fake.wait_for_sent(with_text("Siparişim nerede?"))
        assert f"[CID: {cid}]" in (forwarded.text or "") and forwarded.chat_id == fake.admin_chat_id

        await fake.admin_text("Kargoda, yarın elinizde.", reply_to=forwarded)
        got = await visitor.wait_for(
            "chat:message", lambda m: m["text"] == "Kargoda, yarın elinizde."
        )
        assert got["role"] == "admin"
        assert (await panel.wait_for("chat:message", lambda m: m["role"] == "admin"))[
            "text"
        ] == got["text"]
        await asyncio.sleep(0.5)
        assert not [m for m in fake.sent() if "Kargoda" in (m.text or "")], (
            "not echoed back to Telegram"
        )

        # A reply from the panel is mirrored to Telegram so the chat there stays complete.
        await panel.call(
            "send", {"chat_id": cid, "text": "Takip no: 123", "client_id": client_id()}
        )
        mirrored = await fake.wait_for_sent(with_text("Takip no: 123"))
        assert "Panel" in (mirrored.text or "")


async def test_cid_tag_and_unknown_target(tg_server: Server, fake: FakeTelegram) -> None:
    async with joined_visitor(tg_server, "Tagli") as (visitor, cid):
        await fake.wait_for_sent(with_text(f"[CID: {cid}]"))
        await fake.admin_text(f"[CID: {cid}] Etiketle yanıt")
        got = await visitor.wait_for("chat:message", lambda m: m["role"] == "admin")
        assert got["text"] == "Etiketle yanıt"
        asked = await fake.admin_text("Bu kime gidecek?")
        answer = await fake.wait_for_sent(
            lambda m: m.reply_to_message_id == asked.message["message_id"]
        )
        assert "Hangi sohbet" in (answer.text or "")


async def test_cid_tag_matches_whatever_its_case(tg_server: Server, fake: FakeTelegram) -> None:
    async with joined_visitor(tg_server, "Şule Nur") as (visitor, cid):
        await fake.wait_for_sent(with_text(f"[CID: {cid}]"))
        assert cid != cid.lower()
        await fake.admin_text(f"[cid: {cid.lower()}] Küçük harfle yazdım")
        got = await visitor.wait_for("chat:message", lambda m: m["role"] == "admin")
        assert got["text"] == "Küçük harfle yazdım"


async def test_user_text_is_escaped_for_html(tg_server: Server, fake: FakeTelegram) -> None:
    async with joined_visitor(tg_server, "<b>Kötü</b> & <i") as (visitor, cid):
        notice = await fake.wait_for_sent(with_text(f"[CID: {cid}]"))
        assert "&lt;b&gt;Kötü&lt;/b&gt; &amp; &lt;i" in (notice.text or "")
        await visitor.call(
            "send", {"chat_id": cid, "text": "<script>x</script> a<b", "client_id": client_id()}
        )
        forwarded = await fake.wait_for_sent(with_text("&lt;script&gt;"))
        assert "a&lt;b" in (forwarded.text or "")
        # The fake refuses HTML Telegram cannot parse: both calls were accepted.
        assert all(
            c.status == 200 for c in fake.calls("sendMessage") if cid in str(c.params.get("text"))
        )


async def test_edits_in_telegram_update_the_web_message(
    tg_server: Server, fake: FakeTelegram
) -> None:
    async with joined_visitor(tg_server, "Edit") as (visitor, cid):
        notice = await fake.wait_for_sent(with_text(f"[CID: {cid}]"))
        reply = await fake.admin_text("Yanlış yazdım", reply_to=notice)
        first = await visitor.wait_for("chat:message", lambda m: m["role"] == "admin")
        await fake.admin_edit(reply, "Doğrusu bu")
        edited = await visitor.wait_for("chat:message", lambda m: m["edited"])
        assert edited["seq"] == first["seq"] and edited["text"] == "Doğrusu bu"
        assert "düzenlendi" in edited["html"]


async def test_operator_messages_keep_their_order(tg_server: Server, fake: FakeTelegram) -> None:
    async with joined_visitor(tg_server, "Sira") as (visitor, cid):
        notice = await fake.wait_for_sent(with_text(f"[CID: {cid}]"))
        for n in range(10):
            await fake.admin_text(f"parça {n}", reply_to=notice)
        await visitor.wait_for("chat:message", lambda m: m["text"] == "parça 9", timeout=15)
        texts = [m["text"] for m in visitor.events["chat:message"] if m["role"] == "admin"]
        assert texts == [f"parça {n}" for n in range(10)]


async def test_list_help_and_close_button(
    tg_server: Server, fake: FakeTelegram, tg_admin_token: str
) -> None:
    async with visitor_and_panel(tg_server, tg_admin_token, "Liste") as (visitor, panel, cid):
        notice = await fake.wait_for_sent(with_text(f"[CID: {cid}]"))
        await visitor.call("send", {"chat_id": cid, "text": "selam", "client_id": client_id()})
        await fake.wait_for_sent(with_text("selam"))
        await fake.admin_command("/list")
        listing = await fake.wait_for_sent(
            lambda m: "Açık sohbetler" in (m.text or "") and cid in (m.text or "")
        )
        assert "1 okunmamış" in (listing.text or "")
        await fake.admin_command("/help")
        await fake.wait_for_sent(with_text("/list"))

        pressed = await fake.admin_button(notice, f"close:{cid}")
        query_id = pressed.message["id"]
        await fake.wait_for_call(
            "answerCallbackQuery", lambda c: c.params.get("callback_query_id") == query_id
        )
        row = await panel.wait_for(
            "admin:conversation", lambda r: r["chat_id"] == cid and r["sort"].startswith("2")
        )
        assert "Kapalı" in row["html"]
        await fake.admin_command("/list")
        later = await fake.wait_for_sent(
            lambda m: "Açık" in (m.text or "") and m.message_id > listing.message_id
        )
        assert cid not in (later.text or ""), "a closed conversation is not listed"


async def test_closing_from_telegram_shows_on_the_notice_for_everyone(
    tg_server: Server, fake: FakeTelegram, tg_admin_token: str
) -> None:
    async with visitor_and_panel(tg_server, tg_admin_token, "Kapanis") as (_, panel, cid):
        notice = await fake.wait_for_sent(with_text(f"[CID: {cid}]"))
        await fake.admin_button(notice, f"close:{cid}")
        closed = await fake.wait_for_sent(
            lambda m: m.message_id == notice.message_id and "Operatör</b> kapattı" in (m.text or "")
        )
        assert f"[CID: {cid}]" in (closed.text or "") and closed.edits, "the notice was edited"
        assert {"text": "Yeniden aç", "callback_data": f"reopen:{cid}"} in closed.buttons
        await panel.wait_for(
            "admin:conversation", lambda r: r["chat_id"] == cid and "Kapalı" in r["html"]
        )

        await fake.admin_button(notice, f"reopen:{cid}")
        reopened = await fake.wait_for_sent(
            lambda m: m.message_id == notice.message_id and "yeniden açtı" in (m.text or "")
        )
        assert {"text": "Sohbeti kapat", "callback_data": f"close:{cid}"} in reopened.buttons
        await panel.wait_for(
            "admin:conversation",
            lambda r: r["chat_id"] == cid and not r["sort"].startswith("2"),
        )


async def test_wrong_codes_alert_the_operator(tg_server: Server, fake: FakeTelegram) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        _, challenge, _ = await ask_code(http, tg_server.url)
        assert challenge
        for _ in range(3):
            status, _, _ = await redeem_code(http, tg_server.url, challenge, "000000")
            assert status == 400
    alert = await fake.wait_for_sent(with_text("yanlış giriş kodu"))
    assert "3" in (alert.text or "")


def delivered(fake: FakeTelegram, text: str) -> list[SentMessage]:
    return [m for m in fake.sent() if text in (m.text or "")]


@pytest.mark.parametrize("kind", ["429", "502_html", "500", "drop"])
async def test_transient_failures_are_retried_and_delivered_once(
    tg_server: Server, fake: FakeTelegram, kind: FaultKind
) -> None:
    async with joined_visitor(tg_server, f"Hata{kind.replace('_', '')}") as (visitor, cid):
        await fake.wait_for_sent(with_text(f"[CID: {cid}]"))
        before = len(fake.calls("sendMessage"))
        fake.fail_next("sendMessage", kind, retry_after=2)
        text = f"dayanıklı {kind}"
        started = time.monotonic()
        ack = await visitor.call("send", {"chat_id": cid, "text": text, "client_id": client_id()})
        assert ack["ok"] and time.monotonic() - started < 1, "the visitor never waits for Telegram"
        await fake.wait_for_sent(with_text(text), timeout=15)
        calls = fake.calls("sendMessage")[before:]
        assert [c.status == 200 for c in calls] == [False, True], "one failure, then one delivery"
        assert len(delivered(fake, text)) == 1


async def test_429_pauses_every_send_for_retry_after(tg_server: Server, fake: FakeTelegram) -> None:
    async with joined_visitor(tg_server, "Bekle") as (visitor, cid):
        await fake.wait_for_sent(with_text(f"[CID: {cid}]"))
        fake.fail_next("sendMessage", "429", retry_after=3)
        sent_at = time.monotonic()
        await visitor.call("send", {"chat_id": cid, "text": "sabır 1", "client_id": client_id()})
        await visitor.call("send", {"chat_id": cid, "text": "sabır 2", "client_id": client_id()})
        await fake.wait_for_sent(with_text("sabır 2"), timeout=15)
        assert time.monotonic() - sent_at >= 2.9
        order = [m.text for m in fake.sent() if "sabır" in (m.text or "")]
        assert [t.rsplit(" ", 1)[-1] for t in order if t] == ["1", "2"]


async def test_permanent_refusal_alerts_the_panel(
    tg_server: Server, fake: FakeTelegram, tg_admin_token: str
) -> None:
    async with visitor_and_panel(tg_server, tg_admin_token, "Engel") as (visitor, panel, cid):
        await fake.wait_for_sent(with_text(f"[CID: {cid}]"))
        fake.fail_next("sendMessage", "403")
        await visitor.call(
            "send", {"chat_id": cid, "text": "ulaşmayacak", "client_id": client_id()}
        )
        alert = await panel.wait_for("admin:alert", timeout=10)
        assert "Telegram" in alert["html"] and "Forbidden" in alert["html"]
        # The lane goes on: the next message is delivered.
        await visitor.call("send", {"chat_id": cid, "text": "bu ulaşır", "client_id": client_id()})
        await fake.wait_for_sent(with_text("bu ulaşır"), timeout=10)
        assert not delivered(fake, "ulaşmayacak")
        page = await page_with(tg_server.url + "/admin", ADMIN_COOKIE, tg_admin_token)
        assert "telegram-alert" in page, "the panel shows it after a reload too"
