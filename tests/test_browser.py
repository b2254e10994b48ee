"""End to end in Debian's headless Chromium: a phone visitor and the operator's panel, live.

Every test drives the real pages (templates, HTMX, static/js) against the real server; the
server fixture runs the module once on SQLite and once on PostgreSQL. One browser is launched
for the module; each test opens fresh contexts (separate cookie jars and storage).
"""

from __future__ import annotations

import asyncio
import re
from urllib.parse import quote, urlsplit

import pytest
from playwright.async_api import (
    Browser,
    Route,
    expect,
)

from tests.support.clients import (
    VISITOR_COOKIE,
    admin_peer,
    client_id,
    start_visitor,
    visitor_peer,
)
from tests.support.pages import (
    DESKTOP,
    MESSAGES,
    PENDING,
    PHONE,
    Watch,
    admin_panel,
    admin_sign_in,
    close_all,
    open_conversation,
    open_page,
    send,
    seqs,
    start_chat,
    texts,
)
from tests.support.proxy import CuttingProxy
from tests.support.server import Server

pytestmark = pytest.mark.browser

HISTORY = 200  # messages a page shows before "load earlier"


# 1. The whole conversation, phone visitor and desktop operator -----------------------------------


async def test_phone_visitor_and_operator_talk_live(browser: Browser, server: Server) -> None:
    _, admin, admin_watch = await open_page(browser, DESKTOP)
    _, visitor, visitor_watch = await open_page(browser, PHONE)
    try:
        await admin_sign_in(admin, server)

        cid = await start_chat(visitor, server.url, "Zeynep")
        # The new conversation shows up in the open panel by itself (no reload).
        row = admin.locator(f"#conversation-list li.conv[data-chat-id='{cid}']")
        await expect(row).to_be_visible()
        await expect(row.locator(".conv__name")).to_have_text("Zeynep")

        await send(visitor, "Merhaba, siparişim nerede?")
        await expect(visitor.locator(MESSAGES)).to_have_text(["Merhaba, siparişim nerede?"])
        await expect(visitor.locator(PENDING)).to_have_count(0)
        await expect(row.locator(".conv__preview")).to_have_text("Merhaba, siparişim nerede?")

        await expect(row.locator(".badge")).to_have_text("1")

        await open_conversation(admin, cid)
        await expect(admin.locator(MESSAGES)).to_have_text(["Merhaba, siparişim nerede?"])
        await expect(admin.locator("#messages li.msg").first).to_have_class(
            re.compile(r"\bmsg--theirs\b")
        )
        await expect(row.locator(".badge")).to_have_count(0)  # read by opening it
        await expect(row).to_have_class(re.compile(r"\bconv--active\b"))

        # Typing on the phone shows the indicator in the panel.
        typing = admin.locator("#pane #typing")
        await expect(typing).to_be_hidden()
        await visitor.locator("#composer textarea").press_sequentially("Bir de", delay=30)
        await expect(typing).to_be_visible()
        await expect(typing).to_contain_text("Zeynep")
        await visitor.locator("#composer textarea").fill("")

        # And the other way round.
        visitor_typing = visitor.locator("#typing")
        await expect(visitor_typing).to_be_hidden()
        await admin.locator("#composer textarea").press_sequentially("Kargo", delay=30)
        await expect(visitor_typing).to_be_visible()
        await expect(visitor_typing).to_contain_text("Destek")
        await admin.locator("#composer textarea").fill("")

        await send(admin, "Kargoda, yarın elinizde.")
        await expect(admin.locator(MESSAGES)).to_have_text(
            ["Merhaba, siparişim nerede?", "Kargoda, yarın elinizde."]
        )
        await expect(visitor.locator(MESSAGES)).to_have_text(
            ["Merhaba, siparişim nerede?", "Kargoda, yarın elinizde."]
        )
        reply = visitor.locator("#messages li.msg").nth(1)
        await expect(reply).to_have_class(re.compile(r"\bmsg--theirs\b"))
        await expect(reply.locator(".msg__author")).to_have_text("Destek")
        await expect(visitor_typing).to_be_hidden()  # the message ends the typing line
        await expect(admin.locator(PENDING)).to_have_count(0)
        await expect(row.locator(".conv__preview")).to_have_text("Siz: Kargoda, yarın elinizde.")

        await visitor.reload()
        await expect(visitor.locator(MESSAGES)).to_have_text(
            ["Merhaba, siparişim nerede?", "Kargoda, yarın elinizde."]
        )
        assert await seqs(visitor) == [1, 2]
        await expect(visitor.locator(PENDING)).to_have_count(0)

        # The phone layout: the composer is on screen and nothing overflows sideways.
        box = await visitor.locator("#composer").bounding_box()
        assert box is not None and box["y"] + box["height"] <= 844
        width = await visitor.evaluate("document.documentElement.scrollWidth")
        assert width <= 390

        visitor_watch.assert_clean()

        # Presence, both ways: the phone drops off and comes back; the operator leaves.
        # (Reconnect attempts while offline may log network errors: only page errors count now.)
        status = admin.locator("#pane #visitor-status")
        await expect(status).to_have_class(re.compile(r"\bstatus--online\b"))
        await visitor.context.set_offline(True)
        # The server learns of the drop when the socket closes; as slow as the way back, at worst.
        await expect(status).to_have_class(re.compile(r"\bstatus--offline\b"), timeout=15_000)
        await expect(status).to_contain_text("Çevrimdışı")
        await expect(row.locator(".status__dot--online")).to_have_count(0)
        await visitor.context.set_offline(False)
        await expect(status).to_have_class(re.compile(r"\bstatus--online\b"), timeout=15_000)
        await expect(row.locator(".status__dot--online")).to_have_count(1)
        operator = visitor.locator("#operator-status")
        await expect(operator).to_have_text("Çevrimiçi")
        admin_watch.assert_clean()
        await admin.context.close()
        await expect(operator).to_have_text("Çevrimdışı, birazdan yanıtlarız")
        assert visitor_watch.page_errors == [] and visitor_watch.csp == []
    finally:
        await close_all(admin, visitor)


