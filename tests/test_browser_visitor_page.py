"""The visitor's page in Debian's headless Chromium, as a visitor on a phone meets it: messages
the server refuses, the composer's limits, the language switch, the header and emoji bar at
390 px, and the notice after the operator deletes the conversation.

Nothing here depends on the database: the module runs on SQLite only.
"""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest
from playwright.async_api import Browser, Page, Route, WebSocketRoute, expect

from tests.support.clients import admin_csrf, admin_login, client_id, panel_action
from tests.support.pages import MESSAGES, PHONE, close_all, open_page, send, start_chat
from tests.support.server import Server, sqlite_server_fixture

pytestmark = pytest.mark.browser

FAILED = "#messages li.msg--pending.msg--failed"
# Counts every time the "connection lost" banner is shown (an init script: it runs on reloads).
BANNER_PROBE = """
document.addEventListener("DOMContentLoaded", () => {
  const banner = document.getElementById("connection-banner");
  if (!banner) return;
  const seen = () => { if (!banner.hidden) localStorage.setItem("__banner", "shown"); };
  new MutationObserver(seen).observe(banner, { attributes: true, attributeFilter: ["hidden"] });
});
"""


server = sqlite_server_fixture("visitor")


async def outbox(page: Page, cid: str) -> object:
    key = f"sohbet:outbox:visitor:{cid}"
    return json.loads(await page.evaluate(f"localStorage.getItem({json.dumps(key)}) || 'null'"))


async def test_a_refused_message_never_blocks_the_ones_after_it(
    browser: Browser, server: Server
) -> None:
    context, visitor, watch = await open_page(browser, PHONE)
    await context.add_init_script(BANNER_PROBE)
    try:
        cid = await start_chat(visitor, server.url, "Taşan")
        await expect(visitor.locator("body[data-socket=up]")).to_be_attached()
        # What devtools, a script or an extension can leave in the page's outbox: a send over the
        # socket's packet limit, a text over the text limit, one the server refuses (an id it
        # does not accept), then an ordinary one.
        entries = [
            {"client_id": "c" * 70_000, "text": "büyük"},
            {"client_id": client_id(), "text": "y" * 4001},
            {"client_id": "bad id!", "text": "kimliksiz"},
            {"client_id": client_id(), "text": "sonra gelen"},
        ]
        key = f"sohbet:outbox:visitor:{cid}"
        await visitor.evaluate(
            "([key, value]) => localStorage.setItem(key, value)", [key, json.dumps(entries)]
        )
        await visitor.reload()
        await expect(visitor.locator(MESSAGES)).to_have_text(["sonra gelen"])
        failed = visitor.locator(FAILED)
        await expect(failed.locator(".msg__state")).to_have_text(
            [
                "Bu mesaj gönderilemeyecek kadar büyük.",
                "Mesaj çok uzun (en fazla 4000 karakter).",
                "Mesajın geçerli bir kimliği yok; sayfayı yenileyin.",
            ]
        )
        # Each can be deleted; sending it again cannot help any of these three.
        await expect(failed.get_by_role("button", name="Sil")).to_have_count(3)
        await expect(failed.get_by_role("button", name="Tekrar dene")).to_have_count(0)
        await send(visitor, "bir tane daha")
        await expect(visitor.locator(MESSAGES)).to_have_text(["sonra gelen", "bir tane daha"])

        # A reload keeps them (nothing typed is lost) and they still hold nothing up.
        await visitor.reload()
        await expect(failed).to_have_count(3)
        await send(visitor, "yeniden yükledikten sonra")
        await expect(visitor.locator(MESSAGES)).to_have_count(3)
        assert await visitor.evaluate("localStorage.getItem('__banner')") is None
        for _ in range(3):
            await failed.first.get_by_role("button", name="Sil").click()
        await expect(failed).to_have_count(0)
        assert await outbox(visitor, cid) is None
        watch.assert_clean()
    finally:
        await close_all(visitor)


async def test_the_composer_says_what_it_does_not_send(browser: Browser, server: Server) -> None:
    context, visitor, _ = await open_page(browser, PHONE)
    await context.grant_permissions(["clipboard-read", "clipboard-write"])
    try:
        await start_chat(visitor, server.url, "Yapıştıran")
        await expect(visitor.locator("body[data-socket=up]")).to_be_attached()
        box = visitor.locator("#composer textarea")
        # Spaces and Enter: the server's own words for an empty message.
        await box.fill("   ")
        await box.press("Enter")
        await expect(visitor.locator("#composer-error")).to_have_text("Önce bir mesaj yazın.")
        # A paste longer than the limit: the box keeps 4,000 characters and says so.
        await box.fill("")
        await visitor.evaluate("navigator.clipboard.writeText('ç'.repeat(4100))")
        await box.focus()
        await visitor.keyboard.press("Control+V")
        await expect(box).to_have_value("ç" * 4000)
        await expect(visitor.locator("#composer-error")).to_have_text(
            "Yalnızca ilk 4000 karakter yapıştırıldı."
        )
        await expect(visitor.locator("#composer-count")).to_have_text("4000 / 4000")
        # Near the limit only: a short text shows no counter.
        await box.fill("kısa")
        await expect(visitor.locator("#composer-count")).to_be_hidden()
        await box.fill("a" * 3700)
        await expect(visitor.locator("#composer-count")).to_have_text("3700 / 4000")
    finally:
        await close_all(visitor)


