"""The team's presence in Chromium: the owner's panel lists who is online as Ayşe's panel opens
and closes, the visitor's page says "Ayşe yazıyor…" while she types, and the owner's panel says
who typed and who saw the visitor's message ("Görüldü · Ayşe")."""

from __future__ import annotations

from playwright.async_api import Browser, Page, expect

from tests.support.accessibility import assert_accessible
from tests.support.pages import (
    PHONE,
    admin_panel,
    close_all,
    open_conversation,
    open_page,
    send,
    start_chat,
)
from tests.support.presence import new_operator
from tests.support.server import ADMIN_PASSWORD, Server
from tests.support.team import OWNER, sign_in_log


async def away(page: Page) -> Page:
    """Another tab of the same browser comes to the front, and the page loses focus for real
    (Playwright otherwise tells every page it has focus): it no longer marks messages seen."""
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Emulation.setFocusEmulationEnabled", {"enabled": False})
    other = await page.context.new_page()
    await other.goto("about:blank")
    await other.bring_to_front()
    return other


async def test_online_list_typing_and_seen_name_the_operator(
    browser: Browser, server: Server
) -> None:
    owner_token = await sign_in_log(server, OWNER, ADMIN_PASSWORD)
    ayse_token = await new_operator(server, owner_token, "Ayşe")
    _, visitor, visitor_watch = await open_page(browser, PHONE)
    owner = await admin_panel(browser, server, owner_token)
    ayse = await admin_panel(browser, server, ayse_token)
    try:
        online = owner.locator("#team-online .avatar")
        await expect(online).to_have_count(2)
        await expect(owner.locator("#team-online [title='Ayşe']")).to_have_attribute(
            "aria-label", "Ayşe çevrimiçi"
        )
        await assert_accessible(owner, "panel header with the team online", "header")

        cid = await start_chat(visitor, server.url, "Merve")
        await send(visitor, "Merhaba")
        await open_conversation(owner, cid)
        await open_conversation(ayse, cid)

        # Ayşe types: the visitor and the owner see her name; her own panel does not.
        await ayse.locator("#composer textarea").press_sequentially("Hemen bakıyorum", delay=30)
        typing = visitor.locator("#typing")
        await expect(typing).to_be_visible()
        await expect(typing).to_contain_text("Ayşe yazıyor…")
        await assert_accessible(visitor, "visitor page with an operator typing")
        await expect(owner.locator("#pane #typing")).to_contain_text("Ayşe yazıyor…")
        await expect(ayse.locator("#pane #typing")).to_be_hidden()
        # Her message ends the line, on the visitor's page and in the owner's panel.
        await ayse.locator("#composer button[type=submit]").click()
        await expect(visitor.locator("#messages li.msg--theirs").last).to_contain_text(
            "Hemen bakıyorum"
        )
        await expect(typing).to_be_hidden()
        await expect(owner.locator("#pane #typing")).to_be_hidden()

        # The visitor types back: the line names the visitor again in the owner's panel.
        await visitor.locator("#composer textarea").press_sequentially("Tamam", delay=30)
        await expect(owner.locator("#pane #typing")).to_contain_text("Merve yazıyor…")
        await visitor.locator("#composer textarea").fill("")

        # The owner looks elsewhere; Ayşe, on the conversation, sees the visitor's next message.
        other = await away(owner)
        await send(visitor, "Kargom nerede?")
        seen = owner.locator("#pane #seen-by")
        await expect(seen).to_be_visible()
        await expect(seen).to_have_text("Görüldü · Ayşe")
        await expect(ayse.locator("#pane #seen-by")).to_be_hidden()
        await other.close()
        await owner.bring_to_front()
        await assert_accessible(owner, "panel with the seen line", "#pane")

        # Ayşe closes her panel: the owner's list drops her, live.
        await ayse.context.close()
        await expect(online).to_have_count(1)
        await expect(owner.locator("#team-online [title='Ayşe']")).to_have_count(0)
        visitor_watch.assert_clean()
    finally:
        await close_all(visitor, owner, ayse)