# 2. Quick sends: each message once, in order, on both pages --------------------------------------


async def test_quick_messages_arrive_once_in_order(
    browser: Browser, server: Server, admin_token: str
) -> None:
    admin_watch = Watch()
    admin = await admin_panel(browser, server, admin_token, admin_watch)
    _, visitor, visitor_watch = await open_page(browser, PHONE)
    try:
        cid = await start_chat(visitor, server.url, "Hızlı")
        await expect(admin.locator(f"li.conv[data-chat-id='{cid}']")).to_be_visible()
        await open_conversation(admin, cid)

        sent = [f"mesaj {i}" for i in range(1, 6)]
        box = visitor.locator("#composer textarea")
        for text in sent:
            await box.fill(text)
            await box.press("Enter")
        await expect(visitor.locator(MESSAGES)).to_have_text(sent)
        await expect(visitor.locator(PENDING)).to_have_count(0)
        await expect(admin.locator(MESSAGES)).to_have_text(sent)
        assert await seqs(visitor) == [1, 2, 3, 4, 5]
        assert await seqs(admin) == [1, 2, 3, 4, 5]
        await expect(box).to_have_value("")

        # Shift+Enter is a new line, not a send.
        await box.fill("satır 1")
        await box.press("Shift+Enter")
        await box.press_sequentially("satır 2")
        await box.press("Enter")
        await expect(admin.locator(MESSAGES).last).to_have_text("satır 1\nsatır 2")
        await expect(visitor.locator(MESSAGES)).to_have_count(6)

        # A moment later nothing more has arrived (no late duplicate from an ack and a push).
        await asyncio.sleep(0.5)
        assert await seqs(visitor) == [1, 2, 3, 4, 5, 6]
        assert await seqs(admin) == [1, 2, 3, 4, 5, 6]
        admin_watch.assert_clean()
        visitor_watch.assert_clean()
    finally:
        await close_all(admin, visitor)


# 3. The outbox: a message written while the connection is down is delivered once ---------------


