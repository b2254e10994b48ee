"""The team in Chromium: the owner invites from the Team page, the invitee accepts in another
browser, links Telegram (the fake Bot API) while the page waits, signs in with their name and
their own code; the owner deactivates them and their open panel loses its session."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.support.accessibility import assert_accessible
from tests.support.fake_telegram import FakeTelegram
from tests.support.pages import DESKTOP, open_page, sign_in_with
from tests.support.server import Server
from tests.support.team import code_for, next_in_chat, owner_token, tg_user

PASSWORD = "sifre-1234-uzun"


async def test_invite_accept_link_sign_in_and_deactivate(
    browser: Browser, tg_server: Server, fake: FakeTelegram
) -> None:
    owner_context, owner, owner_watch = await open_page(browser, DESKTOP)
    owner_watch.accept_dialogs = True
    await sign_in_with(owner_context, tg_server, await owner_token(tg_server, fake))
    await owner.goto(tg_server.url + "/admin")
    await owner.locator("#team-link").click()
    await owner.wait_for_url("**/admin/team")
    await owner.locator("#invite-button").click()
    await expect(owner.locator("#invite-link img")).to_be_visible()
    link = (await owner.locator("#invite-url").input_value()).strip()
    await assert_accessible(owner, "team page with an invitation")

    context, page, watch = await open_page(browser, DESKTOP)
    await page.goto(link)
    await assert_accessible(page, "invitation form")
    await page.locator("input[name=name]").fill("Zeynep")
    await page.locator("input[name=password]").fill(PASSWORD)
    await page.locator("input[name=password2]").fill(PASSWORD)
    await page.locator("form button[type=submit]").click()
    await page.wait_for_url("**/admin/invite/setup")
    command = (await page.locator("#link-command").inner_text()).strip()
    assert command.startswith("/link ")
    # The t.me link opens the bot with the same code.
    href = await page.locator("#link-telegram").get_attribute("href")
    assert href == f"https://t.me/sohbet_test_bot?start={command.split()[1]}"
    await expect(page.locator("#telegram-state")).to_have_attribute("data-linked", "0")
    await assert_accessible(page, "link Telegram")
    zeynep = tg_user(7780001, "Zeynep")
    await fake.private_command(zeynep, command)
    assert "bağlandı" in ((await next_in_chat(fake, zeynep["id"], 0)).text or "")
    # The page sees it without a reload.
    await expect(page.locator("#telegram-state")).to_have_attribute("data-linked", "1")

    await page.locator("#go-sign-in").click()
    await page.locator("input[name=name]").fill("zeynep")
    await page.locator("input[name=password]").fill(PASSWORD)
    seen = len(fake.sent(chat_id=zeynep["id"]))
    await page.locator("form[action='/admin/login'] button[type=submit]").click()
    await page.wait_for_url("**/admin/code")
    await page.locator("input[name=code]").first.fill(await code_for(fake, zeynep["id"], seen))
    await page.locator("form[action='/admin/verify'] button[type=submit]").first.click()
    await page.wait_for_url("**/admin")
    await expect(page.locator("#me")).to_have_attribute("title", "Zeynep")
    await expect(page.locator("#team-link")).to_have_count(0)
    await assert_accessible(page, "an operator's panel", "header")

    # The owner deactivates her: the row changes in place, her panel loses its connection,
    # and a reload shows why.
    await owner.reload()
    row = owner.locator(".team__row", has_text="Zeynep")
    await row.locator("button[type=submit]").click()
    await expect(row).to_have_attribute("data-active", "0")
    assert any("Zeynep" in d for d in owner_watch.dialogs)
    await expect(page.locator("#connection-banner")).to_be_visible()
    await page.reload()
    await expect(page.locator(".alert")).to_contain_text("devre dışı")
    await expect(page.locator("#conversation-list")).to_have_count(0)
    owner_watch.assert_clean()
    watch.assert_clean()
    await context.close()
    await owner_context.close()
