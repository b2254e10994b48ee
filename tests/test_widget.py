"""The embeddable widget in Debian's Chromium with third-party cookies blocked: a host site on
`http://localhost:PORT` embeds Sohbet served from `http://127.0.0.1:PORT` (another site), and
the visitor chats, reloads, moves between pages and gets an unread badge; another origin gets
nothing; a forged identity is refused; the standalone page still works.

Nothing here depends on the database: the module runs on SQLite only.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest
from playwright.async_api import Browser, Frame, Page, expect

from tests.support.browser import CHROMIUM_ARGS, chromium
from tests.support.clients import (
    ADMIN_COOKIE,
    Peer,
    admin_csrf,
    admin_login,
    admin_peer,
    client_id,
    panel_action,
)
from tests.support.pages import (
    DESKTOP,
    MESSAGES,
    PHONE,
    admin_panel,
    open_conversation,
    open_page,
    send,
    start_chat,
)
from tests.support.server import Server, free_port, query, sqlite_server
from tests.support.widget_host import host_sites

pytestmark = pytest.mark.browser

HOST_PORT = free_port()
OTHER_PORT = free_port()
HOST = f"http://localhost:{HOST_PORT}"
OTHER = f"http://localhost:{OTHER_PORT}"
IDENTITY_SECRET = "widget-identity-test-secret"
# Chromium's own switch for the third-party cookie phase-out: unpartitioned cookies of a
# third-party frame are neither sent nor kept.
NO_THIRD_PARTY_COOKIES = [*CHROMIUM_ARGS, "--test-third-party-cookie-phaseout"]
LOADER_LIMIT = 3 * 1024


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium(NO_THIRD_PARTY_COOKIES) as launched:
        yield launched


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    """Sohbet with the host site (only) on WIDGET_ORIGINS."""
    env = {"WIDGET_ORIGINS": HOST, "WIDGET_IDENTITY_SECRET": IDENTITY_SECRET}
    async with sqlite_server(tmp_path_factory.mktemp("widget"), env) as srv:
        yield srv


@pytest.fixture(scope="module")
async def admin_token(server: Server) -> str:
    return await admin_login(server)


@pytest.fixture(scope="module")
async def sites(server: Server) -> AsyncIterator[None]:
    """The host site and a site of another origin, each a few static pages."""
    async with host_sites(server.url, [HOST_PORT, OTHER_PORT], allowed=HOST):
        yield


async def sohbet_frame(page: Page) -> Frame:
    """The widget's frame once it has loaded Sohbet's page."""
    element = await page.locator("#sohbet-panel iframe").element_handle()
    frame = await element.content_frame()
    assert frame is not None
    await frame.wait_for_url("**/widget/frame**")
    return frame


async def open_widget(page: Page) -> Frame:
    await page.locator("#sohbet-launcher").click()
    await expect(page.locator("#sohbet-panel")).to_be_visible()
    await expect(page.locator("#sohbet-launcher")).to_have_attribute("aria-expanded", "true")
    # The keyboard follows into the panel: its close button (the next Tab is the chat), or the
    # chat itself where the frame's page took the focus as it loaded (the name field).
    await page.wait_for_function(
        "document.getElementById('sohbet-panel').contains(document.activeElement)"
    )
    return await sohbet_frame(page)


async def start_in_widget(page: Page, name: str) -> tuple[Frame, str]:
    frame = await open_widget(page)
    await frame.locator("#visitor-name").fill(name)
    await frame.locator("#start-form button[type=submit]").click()
    chat = frame.locator("#conversation[data-chat-id]")
    await expect(chat).to_be_visible()
    cid = await chat.get_attribute("data-chat-id")
    assert cid
    return frame, cid


async def operator_sends(operator: Peer, cid: str, text: str) -> None:
    await operator.call("join", {"chat_id": cid})
    answer = await operator.call(
        "send", {"chat_id": cid, "role": "admin", "text": text, "client_id": client_id()}
    )
    assert answer["ok"], answer


@pytest.mark.usefixtures("sites")
async def test_the_visitor_keeps_one_conversation_across_reloads_and_pages(
    browser: Browser, server: Server, admin_token: str
) -> None:
    operator = await admin_peer(server.url, admin_token)
    operator.sio.on("widget:page", operator._recorder("widget:page"), namespace="/chat")
    context, page, watch = await open_page(browser, DESKTOP)
    try:
        await page.goto(f"{HOST}/a.html")
        launcher = page.locator("#sohbet-launcher")
        await expect(launcher).to_have_attribute("aria-label", "Yardım — çevrimiçi")
        # Nothing but the loader until the bubble is opened.
        assert [f.url for f in page.frames if "/widget/frame" in f.url] == []
        frame, cid = await start_in_widget(page, "Misafir")
        # The browser really keeps no third-party cookie for this frame.
        kept = await frame.evaluate(
            "document.cookie = 'probe=1; SameSite=None; Secure'; document.cookie.includes('probe')"
        )
        assert kept is False
        await send(frame, "merhaba")
        await expect(frame.locator(MESSAGES)).to_have_text(["merhaba"])
        seen = await operator.wait_for("widget:page", lambda p: p["chat_id"] == cid)
        assert {k: seen[k] for k in ("chat_id", "url", "title")} == {
            "chat_id": cid,
            "url": f"{HOST}/a.html",
            "title": "Sayfa a",
        }

        # A reload of the host page: the same conversation, with its history.
        await page.reload()
        frame = await open_widget(page)
        await expect(frame.locator("#conversation")).to_have_attribute("data-chat-id", cid)
        await expect(frame.locator(MESSAGES)).to_have_text(["merhaba"])
        await expect(frame.locator("body[data-socket=up]")).to_be_attached()
        await send(frame, "hâlâ buradayım")
        await expect(frame.locator(MESSAGES)).to_have_text(["merhaba", "hâlâ buradayım"])

        # Another page of the host site: the operator sees where the visitor is now.
        await page.goto(f"{HOST}/b.html")
        await operator.wait_for("widget:page", lambda p: p["url"] == f"{HOST}/b.html")
        rows = await query(
            server, f"SELECT host_url, host_title FROM conversation WHERE cid = '{cid}'"
        )
        assert rows == [(f"{HOST}/b.html", "Sayfa b")]

        # A reply while the chat is closed: a badge on the bubble and the `unread` callback.
        await page.evaluate("window.__unread = []; Sohbet.on('unread', (n) => __unread.push(n))")
        frame = await sohbet_frame(page)
        await expect(frame.locator("body[data-socket=up]")).to_be_attached()
        await expect(page.locator("#sohbet-panel")).to_be_hidden()
        await operator_sends(operator, cid, "Size nasıl yardımcı olabilirim?")
        badge = page.locator("#sohbet-unread")
        await expect(badge).to_have_text("1")
        await expect(launcher).to_have_attribute("aria-label", "Yardım (1) — çevrimiçi")
        assert await page.evaluate("window.__unread") == [1]
        await open_widget(page)
        await expect(badge).to_be_hidden()
        await expect(frame.locator(MESSAGES).last).to_have_text("Size nasıl yardımcı olabilirim?")
        # Escape closes the panel and gives the focus back to the bubble.
        await page.keyboard.press("Escape")
        await expect(page.locator("#sohbet-panel")).to_be_hidden()
        await expect(page.locator("#sohbet-launcher")).to_be_focused()
        rows = await query(server, "SELECT count(*) FROM conversation")
        assert rows == [(1,)]
        watch.assert_clean()
    finally:
        await context.close()
        await operator.close()


async def operator_online(server: Server, expected: bool) -> None:
    """Wait until the status says so (operators' sockets of other tests leave on their close)."""
    deadline = asyncio.get_running_loop().time() + 20
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(f"{server.url}/widget/status", headers={"Origin": HOST}) as r:
                if (await r.json())["online"] is expected:
                    return
            assert asyncio.get_running_loop().time() < deadline, f"online is not {expected}"
            await asyncio.sleep(0.05)


@pytest.mark.usefixtures("sites")
async def test_the_closed_launcher_asks_again_when_the_page_is_shown_again(
    browser: Browser, server: Server, admin_token: str
) -> None:
    """No frame, and 60 s between two status checks: a tab shown again asks at once."""
    context, page, watch = await open_page(browser, DESKTOP)
    operator = None
    try:
        await operator_online(server, False)
        await page.goto(f"{HOST}/a.html")
        launcher = page.locator("#sohbet-launcher")
        await expect(launcher).to_have_attribute("aria-label", "Yardım — çevrimdışı")
        operator = await admin_peer(server.url, admin_token)
        await operator_online(server, True)
        assert await launcher.get_attribute("data-online") == "false"
        # What the browser does when the visitor comes back to the tab (headless Chromium's
        # tabs never hide, so the event is sent as the browser would send it).
        await page.evaluate(
            "document.dispatchEvent(new Event('visibilitychange', {bubbles: true}))"
        )
        await expect(launcher).to_have_attribute("aria-label", "Yardım — çevrimiçi")
        assert [f.url for f in page.frames if "/widget/frame" in f.url] == []
        watch.assert_clean()
    finally:
        if operator is not None:
            await operator.close()
        await context.close()


@pytest.mark.usefixtures("sites")
async def test_with_the_chat_loaded_the_launcher_follows_the_operator_at_once(
    browser: Browser, server: Server, admin_token: str
) -> None:
    """The loader asks for the operator's state every WIDGET_POLL_SECONDS (60 s here); once the
    frame is loaded, its socket hears the change and the loader asks at once."""
    context, page, watch = await open_page(browser, DESKTOP)
    operator = None
    try:
        await page.goto(f"{HOST}/a.html")
        frame, _ = await start_in_widget(page, "Bekleyen")
        await expect(frame.locator("body[data-socket=up]")).to_be_attached()
        await page.evaluate("Sohbet.close()")
        launcher = page.locator("#sohbet-launcher")
        # Other tests' operators have left (or leave now): their socket's close is heard.
        await expect(launcher).to_have_attribute("data-online", "false", timeout=20_000)
        operator = await admin_peer(server.url, admin_token)
        # Well within the 60 s between two status checks: only the frame's news explains it.
        await expect(launcher).to_have_attribute("data-online", "true", timeout=20_000)
        await expect(launcher).to_have_attribute("aria-label", "Yardım — çevrimiçi")
        await operator.close()
        operator = None
        await expect(launcher).to_have_attribute("data-online", "false", timeout=20_000)
        await expect(launcher).to_have_attribute("aria-label", "Yardım — çevrimdışı")
        watch.assert_clean()
    finally:
        if operator is not None:
            await operator.close()
        await context.close()


@pytest.mark.usefixtures("sites")
async def test_the_open_pane_follows_the_visitor_between_host_pages(
    browser: Browser, server: Server, admin_token: str
) -> None:
    context, page, watch = await open_page(browser, DESKTOP)
    admin = await admin_panel(browser, server, admin_token)
    try:
        await page.goto(f"{HOST}/a.html")
        frame, cid = await start_in_widget(page, "Gezgin")
        await open_conversation(admin, cid)
        line = admin.locator("#pane #visitor-page")
        await expect(line).to_have_attribute("href", f"{HOST}/a.html")
        await expect(line).to_contain_text("Sayfa a")
        await expect(admin.locator("body[data-socket=up]")).to_be_attached()
        await admin.evaluate("window.__stayed = true")
        await expect(frame.locator("body[data-socket=up]")).to_be_attached()

        await page.goto(f"{HOST}/c.html")
        await expect(line).to_have_attribute("href", f"{HOST}/c.html")
        await expect(line).to_contain_text("Sayfa c")
        await expect(line).to_have_count(1)
        # Swapped in place: the panel was not reloaded.
        assert await admin.evaluate("window.__stayed") is True
        watch.assert_clean()
    finally:
        await context.close()
        await admin.context.close()


@pytest.mark.usefixtures("sites")
async def test_a_page_on_another_origin_gets_nothing(browser: Browser, server: Server) -> None:
    context, page, _ = await open_page(browser, DESKTOP)
    try:
        async with page.expect_console_message(lambda m: "frame-ancestors" in m.text):
            await page.goto(f"{OTHER}/framed.html")
        await page.wait_for_load_state("load")
        assert await page.evaluate("typeof window.Sohbet") == "undefined"
        await expect(page.locator("#sohbet-launcher")).to_have_count(0)
        framed = [f for f in page.frames if f.url.startswith(server.url)]
        assert framed == [] or await framed[0].locator("#start-form").count() == 0
    finally:
        await context.close()


@pytest.mark.usefixtures("sites")
async def test_a_forged_identity_is_refused_and_a_signed_one_arrives(
    browser: Browser, server: Server
) -> None:
    context, page, watch = await open_page(browser, DESKTOP)
    try:
        await page.goto(f"{HOST}/a.html")
        frame, cid = await start_in_widget(page, "Anonim")
        await expect(frame.locator("body[data-socket=up]")).to_be_attached()
        forged = await page.evaluate(
            "Sohbet.identify({name: 'Sahte Ali', email: 'ali@example.com', id: '42',"
            " hash: 'ab'.repeat(32)})"
        )
        assert forged["ok"] is False and forged["error"], forged
        rows = await query(
            server, f"SELECT visitor_name, external_id FROM conversation WHERE cid = '{cid}'"
        )
        assert rows == [("Anonim", "")]
        signature = hmac.new(IDENTITY_SECRET.encode(), b"42", hashlib.sha256).hexdigest()
        user = {"name": "Ali Veli", "email": "ali@example.com", "id": "42", "hash": signature}
        verified = await page.evaluate(f"Sohbet.identify({json.dumps(user)})")
        assert verified == {"ok": True, "error": ""}
        rows = await query(
            server,
            f"SELECT visitor_name, external_id, visitor_email FROM conversation WHERE cid = '{cid}'",
        )
        assert rows == [("Ali Veli", "42", "ali@example.com")]
        # The refusal's 403 is the only thing the browser reported.
        assert watch.failed == [f"403 {server.url}/widget/identify"]
        assert watch.page_errors == [] and watch.csp == []
    finally:
        await context.close()


@pytest.mark.usefixtures("sites")
async def test_on_a_phone_the_chat_is_full_screen_and_an_ended_chat_starts_over_in_it(
    browser: Browser, server: Server, admin_token: str
) -> None:
    context, page, watch = await open_page(browser, PHONE)
    try:
        await page.goto(f"{HOST}/a.html")
        frame, cid = await start_in_widget(page, "Telefon")
        box = await page.locator("#sohbet-panel").bounding_box()
        assert box == {
            "x": 0,
            "y": 0,
            "width": PHONE["viewport"]["width"],
            "height": PHONE["viewport"]["height"],
        }
        # No language switch in the frame: its cookie would not be kept there.
        await expect(frame.locator('a[href^="/lang/"]')).to_have_count(0)
        await expect(frame.locator("body[data-socket=up]")).to_be_attached()
        # The operator deletes the conversation: the frame offers a new one, still in the widget.
        csrf = await admin_csrf(server.url, admin_token)
        status, _ = await panel_action(server.url, admin_token, csrf, f"/admin/c/{cid}/delete")
        assert status == 200
        await expect(frame.locator("#start-form")).to_be_visible()
        assert "/widget/frame?origin=" in frame.url
        assert await frame.locator("#start-form").get_attribute("action") == "/widget/start"
        watch.assert_clean()
    finally:
        await context.close()


async def test_without_any_cookie_the_frame_continues_from_its_own_storage(
    browser: Browser, server: Server
) -> None:
    """What Safari does (no third-party cookie, partitioned storage), shown on the frame's page
    opened directly: every cookie is gone, the token the frame kept brings the chat back."""
    context, page, watch = await open_page(browser, DESKTOP)
    try:
        await page.goto(f"{server.url}/widget/frame?origin={HOST}")
        await page.locator("#visitor-name").fill("Safari")
        await page.locator("#start-form button[type=submit]").click()
        chat = page.locator("#conversation[data-chat-id]")
        await expect(chat).to_be_visible()
        cid = await chat.get_attribute("data-chat-id")
        await send(page, "kayıtlı")
        await expect(page.locator(MESSAGES)).to_have_text(["kayıtlı"])
        await context.clear_cookies()
        posts: list[str] = []
        page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
        await page.reload()
        await expect(chat).to_have_attribute("data-chat-id", cid or "")
        await expect(page.locator(MESSAGES)).to_have_text(["kayıtlı"])
        await expect(page.locator("body[data-socket=up]")).to_be_attached()
        await send(page, "yine ben")
        await expect(page.locator(MESSAGES)).to_have_text(["kayıtlı", "yine ben"])
        # With no cookie, the page asked for the chat with the token from its storage.
        assert f"{server.url}/widget/frame" in posts
        watch.assert_clean()
    finally:
        await context.close()


async def test_the_standalone_page_still_works(browser: Browser, server: Server) -> None:
    context, page, watch = await open_page(browser, DESKTOP)
    try:
        await start_chat(page, server.url, "Ayşe")
        await send(page, "selam")
        await expect(page.locator(MESSAGES)).to_have_text(["selam"])
        await page.reload()
        await expect(page.locator(MESSAGES)).to_have_text(["selam"])
        watch.assert_clean()
    finally:
        await context.close()


async def test_the_loader_is_small_and_the_frame_refuses_other_ancestors(
    server: Server, admin_token: str
) -> None:
    async with aiohttp.ClientSession() as http:
        # The panel links to the operator's page with the snippet and the allowed origins.
        cookie = {"Cookie": f"{ADMIN_COOKIE}={admin_token}"}
        async with http.get(server.url + "/admin", headers=cookie) as r:
            panel = await r.text()
        link = re.search(r'<a [^>]*id="widget-link" href="([^"]+)">([^<]+)</a>', panel)
        assert link and link.group(2) == "Web sitesi sohbet penceresi", link
        async with http.get(server.url + link.group(1), headers=cookie) as r:
            owner = await r.text()
        assert f"{server.url}/widget.js" in owner and f"<code>{HOST}</code>" in owner
        async with http.get(server.url + "/admin/widget", allow_redirects=False) as r:
            assert r.status == 303
        async with http.get(server.url + "/widget.js") as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/javascript")
            loader = await r.read()
        async with http.get(f"{server.url}/widget/frame?origin={HOST}") as r:
            assert r.status == 200
            assert f"frame-ancestors {HOST}" in r.headers["Content-Security-Policy"]
        async with http.get(f"{server.url}/widget/frame?origin={OTHER}") as r:
            assert r.status == 403
        async with http.get(server.url + "/") as r:
            assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        # The status the closed launcher asks for: readable by the host site only.
        async with http.get(f"{server.url}/widget/status", headers={"Origin": HOST}) as r:
            assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == HOST
            assert r.headers["Cache-Control"] == "no-store"
            status = await r.json()
            assert set(status) == {"ok", "online", "label", "poll"} and status["ok"] is True
        async with http.get(f"{server.url}/widget/status", headers={"Origin": OTHER}) as r:
            assert r.status == 200 and await r.json() == {"ok": False}
    size = len(gzip.compress(loader, 9))
    print(f"loader: {len(loader)} bytes, {size} gzipped")
    assert size <= LOADER_LIMIT, size
    # The same loader for every site: which ones may show it is the status's answer, live.
    assert b"__SOHBET__" not in loader and HOST.encode() not in loader
