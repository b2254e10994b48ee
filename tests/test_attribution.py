"""Attribution: each operator message carries its author, on every surface.

Two operators (Ayşe and Mehmet, each invited, linked to a Telegram account of their own in the
fake Bot API and signed in with their own code) answer one visitor from two panel sessions and
from the forum group: the visitor's socket and page (Chromium) name each reply's author and the
header the one who answered last; the panel and the transcript name them; a stranger writing in
the group reaches nobody and is recorded once. The group's quick start (the owner alone, nobody
linked) keeps every member of the admin chat acting as the owner, until someone links.
"""

from __future__ import annotations

import asyncio
import html
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, expect

from tests.support.audit import entries, wait_for_entries
from tests.support.clients import (
    ADMIN_COOKIE,
    VISITOR_COOKIE,
    Peer,
    admin_csrf,
    admin_peer,
    client_id,
    jarless,
    page_with,
    start_visitor,
)
from tests.support.fake_telegram import FakeTelegram
from tests.support.media_files import jpeg, upload
from tests.support.pages import admin_panel as open_panel
from tests.support.pages import close_all, open_conversation, visitor_page
from tests.support.saved_replies import save_reply
from tests.support.server import Server, query, sqlite_server
from tests.support.team import (
    join_team,
    owner_token,
    set_active,
    sign_in_telegram,
    tg_user,
)
from tests.support.telegram import joined_visitor, telegram_env, with_text

# A forum group: each conversation has its topic, where every operator answers from their own
# Telegram account.
TELEGRAM_FORUM = True
TELEGRAM_ENV = {"TELEGRAM_TOPICS": "on"}
PASSWORD = "sifre-1234-uzun"
AYSE = tg_user(7781001, "Ayşe")
MEHMET = tg_user(7781002, "Mehmet")
STRANGER = tg_user(7789999, "Yabancı")


@dataclass(frozen=True)
class Team:
    owner: str
    ayse: str
    mehmet: str
    ids: dict[str, int]


@pytest.fixture(scope="module")
async def team(tg_server: Server, fake: FakeTelegram) -> Team:
    """The owner invites Ayşe and Mehmet; each links Telegram and signs in with their code."""
    owner = await owner_token(tg_server, fake)
    await join_team(tg_server, fake, owner, "Ayşe", PASSWORD, AYSE)
    await join_team(tg_server, fake, owner, "Mehmet", PASSWORD, MEHMET)
    ayse = await sign_in_telegram(tg_server, fake, "Ayşe", PASSWORD, AYSE["id"])
    mehmet = await sign_in_telegram(tg_server, fake, "Mehmet", PASSWORD, MEHMET["id"])
    rows = await query(tg_server, "SELECT name, id FROM operator")
    return Team(owner, ayse, mehmet, {str(name): int(i) for name, i in rows})


async def stored_authors(server: Server, cid: str) -> list[tuple[str, Any, str]]:
    """(role, operator_id, author_name) of the conversation's messages, in order."""
    rows = await query(
        server,
        "SELECT m.role, m.operator_id, m.author_name FROM message m "
        f"JOIN conversation c ON c.id = m.conversation_id WHERE c.cid = '{cid}' ORDER BY m.seq",
    )
    return [(str(r[0]), r[1], str(r[2])) for r in rows]


