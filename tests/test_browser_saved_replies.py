"""Saved replies in Debian's headless Chromium: the composer's `/` list (keyboard, mouse,
screen-reader attributes) inserting the reply in the visitor's language with its placeholders
filled, and the management page's forms.

Nothing here depends on the database: the module runs on SQLite only.
"""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import Browser, Page, Route, expect

from tests.support.accessibility import assert_accessible
from tests.support.pages import Watch, admin_panel, close_all, open_conversation
from tests.support.saved_replies import admin_texts, save_reply, visitor_in
from tests.support.server import Server, sqlite_server_fixture

pytestmark = pytest.mark.browser

server = sqlite_server_fixture("saved-replies")

BOX = "#composer textarea"
PICKER = "#reply-picker"
OPTIONS = "#reply-picker [role=option]"


async def shortcuts(admin: Page) -> list[str]:
    labels = await admin.locator(f"{OPTIONS} .reply-option__shortcut").all_inner_texts()
    return [label.strip() for label in labels]


async def active_option(admin: Page) -> str:
    """The option the box points screen readers at (aria-activedescendant), by its shortcut."""
    box = admin.locator(BOX)
    active = await box.get_attribute("aria-activedescendant")
    assert active, "no active option"
    option = admin.locator(f"#{active}")
    await expect(option).to_have_attribute("aria-selected", "true")
    return (await option.locator(".reply-option__shortcut").inner_text()).strip()


async def test_slash_list_inserts_the_reply_in_the_visitors_language(
    browser: Browser, server: Server, admin_token: str
) -> None:
    await save_reply(
        server,
        admin_token,
        shortcut="kargo",
        text_tr="Merhaba {name}, kargonuz yolda. Sohbet: {cid}",
        text_en="Hi {name}, your parcel is on its way. Chat: {cid}",
    )
    await save_reply(server, admin_token, shortcut="kapanis", text_tr="İyi günler {name}!")
    await save_reply(
        server, admin_token, shortcut="iade", text_tr="İade için formu doldurun.", text_en=""
    )
    watch = Watch()
    admin = await admin_panel(browser, server, admin_token, watch)
    try:
        async with visitor_in(server, "Ada", "en") as (visitor, cid):
            await admin.reload()
            await open_conversation(admin, cid)
            box = admin.locator(BOX)
            await expect(box).to_have_attribute("aria-autocomplete", "list")
            await box.focus()

            # "/" opens the whole list, alphabetical, the first one active.
            await admin.keyboard.type("/")
            await expect(admin.locator(PICKER)).to_be_visible()
            await expect(admin.locator("#reply-options[role=listbox]")).to_be_visible()
            await expect(box).to_have_attribute("aria-controls", "reply-options")
            assert await shortcuts(admin) == ["/iade", "/kapanis", "/kargo"]
            assert await active_option(admin) == "/iade"
            await expect(admin.locator("#reply-picker-status")).to_contain_text("3 kayıtlı yanıt")
            await assert_accessible(admin, "the saved replies list", within="#conversation")
            await admin.emulate_media(color_scheme="dark")
            await assert_accessible(admin, "the list, dark", within="#conversation")
            await admin.emulate_media(color_scheme="light")

            # Arrows move (and wrap); typing narrows by shortcut or by text.
            await admin.keyboard.press("ArrowDown")
            assert await active_option(admin) == "/kapanis"
            await admin.keyboard.press("ArrowUp")
            await admin.keyboard.press("ArrowUp")
            assert await active_option(admin) == "/kargo"
            await admin.keyboard.type("ka")
            await expect(admin.locator(OPTIONS)).to_have_count(2)
            assert await shortcuts(admin) == ["/kapanis", "/kargo"]
            await admin.keyboard.type("r")
            await expect(admin.locator(OPTIONS)).to_have_count(1)
            await expect(admin.locator(OPTIONS)).to_contain_text("parcel")

            # Enter inserts the English text, filled in, in place of "/kar"; nothing is sent.
            await admin.keyboard.press("Enter")
            expected = f"Hi Ada, your parcel is on its way. Chat: {cid}"
            await expect(box).to_have_value(expected)
            await expect(admin.locator(PICKER)).to_be_hidden()
            assert await box.get_attribute("aria-activedescendant") is None
            await expect(admin.locator("#messages li.msg--pending")).to_have_count(0)
            # The second Enter sends it, once.
            await admin.keyboard.press("Enter")
            got = await visitor.wait_for("chat:message", lambda m: m["role"] == "admin")
            assert got["text"] == expected
            await expect(box).to_have_value("")

            # Escape closes the list and leaves the "/" typed; the text after it stays closed.
            await admin.keyboard.type("/")
            await expect(admin.locator(PICKER)).to_be_visible()
            await admin.keyboard.press("Escape")
            await expect(admin.locator(PICKER)).to_be_hidden()
            await expect(box).to_have_value("/")
            # A search that finds nothing says so.
            await box.fill("")
            await admin.keyboard.type("/zzz")
            await expect(admin.locator(PICKER)).to_contain_text(
                "“zzz” ile eşleşen kayıtlı yanıt yok."
            )
            await expect(admin.locator(OPTIONS)).to_have_count(0)

            # A click on an option: no English text, so the Turkish one; what followed stays.
            await box.fill("")
            await admin.keyboard.type("/ia")
            await expect(admin.locator(OPTIONS)).to_have_count(1)
            await admin.locator(OPTIONS).first.click()
            await expect(box).to_have_value("İade için formu doldurun.")
            await expect(box).to_be_focused()

            # Text that merely has a "/" later on opens nothing.
            await box.fill("")
            await admin.keyboard.type("a/b")
            await expect(admin.locator(PICKER)).to_be_hidden()

            # Enter typed before the list has caught up with the letters: the choice waits for
            # the list of what is typed (held here until after the key), never an older one.
            released = asyncio.Event()

            async def held(route: Route) -> None:
                await released.wait()
                await route.continue_()

            await admin.route("**/admin/replies/pick*", held)
            await box.fill("")
            await admin.keyboard.type("/kar")
            await admin.keyboard.press("Enter")
            await expect(box).to_have_value("/kar")
            released.set()
            await expect(box).to_have_value(expected)
            await admin.unroute("**/admin/replies/pick*", held)

            # Everything after the one send went through the visitor's socket too by now.
            await box.fill("son")
            await admin.keyboard.press("Enter")
            await visitor.wait_for("chat:message", lambda m: m["text"] == "son")
            assert admin_texts(visitor) == [expected, "son"]
        watch.assert_clean()
    finally:
        await close_all(admin)