async def test_offline_message_waits_and_is_delivered_once(
    browser: Browser, server: Server, admin_token: str
) -> None:
    proxy = await CuttingProxy(server.port).start()
    admin = await admin_panel(browser, server, admin_token)
    visitor_context, visitor, _ = await open_page(browser, PHONE)
    try:
        cid = await start_chat(visitor, proxy.url, "Tünel")
        await expect(admin.locator(f"li.conv[data-chat-id='{cid}']")).to_be_visible()
        await open_conversation(admin, cid)
        await send(visitor, "bağlantı var")
        await expect(admin.locator(MESSAGES)).to_have_text(["bağlantı var"])
        await expect(visitor.locator(PENDING)).to_have_count(0)

        # The phone goes offline (Chromium drops the open WebSocket too: the banner shows it).
        await visitor_context.set_offline(True)
        await expect(visitor.locator("#connection-banner")).to_be_visible()

        await send(visitor, "tünelden yazıyorum")
        pending = visitor.locator(PENDING)
        await expect(pending).to_have_count(1)
        await expect(pending.locator(".msg__text")).to_have_text("tünelden yazıyorum")
        await expect(pending.locator(".msg__state")).to_have_text("Gönderiliyor…")
        await asyncio.sleep(1.0)  # reconnect attempts fail meanwhile
        await expect(pending).to_have_count(1)
        await expect(admin.locator(MESSAGES)).to_have_text(["bağlantı var"])

        await visitor_context.set_offline(False)
        await expect(visitor.locator("#connection-banner")).to_be_hidden(timeout=15_000)
        await expect(visitor.locator(PENDING)).to_have_count(0)
        await expect(visitor.locator(MESSAGES)).to_have_text(["bağlantı var", "tünelden yazıyorum"])
        await expect(admin.locator(MESSAGES)).to_have_text(["bağlantı var", "tünelden yazıyorum"])
        await asyncio.sleep(0.5)
        assert await seqs(visitor) == [1, 2]
        assert await seqs(admin) == [1, 2]
        assert (
            await visitor.evaluate(f"localStorage.getItem('sohbet:outbox:visitor:{cid}')") is None
        )

        # The outbox outlives the page. This time the network breaks on the way (the browser still
        # thinks it is online; the connection is cut and reconnects are refused), the message is
        # written, the tab is closed, and it is delivered on the next visit.
        proxy.refusing = True
        assert proxy.cut() > 0
        await expect(visitor.locator("#connection-banner")).to_be_visible()
        await send(visitor, "sekmeyi kapattım")
        await expect(visitor.locator(PENDING)).to_have_count(1)
        await visitor.close()
        proxy.refusing = False
        visitor = await visitor_context.new_page()
        await visitor.goto(proxy.url + "/")
        await expect(visitor.locator(MESSAGES)).to_have_text(
            ["bağlantı var", "tünelden yazıyorum", "sekmeyi kapattım"]
        )
        await expect(visitor.locator(PENDING)).to_have_count(0)
        await expect(admin.locator(MESSAGES)).to_have_text(
            ["bağlantı var", "tünelden yazıyorum", "sekmeyi kapattım"]
        )
        await visitor.reload()
        assert await seqs(visitor) == [1, 2, 3]
    finally:
        await close_all(admin, visitor)
        await proxy.stop()


# 4. The operator deletes a message; it disappears from the visitor's page ------------------------


