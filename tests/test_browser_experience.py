"""Issue 8 in Debian's headless Chromium: accessibility (axe-core), keyboard use, receipts and
the "new messages" pill live, the title badge, the offline shell and offline-queued messages,
continuing on another device, and the visitor page's first-load weight.

The look and behaviour under test do not depend on the database: this module runs on SQLite
only (the browser suite on both databases is tests/test_browser.py).
"""

from __future__ import annotations

import asyncio
import re

import pytest
from playwright.async_api import Browser, Page, expect

from tests.support.accessibility import assert_accessible
from tests.support.clients import (
    ADMIN_COOKIE,
    VISITOR_COOKIE,
    client_id,
    start_visitor,
    visitor_peer,
)
from tests.support.page_weight import BUDGET, measure
from tests.support.pages import (
    DESKTOP,
    PHONE,
    admin_panel,
    close_all,
    open_conversation,
    open_page,
    send,
    start_chat,
)
from tests.support.server import Server, sqlite_server_fixture

pytestmark = pytest.mark.browser


server = sqlite_server_fixture("ux")


async def until(page: Page, expression: str, timeout: float = 10.0) -> None:
    """Poll a JS expression (awaited if a promise) until it is truthy; wait_for_function would
    evaluate it with eval(), which the page's CSP forbids."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await page.evaluate(expression):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still false after {timeout}s: {expression}")
        await asyncio.sleep(0.1)


async def real_focus(page: Page) -> None:
    """Let the page lose focus for real when another tab comes to the front (Playwright tells
    every page it has focus, and headless tabs all stay "visible")."""
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Emulation.setFocusEmulationEnabled", {"enabled": False})


@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_axe_finds_nothing_serious(
    browser: Browser, server: Server, admin_token: str, scheme: str
) -> None:
    phone = {**PHONE, "color_scheme": scheme}
    desktop = {**DESKTOP, "color_scheme": scheme}
    _, visitor, _ = await open_page(browser, phone)
    _, admin, _ = await open_page(browser, desktop)
    _, login, _ = await open_page(browser, desktop)
    try:
        await visitor.goto(server.url + "/")
        await expect(visitor.locator("#start-form")).to_be_visible()
        await assert_accessible(visitor, "start")

        cid = await start_chat(visitor, server.url, f"Erişim {scheme}")
        await expect(visitor.locator("body[data-socket=up]")).to_be_attached()
        await send(visitor, "Merhaba, bir sorum var")
        await expect(visitor.locator("#messages li.msg--pending")).to_have_count(0)

        await admin.context.add_cookies(
            [{"name": ADMIN_COOKIE, "value": admin_token, "url": server.url}]
        )
        await admin.goto(server.url + "/admin")
        await open_conversation(admin, cid)
        await send(admin, "Buyrun, dinliyorum")
        await expect(visitor.locator("#messages li.msg--theirs")).to_have_count(1)
        await visitor.locator("#composer textarea").press_sequentially("yazıyorum", delay=10)
        await expect(admin.locator("#typing")).to_be_visible()
        await assert_accessible(visitor, "visitor chat")
        await assert_accessible(admin, "admin panel")

        await visitor.locator("#handoff-button").click()
        await expect(visitor.locator("#handoff-dialog")).to_be_visible()
        await assert_accessible(visitor, "handoff dialog")

        await admin.goto(server.url + "/test")
        await expect(admin.locator("h1")).to_be_visible()
        await assert_accessible(admin, "test page")

        await login.goto(server.url + "/admin")
        await assert_accessible(login, "login")
        await login.locator("input[name=password]").fill("wrong")
        await login.locator("form[action='/admin/login'] button[type=submit]").click()
        await expect(login.locator(".alert")).to_be_visible()
        await assert_accessible(login, "login error")
    finally:
        await close_all(visitor, admin, login)


async def test_keyboard_only(browser: Browser, server: Server, admin_token: str) -> None:
    _, visitor, watch = await open_page(browser, DESKTOP)
    admin = await admin_panel(browser, server, admin_token)
    try:
        await visitor.goto(server.url + "/")
        # The name field has focus on arrival; Enter submits.
        await visitor.keyboard.type("Klavye")
        await visitor.keyboard.press("Enter")
        await expect(visitor.locator("body[data-socket=up]")).to_be_attached()
        cid = await visitor.locator("#conversation").get_attribute("data-chat-id")
        assert cid

        # Tab order reaches the composer; Enter sends, Shift+Enter makes a new line.
        focused: list[str] = []
        for _ in range(40):
            await visitor.keyboard.press("Tab")
            label = await visitor.evaluate(
                "document.activeElement.getAttribute('aria-label') || document.activeElement.id"
                " || document.activeElement.textContent.trim()"
            )
            focused.append(label)
            if await visitor.evaluate("document.activeElement.matches('#composer textarea')"):
                break
        else:
            raise AssertionError(f"the composer is not reachable with Tab: {focused}")
        assert "Başka bir cihazda devam et" in focused
        await visitor.keyboard.type("satır bir")
        await visitor.keyboard.press("Shift+Enter")
        await visitor.keyboard.type("satır iki")
        await visitor.keyboard.press("Enter")
        await expect(visitor.locator("#messages li.msg[data-seq] .msg__text")).to_have_text(
            "satır bir\nsatır iki"
        )
        # The handoff dialog opens from the keyboard and Escape closes it, focus returning.
        await visitor.locator("#handoff-button").focus()
        await visitor.keyboard.press("Enter")
        await expect(visitor.locator("#handoff-dialog")).to_be_visible()
        assert await visitor.evaluate("document.activeElement.closest('#handoff-dialog') !== null")
        await visitor.keyboard.press("Escape")
        await expect(visitor.locator("#handoff-dialog")).to_have_count(0)

        # The operator opens the conversation from the list with the keyboard. A row re-rendered
        # while the keyboard is on it (the visitor writes again) keeps the focus.
        link = admin.locator(f"li.conv[data-chat-id='{cid}'] a.conv__link")
        await link.focus()
        await visitor.locator("#composer textarea").focus()
        await visitor.keyboard.type("bir satır daha")
        await visitor.keyboard.press("Enter")
        await expect(link.locator(".conv__preview")).to_have_text("bir satır daha")
        assert await admin.evaluate("document.activeElement.matches('a.conv__link')")
        await admin.keyboard.press("Enter")
        await expect(admin.locator(f"#pane #conversation[data-chat-id='{cid}']")).to_be_visible()
        await admin.locator("#pane #composer textarea").focus()
        await admin.keyboard.type("Klavyeden cevap")
        await admin.keyboard.press("Enter")
        await expect(visitor.locator("#messages li.msg--theirs .msg__text")).to_have_text(
            "Klavyeden cevap"
        )
        # Every control has a name (axe checks it too; this is the quick, explicit version).
        unnamed = await visitor.evaluate(
            """() => [...document.querySelectorAll('button, input, textarea, select, a[href]')]
                .filter((el) => el.offsetParent !== null)
                .filter((el) => !(el.getAttribute('aria-label') || el.labels?.length
                                  || el.textContent.trim() || el.title))
                .map((el) => el.outerHTML.slice(0, 80))"""
        )
        assert unnamed == []
        watch.assert_clean()
    finally:
        await close_all(visitor, admin)


async def test_receipts_and_pill_live(browser: Browser, server: Server, admin_token: str) -> None:
    _, visitor, watch = await open_page(browser, PHONE)
    admin = await admin_panel(browser, server, admin_token)
    try:
        cid = await start_chat(visitor, server.url, "Tik")
        await expect(visitor.locator("body[data-socket=up]")).to_be_attached()
        await send(visitor, "İlk soru")
        mine = visitor.locator("#messages li.msg--mine[data-seq]").last
        await expect(mine).to_have_attribute("data-receipt", re.compile("sent|delivered"))
        # The panel's list got the row: delivered to the operator.
        await expect(mine).to_have_attribute("data-receipt", "delivered")
        await expect(mine.locator(".receipt__delivered")).to_be_visible()
        await expect(mine.locator(".receipt__sent")).to_be_hidden()
        # The operator opens it: seen.
        await open_conversation(admin, cid)
        await expect(mine).to_have_attribute("data-receipt", "seen")
        await expect(mine.locator(".receipt__seen")).to_be_visible()

        # The other way: the visitor's page is open and at the end, so the reply is seen.
        await send(admin, "Cevap geldi")
        reply = admin.locator("#pane #messages li.msg--mine[data-seq]").last
        await expect(reply).to_have_attribute("data-receipt", "seen")

        # Scrolled up, a new reply shows the pill (and is only delivered); the pill scrolls down.
        token = next(
            c["value"] for c in await visitor.context.cookies() if c["name"] == VISITOR_COOKIE
        )
        peer = await visitor_peer(server.url, token)
        try:
            for i in range(30):
                await peer.call(
                    "send", {"chat_id": cid, "text": f"dolgu {i}", "client_id": client_id()}
                )
        finally:
            await peer.close()
        await expect(visitor.locator("#messages li.msg[data-seq]")).to_have_count(32)
        scroller = visitor.locator("#scroller")
        # The reader scrolls up (once the burst's smooth scrolling has settled).
        await asyncio.sleep(0.5)
        await scroller.evaluate("(s) => { s.scrollTop = 0; }")
        await until(visitor, "document.getElementById('scroller').scrollTop === 0")
        height_before = await visitor.evaluate(
            "document.querySelector('#messages li').getBoundingClientRect().top"
        )
        await send(admin, "Yukarıdayken gelen")
        pill = visitor.locator(".new-pill")
        await expect(pill).to_be_visible()
        # The history did not jump under the reader (no layout shift at the top).
        height_after = await visitor.evaluate(
            "document.querySelector('#messages li').getBoundingClientRect().top"
        )
        assert height_after == height_before
        last_reply = admin.locator("#pane #messages li.msg--mine[data-seq]").last
        await expect(last_reply).to_have_attribute("data-receipt", "delivered")
        await pill.click()
        await expect(pill).to_be_hidden()
        await until(
            visitor,
            "(() => { const s = document.getElementById('scroller');"
            " return s.scrollHeight - s.scrollTop - s.clientHeight < 4; })()",
        )
        await expect(last_reply).to_have_attribute("data-receipt", "seen")
        watch.assert_clean()
    finally:
        await close_all(visitor, admin)


async def test_title_badge_and_unread_title(
    browser: Browser, server: Server, admin_token: str
) -> None:
    context, visitor, _ = await open_page(browser, PHONE)
    admin = await admin_panel(browser, server, admin_token)
    try:
        cid = await start_chat(visitor, server.url, "Rozet")
        await expect(visitor.locator("body[data-socket=up]")).to_be_attached()
        base = await visitor.title()
        # The operator's tab counts unread messages across conversations.
        await send(visitor, "Bir")
        await send(visitor, "İki")
        row = admin.locator(f"li.conv[data-chat-id='{cid}']")
        await expect(row).to_have_attribute("data-unread", "2")
        total = await admin.evaluate(
            "[...document.querySelectorAll('.conv')].reduce((s, r) => s + Number(r.dataset.unread), 0)"
        )
        assert total >= 2
        await expect(admin).to_have_title(re.compile(rf"^\({total}\) "))

        # The visitor switches to another tab: replies count in the title until they come back.
        await real_focus(visitor)
        other = await context.new_page()
        await other.goto(server.url + "/health")
        await other.bring_to_front()
        await until(visitor, "document.visibilityState === 'hidden' || !document.hasFocus()")
        await open_conversation(admin, cid)
        await send(admin, "Cevap 1")
        await send(admin, "Cevap 2")
        await expect(visitor).to_have_title(f"(2) {base}")
        await visitor.bring_to_front()
        await expect(visitor).to_have_title(base)
        # Reading the conversation cleared the operator's count for it.
        await expect(admin).to_have_title(re.compile(r"^(?!\(2\))"))
    finally:
        await close_all(visitor, admin)


async def test_offline_shell_and_queued_messages(browser: Browser, server: Server) -> None:
    context, visitor, _ = await open_page(browser, PHONE)
    try:
        cid = await start_chat(visitor, server.url, "Çevrimdışı")
        await expect(visitor.locator("body[data-socket=up]")).to_be_attached()
        # The service worker takes the page over and keeps the shell.
        await until(
            visitor, "navigator.serviceWorker.ready.then(() => caches.has('sohbet-shell-v1'))"
        )
        await visitor.reload()
        await until(visitor, "navigator.serviceWorker.controller !== null")
        await expect(visitor.locator("body[data-socket=up]")).to_be_attached()

        await context.set_offline(True)
        await visitor.reload()
        await expect(visitor.locator(f"#conversation[data-chat-id='{cid}']")).to_be_visible()
        await expect(visitor.locator("#connection-banner")).to_be_visible(timeout=15_000)
        await send(visitor, "Çevrimdışı yazdım")
        await send(visitor, "İkinci mesaj")
        await expect(visitor.locator("#messages li.msg--pending")).to_have_count(2)

        await context.set_offline(False)
        await expect(visitor.locator("#messages li.msg--pending")).to_have_count(0, timeout=20_000)
        texts = await visitor.locator("#messages li.msg[data-seq] .msg__text").all_text_contents()
        assert texts == ["Çevrimdışı yazdım", "İkinci mesaj"]
        # Sent once each: the server has exactly these two.
        token = next(c["value"] for c in await context.cookies() if c["name"] == VISITOR_COOKIE)
        peer = await visitor_peer(server.url, token)
        try:
            await peer.call("join", {"chat_id": cid})
            history = await peer.wait_for("chat:history")
            assert [m["text"] for m in history] == ["Çevrimdışı yazdım", "İkinci mesaj"]
        finally:
            await peer.close()
    finally:
        await close_all(visitor)


async def test_continue_on_another_device(browser: Browser, server: Server) -> None:
    _, phone, watch = await open_page(browser, PHONE)
    _, laptop, _ = await open_page(browser, DESKTOP)
    try:
        cid = await start_chat(phone, server.url, "Taşı")
        await send(phone, "Telefondan yazdım")
        await expect(phone.locator("#messages li.msg--pending")).to_have_count(0)
        await phone.locator("#handoff-button").click()
        dialog = phone.locator("#handoff-dialog")
        await expect(dialog).to_be_visible()
        qr = dialog.locator("img.sheet__qr")
        await expect(qr).to_have_attribute("src", re.compile(r"^data:image/svg\+xml"))
        assert await qr.evaluate("(img) => img.complete && img.naturalWidth > 0")
        link = await dialog.locator("#handoff-link").input_value()
        assert "/continue/" in link

        await laptop.goto(link)
        await assert_accessible(laptop, "continue here")
        await laptop.get_by_role("button", name="Burada devam et").click()
        await expect(laptop.locator(f"#conversation[data-chat-id='{cid}']")).to_be_visible()
        await expect(laptop.locator("#messages .msg__text")).to_have_text(["Telefondan yazdım"])
        # The phone is sent back to the start, and told why; the link does not work twice.
        await expect(phone.locator("#start-form")).to_be_visible()
        await expect(phone.locator(".notice")).to_have_text(
            "Bu konuşma diğer cihazınızda devam ediyor."
        )
        again = await laptop.context.new_page()
        await again.goto(link)
        await expect(again.locator(".alert")).to_contain_text("zaten kullanılmış")
        watch.assert_clean()
    finally:
        await close_all(phone, laptop)


async def test_first_load_weight_within_budget(browser: Browser, server: Server) -> None:
    token, _ = await start_visitor(server.url, "Ağırlık")
    weight = await measure(browser, server.url, token)
    print(weight.table())
    assert weight.total <= BUDGET, weight.table()
    # Compressed where it counts, and the lazy parts stay out of the first load.
    assert all(
        enc == "br" for kind, size, enc in weight.rows.values() if size > 1500 and kind != "XHR"
    )
    assert not any("htmx" in url or "handoff" in url for url in weight.rows)


async def test_admin_notification_when_not_focused(
    browser: Browser, server: Server, admin_token: str
) -> None:
    context = await browser.new_context(**DESKTOP)
    await context.grant_permissions(["notifications"], origin=server.url)
    await context.add_init_script(
        """(() => {
            window.__notes = [];
            const Real = window.Notification;
            window.Notification = class extends Real {
                constructor(title, options) { super(title, options); window.__notes.push([title, options.body]); }
            };
            window.Notification.requestPermission = Real.requestPermission.bind(Real);
            Object.defineProperty(window.Notification, "permission", { get: () => Real.permission });
        })()"""
    )
    await context.add_cookies([{"name": ADMIN_COOKIE, "value": admin_token, "url": server.url}])
    admin = await context.new_page()
    other = await context.new_page()
    try:
        await admin.goto(server.url + "/admin")
        await expect(admin.locator("body[data-socket=up]")).to_be_attached()
        await real_focus(admin)
        await other.goto(server.url + "/health")
        await other.bring_to_front()
        await until(admin, "document.visibilityState === 'hidden' || !document.hasFocus()")
        token, cid = await start_visitor(server.url, "Bildirim")
        peer = await visitor_peer(server.url, token)
        try:
            await peer.call(
                "send", {"chat_id": cid, "text": "Acil bir sorum var", "client_id": client_id()}
            )
        finally:
            await peer.close()
        await until(
            admin,
            "window.__notes.some(([t, b]) => t === 'Bildirim' && b.includes('Acil bir sorum var'))",
        )
    finally:
        await context.close()
