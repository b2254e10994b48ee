"""The operator's pages in Debian's headless Chromium, as an operator reads them: the Test page's
wording and layout, deleting one message, the call screens' contrast.

Nothing here depends on the database: the module runs on SQLite only.
"""

from __future__ import annotations

import re
from typing import Literal

import pytest
from playwright.async_api import Browser, expect

from tests.support.accessibility import assert_accessible
from tests.support.browser import phone
from tests.support.clients import ADMIN_COOKIE
from tests.support.pages import (
    MESSAGES,
    PHONE,
    Watch,
    admin_panel,
    close_all,
    open_conversation,
    open_page,
    send,
    start_chat,
)
from tests.support.server import Server, sqlite_server_fixture

pytestmark = pytest.mark.browser


server = sqlite_server_fixture("operator")


async def test_test_page_reads_as_sentences_on_a_phone(
    browser: Browser, server: Server, admin_token: str
) -> None:
    admin = await admin_panel(browser, server, admin_token)
    try:
        await admin.set_viewport_size(phone(390, 844)["viewport"])
        await admin.goto(server.url + "/test")
        await admin.get_by_role("button", name="Tüm testleri çalıştır").click()
        storage = admin.locator("#test-report tr[data-check=storage] .report__detail")
        await expect(storage).to_contain_text("boş")
        # Free space in the unit people use for it, never a float's exponent.
        detail = await storage.inner_text()
        assert re.search(r"; \d+(\.\d)? (KB|MB|GB|TB) boş$", detail), detail
        # Every check's name stays on one line at a phone's width.
        for row in await admin.locator("#test-report tbody th").all():
            lines = await row.evaluate(
                """(th) => {
                    const range = document.createRange();
                    range.selectNodeContents(th);
                    return new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size;
                }"""
            )
            assert lines == 1, await row.inner_text()
        # A bad time zone is explained in a sentence, not by the API's field name.
        form = admin.locator("#test-schedule > form.schedule__form")
        await form.locator("input[name=time_hhmm]").fill("09:30")
        await form.locator("input[name=tz]").fill("Mars/Olympus")
        await form.get_by_role("button", name="Test saati ekle").click()
        alert = form.locator(".alert")
        await expect(alert).to_have_text("Saat dilimi, Europe/Istanbul gibi bir IANA adı olmalı.")
    finally:
        await close_all(admin)


@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_call_screens_pass_axe(
    browser: Browser, server: Server, admin_token: str, scheme: Literal["light", "dark"]
) -> None:
    """The operator rings the visitor: the ringing screens on both sides, then the ended one
    (its Close button was white on white in light mode). The screen in a call, with media, is
    checked in tests/test_calls.py (it needs a private network)."""
    visitor_context, visitor, _ = await open_page(browser, {**PHONE, "color_scheme": scheme})
    admin = await admin_panel(browser, server, admin_token)
    try:
        await admin.emulate_media(color_scheme=scheme)
        await admin.context.grant_permissions(["microphone", "camera"])
        await visitor_context.grant_permissions(["microphone", "camera"])
        # The ended screen closes itself after a moment: its clock is paused while axe runs.
        await visitor.clock.install()
        cid = await start_chat(visitor, server.url, f"Aranan {scheme}")
        await expect(visitor.locator("body[data-socket=up]")).to_be_attached()
        await open_conversation(admin, cid)
        ring = admin.locator(f"#pane [data-call-chat='{cid}']")
        await expect(ring).to_be_enabled()
        await ring.click()
        await expect(admin.locator("#call")).to_have_attribute("data-state", "outgoing")
        await expect(visitor.locator("#call")).to_have_attribute("data-state", "incoming")
        await expect(visitor.locator("#call-accept")).to_be_visible()
        await assert_accessible(visitor, f"incoming call, {scheme}")
        await assert_accessible(admin, f"outgoing call, {scheme}")

        await admin.locator("#call-hangup").click()
        await expect(visitor.locator("#call")).to_have_attribute("data-state", "ended")
        # Python's clock takes seconds; the page's Date.now() is in milliseconds.
        await visitor.clock.pause_at((await visitor.evaluate("Date.now()") + 1) / 1000)
        await expect(visitor.locator("#call-close")).to_be_visible()
        await assert_accessible(visitor, f"ended call, {scheme}", "#call", paused_clock=True)
        await visitor.locator("#call-close").click()
        await expect(visitor.locator("#call")).to_be_hidden()
    finally:
        await close_all(visitor, admin)


async def test_one_message_is_deleted_from_the_message_itself(
    browser: Browser, server: Server, admin_token: str
) -> None:
    watch = Watch(accept_dialogs=True)
    admin = await admin_panel(browser, server, admin_token, watch)
    _, visitor, _ = await open_page(browser, PHONE)
    try:
        cid = await start_chat(visitor, server.url, "Tekil")
        for text in ("bir", "yanlış", "üç", "dört"):
            await send(visitor, text)
            await expect(visitor.locator(MESSAGES).last).to_have_text(text)
        await open_conversation(admin, cid)
        # Desktop: the message's own delete button (it shows under the pointer), confirmed.
        wrong = admin.locator("#messages li.msg[data-seq='2']")
        await wrong.hover()
        await wrong.get_by_role("button", name="Bu mesajı sil").click()
        await expect(admin.locator(MESSAGES)).to_have_text(["bir", "üç", "dört"])
        await expect(visitor.locator(MESSAGES)).to_have_text(["bir", "üç", "dört"])
        assert watch.dialogs == ["confirm: Bu mesaj silinsin mi? Ziyaretçi de artık göremez."]

        # The operator on a phone: the button is there without hovering, and a tap deletes
        # (after the same question).
        phone_context, on_phone, _ = await open_page(browser, PHONE, watch)
        await phone_context.add_cookies(
            [{"name": ADMIN_COOKIE, "value": admin_token, "url": server.url}]
        )
        await on_phone.goto(f"{server.url}/admin/c/{cid}")
        button = on_phone.locator("#messages li.msg[data-seq='4']").get_by_role(
            "button", name="Bu mesajı sil"
        )
        await expect(button).to_be_in_viewport()
        assert await button.evaluate("(b) => getComputedStyle(b).opacity") == "1"
        await button.tap()
        await expect(visitor.locator(MESSAGES)).to_have_text(["bir", "üç"])
        await expect(on_phone.locator(MESSAGES)).to_have_text(["bir", "üç"])
        assert len(watch.dialogs) == 2
        await close_all(on_phone)
        # A reply that arrives live carries its own button too.
        await send(admin, "yeni cevap")
        await expect(visitor.locator(MESSAGES).last).to_have_text("yeni cevap")
        mine = admin.locator("#messages li.msg--mine").last
        await mine.get_by_role("button", name="Bu mesajı sil").click()
        await expect(visitor.locator(MESSAGES)).to_have_text(["bir", "üç"])
        watch.assert_clean()
    finally:
        await close_all(visitor, admin)