async def test_admin_deletes_selected_message_live(
    browser: Browser, server: Server, admin_token: str
) -> None:
    admin_watch = Watch(accept_dialogs=True)
    admin = await admin_panel(browser, server, admin_token, admin_watch)
    _, visitor, visitor_watch = await open_page(browser, PHONE)
    try:
        cid = await start_chat(visitor, server.url, "Silinecek")
        await expect(admin.locator(f"li.conv[data-chat-id='{cid}']")).to_be_visible()
        for text in ("ilk", "yanlışlıkla yazdım", "son"):
            await send(visitor, text)
            await expect(visitor.locator(MESSAGES).last).to_have_text(text)
        await open_conversation(admin, cid)
        await expect(admin.locator(MESSAGES)).to_have_text(["ilk", "yanlışlıkla yazdım", "son"])

        await admin.locator("#messages li.msg[data-seq='2'] input.msg__select").check()
        await admin.locator("#bulk-delete button[type=submit]").click()
        await expect(visitor.locator(MESSAGES)).to_have_text(["ilk", "son"])
        await expect(admin.locator(MESSAGES)).to_have_text(["ilk", "son"])
        assert admin_watch.dialogs == ["confirm: Seçili mesajlar silinsin mi?"]

        # The re-rendered pane is still live in both directions.
        await send(visitor, "hâlâ burada mısınız?")
        await expect(admin.locator(MESSAGES)).to_have_text(["ilk", "son", "hâlâ burada mısınız?"])
        await send(admin, "Evet")
        await expect(visitor.locator(MESSAGES)).to_have_text(
            ["ilk", "son", "hâlâ burada mısınız?", "Evet"]
        )
        assert await seqs(admin) == [1, 3, 4, 5]

        await visitor.reload()
        await expect(visitor.locator(MESSAGES)).to_have_text(
            ["ilk", "son", "hâlâ burada mısınız?", "Evet"]
        )

        # Deleting the whole conversation sends the visitor back to the start form, told why.
        await admin.locator("#pane button.btn--danger").click()
        await expect(visitor.locator("#start-form")).to_be_visible()
        await expect(visitor.locator(".notice")).to_have_text(
            "Destek bu konuşmayı sonlandırdı ve sildi. Yeni bir konuşma başlatabilirsiniz."
        )
        await expect(visitor.locator("#visitor-name")).to_have_value("Silinecek")  # remembered
        await expect(admin.locator(f"li.conv[data-chat-id='{cid}']")).to_have_count(0)
        await expect(admin.locator("#pane #pane-empty")).to_be_visible()
        await admin.wait_for_url(server.url + "/admin")
        assert admin_watch.dialogs[1].startswith("confirm: Silinecek ")
        admin_watch.assert_clean()
        visitor_watch.assert_clean()
    finally:
        await close_all(admin, visitor)


# 5. Markup in a name or a message is text ---------------------------------------------------------


async def test_markup_is_shown_as_text(browser: Browser, server: Server, admin_token: str) -> None:
    admin_watch = Watch()
    admin = await admin_panel(browser, server, admin_token, admin_watch)
    _, visitor, visitor_watch = await open_page(browser, PHONE)
    name = "<img src=x onerror=alert(1)>"
    evil = "<script>alert(2)</script><b>kalın</b>"
    try:
        cid = await start_chat(visitor, server.url, name)
        await expect(visitor.locator(".chat__hello")).to_contain_text(name)
        row = admin.locator(f"li.conv[data-chat-id='{cid}']")
        await expect(row.locator(".conv__name")).to_have_text(name)

        await send(visitor, evil)
        await expect(visitor.locator(MESSAGES)).to_have_text([evil])
        await expect(row.locator(".conv__preview")).to_have_text(evil)
        await open_conversation(admin, cid)
        await expect(admin.locator(MESSAGES)).to_have_text([evil])
        await expect(admin.locator("#pane .chat__title")).to_contain_text(name)
        await expect(admin.locator("#messages .msg__author")).to_have_text([name])

        await send(admin, evil)
        await expect(visitor.locator(MESSAGES)).to_have_text([evil, evil])
        await visitor.reload()
        await expect(visitor.locator(MESSAGES)).to_have_text([evil, evil])

        for page in (admin, visitor):
            assert await page.locator("#messages img, #messages script, #messages b").count() == 0
            assert await page.locator("img[src='x']").count() == 0
        await asyncio.sleep(0.3)
        assert admin_watch.dialogs == [] and visitor_watch.dialogs == []
        admin_watch.assert_clean()
        visitor_watch.assert_clean()
    finally:
        await close_all(admin, visitor)


# Navigation and long histories -------------------------------------------------------------------