def from_operator(text: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m["role"] == "admin" and m["text"] == text


async def test_two_operators_in_two_panels_are_each_named(
    tg_server: Server, fake: FakeTelegram, team: Team
) -> None:
    async with joined_visitor(tg_server, "Deniz") as (visitor, cid):
        ayse = await admin_peer(tg_server.url, team.ayse)
        mehmet = await admin_peer(tg_server.url, team.mehmet)
        try:
            # Ayşe has the conversation open in her panel.
            await ayse.call("join", {"chat_id": cid})
            await visitor.call(
                "send", {"chat_id": cid, "text": "Kargom nerede?", "client_id": client_id()}
            )
            sent = await ayse.call(
                "send", {"chat_id": cid, "text": "Bakıyorum", "client_id": client_id()}
            )
            assert sent["ok"] and sent["message"]["author"] == "Ayşe", sent
            await mehmet.call("send", {"chat_id": cid, "text": "Yolda", "client_id": client_id()})
            # The visitor's socket: each reply with its author, named "Ayşe · Destek" in its html.
            first = await visitor.wait_for("chat:message", from_operator("Bakıyorum"))
            second = await visitor.wait_for("chat:message", from_operator("Yolda"))
            assert first["author"] == "Ayşe" and "Ayşe · Destek" in first["html"]
            assert second["author"] == "Mehmet" and "Mehmet · Destek" in second["html"]
            # The other operator's panel sees who wrote it.
            seen = await ayse.wait_for("chat:message", from_operator("Yolda"))
            assert seen["author"] == "Mehmet"
            assert re.search(r'msg__author--operator">Mehmet<', seen["html"]), seen["html"]
        finally:
            await ayse.close()
            await mehmet.close()

    assert await stored_authors(tg_server, cid) == [
        ("visitor", None, ""),
        ("admin", team.ids["Ayşe"], "Ayşe"),
        ("admin", team.ids["Mehmet"], "Mehmet"),
    ]
    # Telegram shows the panel replies signed by their authors.
    await fake.wait_for_sent(with_text("Panelden yanıt · <b>Ayşe</b>\nBakıyorum"), timeout=15)
    await fake.wait_for_sent(with_text("Panelden yanıt · <b>Mehmet</b>\nYolda"), timeout=15)
    # The panel's conversation page, the transcript, and the visitor's page as loaded.
    pane = await page_with(f"{tg_server.url}/admin/c/{cid}", ADMIN_COOKIE, team.owner)
    assert re.search(r'msg__author--operator">Ayşe<.*Bakıyorum', pane, re.S), pane
    assert re.search(r'msg__author--operator">Mehmet<.*Yolda', pane, re.S), pane
    transcript = await page_with(
        f"{tg_server.url}/admin/c/{cid}/transcript.txt", ADMIN_COOKIE, team.owner
    )
    assert re.search(r"\] Deniz: Kargom nerede\?", transcript), transcript
    assert re.search(r"\] Ayşe: Bakıyorum", transcript), transcript
    assert re.search(r"\] Mehmet: Yolda", transcript), transcript


async def test_visitor_page_names_each_author_and_who_they_talk_to(
    tg_server: Server, team: Team, browser: Browser
) -> None:
    token, cid = await start_visitor(tg_server.url, "Selin")
    # Before anyone answered: the business's name, as before.
    loaded = await page_with(tg_server.url + "/", VISITOR_COOKIE, token)
    assert "Destek ile bağlandınız" in loaded
    page, watch = await visitor_page(browser, tg_server, token)
    panel = await open_panel(browser, tg_server, team.mehmet)
    ayse = await admin_peer(tg_server.url, team.ayse)
    try:
        await open_conversation(panel, cid)
        title = page.locator("#chat-title")
        await expect(title).to_have_text("Destek ile bağlandınız")
        await ayse.call("send", {"chat_id": cid, "text": "Merhaba Selin", "client_id": client_id()})
        reply = page.locator("#messages li.msg--admin", has_text="Merhaba Selin")
        await expect(reply.locator(".msg__author")).to_have_text("Ayşe · Destek")
        await expect(title).to_have_text("Ayşe ile bağlandınız")
        await expect(page.locator("#chat-avatar")).to_have_text("A")
        # Mehmet answers from his panel (Chromium): the visitor's header follows.
        await panel.locator("#composer textarea").fill("Ben de buradayım")
        await panel.locator("#composer button[type=submit]").click()
        second = page.locator("#messages li.msg--admin", has_text="Ben de buradayım")
        await expect(second.locator(".msg__author")).to_have_text("Mehmet · Destek")
        await expect(title).to_have_text("Mehmet ile bağlandınız")
        # In Mehmet's panel, Ayşe's reply names her and his names him.
        pane = panel.locator("#pane #messages")
        mine = pane.locator("li.msg--admin", has_text="Ben de buradayım")
        await expect(mine.locator(".msg__author")).to_have_text("Mehmet")
        hers = pane.locator("li.msg--admin", has_text="Merhaba Selin")
        await expect(hers.locator(".msg__author")).to_have_text("Ayşe")
        # Reloaded: the header is rendered by the server with the last author.
        await page.reload()
        await expect(title).to_have_text("Mehmet ile bağlandınız")
        await expect(page.locator("#chat-avatar")).to_have_text("M")
        watch.assert_clean()
    finally:
        await ayse.close()
        await close_all(page, panel)
    # In English the header says so in English.
    headers = {"Cookie": f"{VISITOR_COOKIE}={token}", "Accept-Language": "en"}
    async with jarless() as http, http.get(tg_server.url + "/", headers=headers) as r:
        english = html.unescape(await r.text())
    assert "You're talking to Mehmet" in english, english


async def topic_of(fake: FakeTelegram, visitor: Peer, cid: str, text: str) -> int:
    """The visitor writes; the conversation's forum topic where it arrives."""
    await visitor.call("send", {"chat_id": cid, "text": text, "client_id": client_id()})
    await fake.wait_for_sent(with_text(text), timeout=15)
    topics = [t for t in fake.topics.values() if cid in t["name"]]
    assert len(topics) == 1, fake.topics
    return int(topics[0]["message_thread_id"])


def ignored_lines(server: Server, user_id: int) -> int:
    return server.log().count(f"ignored an update from Telegram user {user_id}:")


async def wait_until(check: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.05)


async def test_telegram_replies_are_attributed_and_a_stranger_is_ignored_once(
    tg_server: Server, fake: FakeTelegram, team: Team
) -> None:
    async with joined_visitor(tg_server, "Emre") as (visitor, cid):
        thread = await topic_of(fake, visitor, cid, "İade etmek istiyorum")
        await fake.member_text(AYSE, "İade formunu gönderiyorum", thread_id=thread)
        got = await visitor.wait_for("chat:message", from_operator("İade formunu gönderiyorum"))
        assert got["author"] == "Ayşe" and "Ayşe · Destek" in got["html"]
        await fake.member_text(MEHMET, "Kargo kodu yolda", thread_id=thread)
        got = await visitor.wait_for("chat:message", from_operator("Kargo kodu yolda"))
        assert got["author"] == "Mehmet"

        # A stranger in the group, twice: delivered to nobody, recorded once.
        await fake.member_text(STRANGER, "Ben de yazayım", thread_id=thread)
        await fake.member_text(STRANGER, "Bir daha yazayım", thread_id=thread)
        await wait_until(lambda: ignored_lines(tg_server, STRANGER["id"]) == 2)
        strangers = await wait_for_entries(
            tg_server, "action = 'telegram_stranger'", lambda found: len(found) >= 1
        )
        # Ayşe writes after him: everything before her reply was handled by then.
        await fake.member_text(AYSE, "Başka sorunuz var mı?", thread_id=thread)
        await visitor.wait_for("chat:message", from_operator("Başka sorunuz var mı?"))
        texts = [m["text"] for m in visitor.events["chat:message"]]
        assert "Ben de yazayım" not in texts and "Bir daha yazayım" not in texts
        strangers = await entries(tg_server, "action = 'telegram_stranger'")
        assert len(strangers) == 1, strangers
        # The bot tells him why, once (with the entry), in the topic.
        await fake.wait_for_sent(with_text("İletilmedi"), timeout=15)
        told = [m for m in fake.sent(thread_id=thread) if "İletilmedi" in (m.text or "")]
        assert len(told) == 1, told
        entry = strangers[0]
        assert entry.actor_id is None and entry.actor_name == "Yabancı"
        assert entry.surface == "telegram" and "7789999" in entry.target
        assert entry.detail.get("telegram_id") == STRANGER["id"]

    assert [a for a in await stored_authors(tg_server, cid) if a[0] == "admin"] == [
        ("admin", team.ids["Ayşe"], "Ayşe"),
        ("admin", team.ids["Mehmet"], "Mehmet"),
        ("admin", team.ids["Ayşe"], "Ayşe"),
    ]
    # The owner sees who tried on the audit page.
    audit = await page_with(
        f"{tg_server.url}/admin/audit?action=telegram_stranger", ADMIN_COOKIE, team.owner
    )
    assert "Yabancı" in audit


async def test_saved_replies_and_files_carry_their_author(
    tg_server: Server, fake: FakeTelegram, team: Team
) -> None:
    await save_reply(
        tg_server,
        team.owner,
        shortcut="iade",
        text_tr="Merhaba {name}, iadeniz alındı.",
        text_en="Hi {name}, your return is in.",
    )
    async with joined_visitor(tg_server, "Pelin") as (visitor, cid):
        thread = await topic_of(fake, visitor, cid, "İadem ne oldu?")
        # Mehmet's saved reply from the topic, Ayşe's photo from the topic.
        await fake.member_text(MEHMET, "/r iade", thread_id=thread)
        saved = await visitor.wait_for(
            "chat:message", from_operator("Merhaba Pelin, iadeniz alındı.")
        )
        assert saved["author"] == "Mehmet"
        await fake.member_photo(AYSE, jpeg(), caption="Kargo fişi", thread_id=thread)
        photo = await visitor.wait_for("chat:message", from_operator("Kargo fişi"))
        assert photo["type"] == "photo" and photo["author"] == "Ayşe"
        # A photo uploaded from Mehmet's panel.
        status, answer = await upload(
            tg_server.url,
            chat_id=cid,
            client_id=client_id(),
            data=jpeg(),
            admin_token=team.mehmet,
            csrf=await admin_csrf(tg_server.url, team.mehmet),
            text="Paket fotoğrafı",
        )
        assert status == 200 and answer["message"]["author"] == "Mehmet", answer
        uploaded = await visitor.wait_for("chat:message", from_operator("Paket fotoğrafı"))
        assert uploaded["author"] == "Mehmet" and "Mehmet · Destek" in uploaded["html"]
    assert [a for a in await stored_authors(tg_server, cid) if a[0] == "admin"] == [
        ("admin", team.ids["Mehmet"], "Mehmet"),
        ("admin", team.ids["Ayşe"], "Ayşe"),
        ("admin", team.ids["Mehmet"], "Mehmet"),
    ]


@pytest.fixture
async def quickstart(tmp_path: Path) -> AsyncIterator[tuple[Server, FakeTelegram]]:
    """A fresh forum group setup: the owner from ADMIN_PASSWORD alone, nobody linked."""
    async with FakeTelegram(forum=True) as group:
        env = telegram_env(group, TELEGRAM_TOPICS="on")
        async with sqlite_server(tmp_path, env) as srv:
            yield srv, group


async def test_group_quick_start_members_act_as_the_owner_until_someone_links(
    quickstart: tuple[Server, FakeTelegram],
) -> None:
    server, group = quickstart
    helper = tg_user(7782001, "Yardımcı")
    async with joined_visitor(server, "Can") as (visitor, cid):
        thread = await topic_of(group, visitor, cid, "Merhaba")
        # As today: whoever answers in the admin group answers as the owner.
        await group.admin_text("Hoş geldiniz", thread_id=thread)
        got = await visitor.wait_for("chat:message", from_operator("Hoş geldiniz"))
        assert got["author"] == "Destek" and "Destek · Destek" not in got["html"]
        await group.member_text(helper, "Ben de yardım ederim", thread_id=thread)
        await visitor.wait_for("chat:message", from_operator("Ben de yardım ederim"))
        owner_id = (await query(server, "SELECT id FROM operator WHERE role = 'owner'"))[0][0]
        assert [a for a in await stored_authors(server, cid) if a[0] == "admin"] == [
            ("admin", owner_id, "Destek"),
            ("admin", owner_id, "Destek"),
        ]

        # Once an operator has linked Telegram, only linked operators are heard.
        owner = await owner_token(server, group)
        await join_team(server, group, owner, "Ayşe", PASSWORD, AYSE)
        await group.member_text(helper, "Hâlâ buradayım", thread_id=thread)
        await wait_until(lambda: ignored_lines(server, helper["id"]) == 1)
        await group.member_text(AYSE, "Ben Ayşe", thread_id=thread)
        got = await visitor.wait_for("chat:message", from_operator("Ben Ayşe"))
        assert got["author"] == "Ayşe"
        assert "Hâlâ buradayım" not in [m["text"] for m in visitor.events["chat:message"]]

        # Deactivated, Ayşe is not heard either.
        ayse_id = (await query(server, "SELECT id FROM operator WHERE name = 'Ayşe'"))[0][0]
        status, _ = await set_active(server, owner, int(ayse_id), False)
        assert status == 200
        await group.member_text(AYSE, "Artık çalışmıyorum", thread_id=thread)
        await wait_until(lambda: ignored_lines(server, AYSE["id"]) == 1)
        gone = await entries(server, "action = 'telegram_stranger'")
        assert [e.detail.get("telegram_id") for e in gone] == [helper["id"], AYSE["id"]]
    texts = [m["text"] for m in visitor.events["chat:message"]]
    assert "Artık çalışmıyorum" not in texts
