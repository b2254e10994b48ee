"""Taking a conversation from Telegram: "Üstlen" under the notice makes it the conversation of
the operator linked to the Telegram user who pressed it; a second operator pressing it is told
who has it, and a Telegram user who is not an active operator changes nothing."""

from __future__ import annotations

import json

from tests.support.assignment import assignee, audit_rows, operator_id
from tests.support.clients import start_visitor
from tests.support.fake_telegram import JSON, FakeTelegram, SentMessage
from tests.support.server import Server
from tests.support.team import join_team, owner_token, tg_user
from tests.support.telegram import with_text

PASSWORD = "sifre-1234-uzun"
AYSE = tg_user(7101, "Ayşe")
BURAK = tg_user(7102, "Burak")
STRANGER = tg_user(7199, "Yabancı")


async def press(fake: FakeTelegram, notice: SentMessage, cid: str, user: JSON) -> str:
    """Press "Üstlen" as `user`; the text of the bot's answer to that press."""
    pressed = await fake.admin_button(notice, f"take:{cid}", user)
    query_id = pressed.message["id"]
    call = await fake.wait_for_call(
        "answerCallbackQuery", lambda c: c.params.get("callback_query_id") == query_id, timeout=15
    )
    return str(call.params.get("text") or "")


async def test_take_from_the_telegram_notice(tg_server: Server, fake: FakeTelegram) -> None:
    owner = await owner_token(tg_server, fake)
    await join_team(tg_server, fake, owner, "Ayşe", PASSWORD, AYSE)
    await join_team(tg_server, fake, owner, "Burak", PASSWORD, BURAK)
    ayse = await operator_id(tg_server, "Ayşe")
    _, cid = await start_visitor(tg_server.url, "Telegramlı")
    notice = await fake.wait_for_sent(with_text(f"[CID: {cid}]"), timeout=15)
    assert {"text": "Üstlen", "callback_data": f"take:{cid}"} in notice.buttons

    # Someone in the group who is not an operator: refused (by the gate in front of every
    # handler of the admin chat, app/telegram/gate.py), nothing changes.
    answer = await press(fake, notice, cid, STRANGER)
    assert "etkin bir operatöre bağlı değil" in answer
    assert await assignee(tg_server, cid) == (None, "")

    answer = await press(fake, notice, cid, AYSE)
    assert "üstlendiniz" in answer
    assert (await assignee(tg_server, cid))[0] == ayse
    # The notice now says who has it, for everyone in the group.
    edited = await fake.wait_for_sent(
        lambda m: m.message_id == notice.message_id and "Ayşe ilgileniyor" in (m.text or ""),
        timeout=15,
    )
    assert f"[CID: {cid}]" in (edited.text or "") and edited.edits
    # Burak was a moment late: he is told who has it, and it stays hers.
    answer = await press(fake, notice, cid, BURAK)
    assert "Ayşe" in answer and "zaten" in answer
    assert (await assignee(tg_server, cid))[0] == ayse

    takes = await audit_rows(tg_server, "conversation_take", cid)
    assert [row[0] for row in takes] == ["Ayşe"]
    assert json.loads(str(takes[0][1]))["telegram_id"] == AYSE["id"]