async def test_back_and_forward_keep_the_pane_live(
    browser: Browser, server: Server, admin_token: str
) -> None:
    admin_watch = Watch()
    admin = await admin_panel(browser, server, admin_token, admin_watch)
    _, ali, _ = await open_page(browser, PHONE)
    _, banu, _ = await open_page(browser, PHONE)
    try:
        cid_a = await start_chat(ali, server.url, "Ali")
        await send(ali, "A: merhaba")
        cid_b = await start_chat(banu, server.url, "Banu")
        await send(banu, "B: merhaba")
        await expect(admin.locator(f"li.conv[data-chat-id='{cid_b}'] .conv__preview")).to_have_text(
            "B: merhaba"
        )
        await open_conversation(admin, cid_a)
        await open_conversation(admin, cid_b)

        await admin.go_back()
        await admin.wait_for_url(f"**/admin/c/{quote(cid_a)}")
        await expect(admin.locator(f"#pane #conversation[data-chat-id='{cid_a}']")).to_be_visible()
        await expect(admin.locator("li.conv--active")).to_have_attribute("data-chat-id", cid_a)
        # The restored pane is live: Ali's new message shows, Banu's does not, replies go to Ali.
        await send(banu, "B: orada mısınız?")
        await send(ali, "A: tekrar ben")
        await expect(admin.locator(MESSAGES)).to_have_text(["A: merhaba", "A: tekrar ben"])
        await send(admin, "A'ya cevap")
        await expect(ali.locator(MESSAGES)).to_have_text(
            ["A: merhaba", "A: tekrar ben", "A'ya cevap"]
        )
        await expect(admin.locator(PENDING)).to_have_count(0)
        await expect(banu.locator(MESSAGES)).to_have_text(["B: merhaba", "B: orada mısınız?"])
        # The list is live too.
        await expect(admin.locator(f"li.conv[data-chat-id='{cid_b}'] .conv__preview")).to_have_text(
            "B: orada mısınız?"
        )

        await admin.go_forward()
        await admin.wait_for_url(f"**/admin/c/{quote(cid_b)}")
        await expect(admin.locator(f"#pane #conversation[data-chat-id='{cid_b}']")).to_be_visible()
        await expect(admin.locator(MESSAGES)).to_have_text(["B: merhaba", "B: orada mısınız?"])
        await send(admin, "B'ye cevap")
        await expect(banu.locator(MESSAGES).last).to_have_text("B'ye cevap")
        await expect(ali.locator(MESSAGES)).to_have_count(3)
        admin_watch.assert_clean()
    finally:
        await close_all(admin, ali, banu)


async def test_load_earlier_messages(browser: Browser, server: Server, admin_token: str) -> None:
    admin_watch = Watch()
    admin = await admin_panel(browser, server, admin_token, admin_watch)
    context, visitor, visitor_watch = await open_page(browser, PHONE)
    try:
        cid = await start_chat(visitor, server.url, "Uzun")
        token = next(c["value"] for c in await context.cookies() if c["name"] == VISITOR_COOKIE)
        peer = await visitor_peer(server.url, token)
        try:
            for i in range(1, HISTORY + 6):
                ack = await peer.call(
                    "send",
                    {"chat_id": cid, "type": "text", "text": f"m{i}", "client_id": client_id()},
                )
                assert ack["ok"], ack
        finally:
            await peer.close()
        everything = [f"m{i}" for i in range(1, HISTORY + 6)]

        for page in (visitor, admin):
            if page is visitor:
                await visitor.reload()
            else:
                await open_conversation(admin, cid)
            await expect(page.locator(MESSAGES)).to_have_count(HISTORY)
            assert (await seqs(page))[0] == 6
            await page.locator("#older-slot button").click()
            await expect(page.locator(MESSAGES)).to_have_count(HISTORY + 5)
            assert await texts(page) == everything
            await expect(page.locator("#older-slot button")).to_have_count(0)
        # Live messages still land at the end.
        await send(visitor, "en son")
        await expect(admin.locator(MESSAGES).last).to_have_text("en son")
        await expect(admin.locator(MESSAGES)).to_have_count(HISTORY + 6)
        admin_watch.assert_clean()
        visitor_watch.assert_clean()
    finally:
        await close_all(admin, visitor)