async def test_the_language_can_be_changed_from_the_chat_on_a_phone(
    browser: Browser, server: Server
) -> None:
    _, visitor, watch = await open_page(browser, PHONE)
    try:
        cid = await start_chat(visitor, server.url, "Dilci")
        switch = visitor.locator("#conversation a[hreflang=en]")
        await expect(switch).to_be_in_viewport()
        await switch.tap()
        await expect(visitor.locator("#composer textarea")).to_have_attribute(
            "placeholder", "Write a message…"
        )
        await expect(visitor.locator("#conversation")).to_have_attribute("data-chat-id", cid)
        await visitor.locator("#conversation a[hreflang=tr]").tap()
        await expect(visitor.locator("#composer textarea")).to_have_attribute(
            "placeholder", "Bir mesaj yazın…"
        )
        watch.assert_clean()
    finally:
        await close_all(visitor)


async def test_the_header_and_the_emoji_bar_fit_a_390_px_phone(
    browser: Browser, server: Server
) -> None:
    _, visitor, _ = await open_page(browser, PHONE)
    try:
        await start_chat(visitor, server.url, "Dar")
        title = visitor.locator(".chat__title")
        await expect(title).to_have_text("Destek ile bağlandınız")
        # Nothing of the title is cut (no ellipsis, no clipped line).
        clipped = await title.evaluate(
            "(h) => h.scrollWidth > h.clientWidth || h.scrollHeight > h.clientHeight"
        )
        assert not clipped
        width = PHONE["viewport"]["width"]
        boxes = [await e.bounding_box() for e in await visitor.locator(".emoji").all()]
        assert len(boxes) == 10
        for box in boxes:
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= width, boxes
            assert box["width"] >= 24 and box["height"] >= 24, box  # still a fair tap target
    finally:
        await close_all(visitor)


async def test_a_conversation_deleted_while_the_page_was_away_says_so(
    browser: Browser, server: Server
) -> None:
    """The operator deletes the conversation while the visitor's connection is down (a reload,
    a tunnel): the page's next join finds it gone and shows the start page with the notice,
    as a live `chat:closed` does."""
    routes: list[WebSocketRoute] = []
    held: list[str] = []
    pending: set[asyncio.Task[None]] = set()
    holding = asyncio.Event()
    released = asyncio.Event()
    upgraded = asyncio.Event()

    def is_chat_join(packets: str) -> bool:
        # The /chat namespace's join (the /call namespace has a `join` of its own).
        return re.search(r'42/chat,\d*\["join"', packets) is not None

    async def relay(ws: WebSocketRoute) -> None:
        routes.append(ws)
        upstream = ws.connect_to_server()

        async def later(message: str) -> None:
            await released.wait()
            upstream.send(message)

        def to_server(message: str | bytes) -> None:
            if message == "5":  # engine.io's upgrade: this WebSocket now carries the session
                upgraded.set()
            if holding.is_set() and isinstance(message, str) and is_chat_join(message):
                held.append(message)
                task = asyncio.ensure_future(later(message))
                pending.add(task)
                task.add_done_callback(pending.discard)
                return
            upstream.send(message)

        ws.on_message(to_server)

    async def poll(route: Route) -> None:
        # After a drop the page reconnects over long-polling first: its join is a POST there.
        body = route.request.post_data or ""
        if holding.is_set() and route.request.method == "POST" and is_chat_join(body):
            held.append(body)
            await released.wait()
        await route.continue_()

    _, visitor, _ = await open_page(browser, PHONE)
    await visitor.route_web_socket(re.compile(r".*/socket\.io/.*"), relay)
    await visitor.route(re.compile(r".*/socket\.io/.*"), poll)
    try:
        cid = await start_chat(visitor, server.url, "Uzakta")
        await expect(visitor.locator("body[data-socket=up]")).to_be_attached()
        # The page upgrades from long-polling to its WebSocket: closing the WebSocket while it
        # is only the upgrade's probe would leave the page on long-polling, still connected.
        await asyncio.wait_for(upgraded.wait(), 30)
        # The connection drops; the page reconnects at once, and its join waits here.
        holding.set()
        await routes[-1].close()
        # socket.io-client's own bounds: a reconnect waits at most reconnectionDelayMax (5 s)
        # and its connect attempt times out after `timeout` (20 s), then tries again: two
        # attempts' worth, since a loaded machine (CI) was seen to need more than 20 s in all.
        deadline = time.monotonic() + 2 * (5 + 20)
        while not held and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert held, "the page did not join again after the reconnect"
        token = await admin_login(server)
        status, _ = await panel_action(
            server.url, token, await admin_csrf(server.url, token), f"/admin/c/{cid}/delete"
        )
        assert status == 200
        released.set()
        # The page's own timing bounds this: a join whose ack does not come within its 8 s ack
        # timeout (one held here past it, or lost with a connection the page replaced) is sent
        # again after a pause of 0.5-1 s, then 1-2 s (static/js/chat.js): two rounds of that.
        await expect(visitor.locator("#start-form")).to_be_visible(timeout=2 * (8 + 2) * 1000)
        # Whichever way the page came (the join's `bad_chat` answer, or a reload after its
        # socket was refused), the notice says why.
        await expect(visitor.locator(".notice")).to_have_text(
            "Destek bu konuşmayı sonlandırdı ve sildi. Yeni bir konuşma başlatabilirsiniz."
        )
    finally:
        await close_all(visitor)