async def test_management_page_forms(browser: Browser, server: Server, admin_token: str) -> None:
    watch = Watch(accept_dialogs=True)
    admin = await admin_panel(browser, server, admin_token, watch)
    try:
        await admin.locator("#replies-link").click()
        await admin.wait_for_url("**/admin/replies")
        await assert_accessible(admin, "the saved replies page")
        form = admin.locator("#reply-form")
        await form.get_by_label("Kısayol").fill("adres")
        await form.get_by_label("Türkçe metin").fill("Adresimiz: Kadıköy, İstanbul.")
        await form.get_by_role("button", name="Kayıtlı yanıt ekle").click()
        await expect(admin.locator("#reply-form-saved")).to_have_text("/adres kaydedildi.")
        row = admin.locator("#reply-list li.reply-row", has_text="/adres")
        await expect(row).to_contain_text("Kadıköy")
        await expect(form.get_by_label("Kısayol")).to_have_value("")

        # The same shortcut again: the error beside the field, what was typed kept, no new row.
        await form.get_by_label("Kısayol").fill("ADRES")
        await form.get_by_label("İngilizce metin").fill("Our address")
        await form.get_by_role("button", name="Kayıtlı yanıt ekle").click()
        await expect(admin.locator("#reply-form-error")).to_have_text(
            "/ADRES kısayoluyla kayıtlı bir yanıt zaten var."
        )
        await expect(form.get_by_label("Kısayol")).to_have_attribute("aria-invalid", "true")
        await expect(form.get_by_label("İngilizce metin")).to_have_value("Our address")
        await expect(admin.locator("#reply-list li.reply-row", has_text="/adres")).to_have_count(1)

        # Edit: the form fills in; saving changes the row.
        await row.get_by_role("link", name="/adres düzenle").click()
        await expect(form.get_by_label("Türkçe metin")).to_have_value(
            "Adresimiz: Kadıköy, İstanbul."
        )
        await form.get_by_label("İngilizce metin").fill("Our address: Kadıköy, Istanbul.")
        await form.get_by_role("button", name="Değişiklikleri kaydet").click()
        await expect(row).to_contain_text("Our address: Kadıköy, Istanbul.")

        # Search, then delete (after the confirmation).
        await admin.locator("#reply-search").fill("kadıköy")
        await expect(admin.locator("#reply-list li.reply-row")).to_have_count(1)
        await row.get_by_role("button", name="/adres sil").click()
        await expect(admin.locator("#reply-list li.reply-row", has_text="/adres")).to_have_count(0)
        assert watch.dialogs == ["confirm: /adres kayıtlı yanıtı silinsin mi?"]
        assert watch.page_errors == [] and watch.csp == []
    finally:
        await close_all(admin)