async def test_nothing_is_sent_before_the_script_runs(browser: Browser, server: Server) -> None:
    """A slow phone shows the chat before its script has run: the composer must not submit natively."""
    _, visitor, watch = await open_page(browser, PHONE)
    release = asyncio.Event()

    async def hold(route: Route) -> None:
        await release.wait()
        await route.continue_()

    try:
        await visitor.goto(server.url + "/")
        await visitor.locator("#visitor-name").fill("Yavaş")
        await visitor.route("**/static/js/**", hold)
        await visitor.locator("#start-form button[type=submit]").click(no_wait_after=True)
        await expect(visitor.locator("#conversation[data-chat-id]")).to_be_attached()
        chat_url = visitor.url
        button = visitor.locator("#composer button[type=submit]")
        await visitor.locator("#composer textarea").fill("erken yazdım")
        await button.click(force=True)
        await asyncio.sleep(0.3)
        assert visitor.url == chat_url
        await expect(visitor.locator("#composer textarea")).to_have_value("erken yazdım")
        await expect(button).to_be_disabled()

        release.set()
        await expect(button).to_be_enabled()
        await button.click()
        await expect(visitor.locator(MESSAGES)).to_have_text(["erken yazdım"])
        await expect(visitor.locator(PENDING)).to_have_count(0)
        await visitor.reload()
        await expect(visitor.locator(MESSAGES)).to_have_text(["erken yazdım"])
        watch.assert_clean()
    finally:
        release.set()
        await close_all(visitor)


async def test_a_stale_cached_chat_js_is_never_used(
    browser: Browser, server: Server, admin_token: str
) -> None:
    """Static files are cached for a year: the shared chat.js must be loaded by its versioned URL.

    A browser holding last release's copy of the unversioned /static/js/chat.js would otherwise
    run it with this release's pages and visitor.js/admin.js. The stand-in copy here throws.
    """

    def unversioned(url: str) -> bool:
        return urlsplit(url).path.endswith("/static/js/chat.js") and not urlsplit(url).query

    async def stale(route: Route) -> None:
        await route.fulfill(
            status=200,
            content_type="text/javascript",
            body='throw new Error("stale chat.js from the cache");',
        )

    admin_watch = Watch()
    admin = await admin_panel(browser, server, admin_token, admin_watch, route=(unversioned, stale))
    _, visitor, visitor_watch = await open_page(browser, PHONE)
    await visitor.route(unversioned, stale)
    try:
        cid = await start_chat(visitor, server.url, "Önbellek")
        await open_conversation(admin, cid)
        await send(visitor, "güncel sürüm")
        await expect(admin.locator(MESSAGES)).to_have_text(["güncel sürüm"])
        await send(admin, "evet")
        await expect(visitor.locator(MESSAGES)).to_have_text(["güncel sürüm", "evet"])
        admin_watch.assert_clean()
        visitor_watch.assert_clean()
    finally:
        await close_all(admin, visitor)


async def test_phone_layouts_fit_the_screen(
    browser: Browser, server: Server, admin_token: str
) -> None:
    long_name = "Ayşegül Karaosmanoğlu Yıldırımkaya"
    token, cid = await start_visitor(server.url, long_name)
    peer = await visitor_peer(server.url, token)
    try:
        for text in (
            "kısa",
            "https://example.com/" + "uzun-bir-adres/" * 12,
            "çok uzun bir mesaj " * 20,
        ):
            assert (
                await peer.call("send", {"chat_id": cid, "text": text, "client_id": client_id()})
            )["ok"]
    finally:
        await peer.close()

    context, visitor, _ = await open_page(browser, PHONE)
    await context.add_cookies([{"name": VISITOR_COOKIE, "value": token, "url": server.url}])
    admin = await admin_panel(browser, server, admin_token)
    await admin.set_viewport_size({"width": 390, "height": 844})
    try:
        await visitor.goto(server.url + "/")
        await admin.goto(server.url + f"/admin/c/{quote(cid)}")
        for page in (visitor, admin):
            await expect(page.locator(MESSAGES)).to_have_count(3)
            assert await page.evaluate("document.documentElement.scrollWidth") <= 390
            for selector in (
                "#composer button[type=submit]",
                "#composer textarea",
                ".chat__header",
            ):
                box = await page.locator(selector).bounding_box()
                assert box is not None, selector
                assert box["x"] >= 0 and box["x"] + box["width"] <= 390, (selector, box)
                assert box["y"] + box["height"] <= 844, (selector, box)
        # On a phone the operator sees one thing at a time: the pane, with the way back to the list.
        await expect(admin.locator("#conversation-list")).to_be_hidden()
        await expect(admin.locator("#pane a.back")).to_be_visible()
        for button in ("#bulk-delete button", "#pane .btn--danger"):
            box = await admin.locator(button).bounding_box()
            assert box is not None and box["x"] + box["width"] <= 390, (button, box)
    finally:
        await close_all(visitor, admin)


async def test_live_list_order_matches_a_fresh_load(
    browser: Browser, server: Server, admin_token: str
) -> None:
    # An answered conversation is in the list when the panel loads...
    token, answered = await start_visitor(server.url, "Cevaplandı")
    peer = await visitor_peer(server.url, token)
    operator = await admin_peer(server.url, admin_token)
    try:
        await peer.call("send", {"chat_id": answered, "text": "soru", "client_id": client_id()})
        await operator.call(
            "send", {"chat_id": answered, "text": "cevap", "client_id": client_id()}
        )
    finally:
        await peer.close()
        await operator.close()
    admin = await admin_panel(browser, server, admin_token)
    _, visitor, _ = await open_page(browser, PHONE)
    try:
        # ...then a new visitor writes: waiting conversations come first.
        waiting = await start_chat(visitor, server.url, "Bekleyen")
        await send(visitor, "yardım lütfen")
        await expect(
            admin.locator(f"li.conv[data-chat-id='{waiting}'] .conv__preview")
        ).to_have_text("yardım lütfen")
        order = "(rows) => rows.map((row) => row.dataset.chatId)"
        live = await admin.locator("#conversation-list li.conv").evaluate_all(order)
        await admin.reload()
        fresh = await admin.locator("#conversation-list li.conv").evaluate_all(order)
        assert fresh.index(waiting) < fresh.index(answered)
        assert live == fresh
    finally:
        await close_all(admin, visitor)


# 6. Language ---------------------------------------------------------------------------------------


async def test_turkish_by_default_and_english_on_request(browser: Browser, server: Server) -> None:
    # A browser asking for a language the app does not have gets the default, Turkish.
    _, page, watch = await open_page(browser, {**PHONE, "locale": "de-DE"})
    try:
        await page.goto(server.url + "/")
        assert await page.locator("html").get_attribute("lang") == "tr"
        await expect(page.locator("#start-form button[type=submit]")).to_have_text("Sohbete başla")
        await expect(page.locator(".card__title")).to_have_text("Canlı destek")

        await page.locator("nav.lang a[hreflang=en]").click()
        await page.wait_for_url(server.url + "/")
        assert await page.locator("html").get_attribute("lang") == "en"
        await expect(page.locator("#start-form button[type=submit]")).to_have_text("Start chatting")
        await expect(page.locator(".card__title")).to_have_text("Live support")

        # The choice sticks, and the chat page is in English too.
        await start_chat(page, server.url, "Emma")
        await expect(page.locator("#composer textarea")).to_have_attribute(
            "placeholder", "Write a message…"
        )
        await send(page, "Hello")
        await expect(page.locator(MESSAGES)).to_have_text(["Hello"])

        await page.goto(server.url + "/lang/tr?next=/")
        await expect(page.locator("#composer textarea")).to_have_attribute(
            "placeholder", "Bir mesaj yazın…"
        )
        watch.assert_clean()
    finally:
        await close_all(page)

    # A browser that prefers English gets English without choosing.
    _, page, _ = await open_page(browser, {**DESKTOP, "locale": "en-GB"})
    try:
        await page.goto(server.url + "/")
        await expect(page.locator("#start-form button[type=submit]")).to_have_text("Start chatting")
    finally:
        await close_all(page)
