"""The embeddable widget in Firefox ESR with strict tracking protection (Total Cookie Protection):
a host site on `http://localhost:PORT` embeds Sohbet served from `http://127.0.0.1:PORT` (another
site); the visitor opens the bubble, chats, reloads the host page and continues the same
conversation, then moves to another page of the host site and the operator sees it.

Nothing here depends on the database: the module runs on SQLite only.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from tests.support.clients import admin_login, admin_peer, client_id
from tests.support.engines import FirefoxFrame, FirefoxPage, firefox, firefox_missing, wait_js
from tests.support.server import Server, free_port, query, sqlite_server
from tests.support.widget_host import host_sites

pytestmark = pytest.mark.browser

HOST_PORT = free_port()
HOST = f"http://localhost:{HOST_PORT}"
FRAME = "/widget/frame"
# Firefox's "Strict" content blocking: tracking protection everywhere, Total Cookie Protection
# (cookieBehavior 5: every third-party cookie and storage partitioned by the top-level site).
STRICT = {
    "browser.contentblocking.category": "strict",
    "privacy.trackingprotection.enabled": True,
    "privacy.trackingprotection.pbmode.enabled": True,
    "privacy.trackingprotection.socialtracking.enabled": True,
    "privacy.trackingprotection.cryptomining.enabled": True,
    "privacy.trackingprotection.fingerprinting.enabled": True,
    "privacy.partition.network_state": True,
    "network.cookie.cookieBehavior": 5,
}
MESSAGES = "#messages li.msg[data-seq] .msg__text"
TEXTS = f"return [...document.querySelectorAll('{MESSAGES}')].map((e) => e.textContent.trim())"
SHOWS = TEXTS.replace("return ", "const t = ", 1) + "; return JSON.stringify(t) === arguments[0];"
CHAT_ID = (
    "const c = document.querySelector('#conversation[data-chat-id]'); return c && c.dataset.chatId"
)


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    """Sohbet with the host site on WIDGET_ORIGINS, and the host site."""
    async with sqlite_server(tmp_path_factory.mktemp("widget-ff"), {"WIDGET_ORIGINS": HOST}) as srv:
        async with host_sites(srv.url, [HOST_PORT], allowed=HOST):
            yield srv


@pytest.fixture
async def page() -> AsyncIterator[FirefoxPage]:
    if (why := firefox_missing()) is not None:
        pytest.skip(why)
    async with firefox(STRICT) as driver:
        opened = await driver.new_page(1280, 800)
        try:
            yield opened
        finally:
            await opened.close()


async def open_widget(page: FirefoxPage) -> FirefoxFrame:
    await wait_js(page, "return !!document.getElementById('sohbet-launcher')")
    await page.click("#sohbet-launcher")
    await wait_js(page, "return document.getElementById('sohbet-panel').hidden === false")
    frame = page.frame(FRAME)
    await wait_js(frame, "return document.readyState === 'complete'")
    return frame


async def shows(frame: FirefoxFrame, texts: list[str]) -> None:
    await wait_js(frame, SHOWS, json.dumps(texts, ensure_ascii=False, separators=(",", ":")))


async def send(frame: FirefoxFrame, text: str) -> None:
    await wait_js(frame, "return document.body.dataset.socket === 'up'")
    await frame.type("#composer textarea", text)
    await frame.click("#composer button[type=submit]")


async def test_strict_tracking_protection_keeps_the_conversation_across_reloads_and_pages(
    page: FirefoxPage, server: Server
) -> None:
    operator = await admin_peer(server.url, await admin_login(server))
    operator.sio.on("widget:page", operator._recorder("widget:page"), namespace="/chat")
    try:
        assert await page.js("return navigator.userAgent.includes('Firefox')")
        await page.goto(f"{HOST}/a.html")
        frame = await open_widget(page)
        await wait_js(frame, "return !!document.getElementById('visitor-name')")
        await frame.type("#visitor-name", "Tilki")
        await frame.click("#start-form button[type=submit]")
        cid = await wait_js(frame, CHAT_ID)
        # The frame is third-party here: Firefox keeps none of its unpartitioned cookies, and
        # partitions its storage by the host site.
        assert await frame.js("return await document.hasStorageAccess()") is False
        await send(frame, "merhaba")
        await shows(frame, ["merhaba"])
        seen = await operator.wait_for("widget:page", lambda p: p["chat_id"] == cid)
        assert seen["url"] == f"{HOST}/a.html"

        # A reload of the host page: the same conversation, with its history; it goes on.
        await page.reload()
        frame = await open_widget(page)
        assert await wait_js(frame, CHAT_ID) == cid
        await shows(frame, ["merhaba"])
        await send(frame, "hâlâ buradayım")
        await shows(frame, ["merhaba", "hâlâ buradayım"])
        await operator.call("join", {"chat_id": cid})
        sent = await operator.call(
            "send", {"chat_id": cid, "role": "admin", "text": "Buyurun", "client_id": client_id()}
        )
        assert sent["ok"], sent
        await shows(frame, ["merhaba", "hâlâ buradayım", "Buyurun"])

        # Another page of the host site: the same conversation, and the operator sees where.
        await page.goto(f"{HOST}/b.html")
        await operator.wait_for("widget:page", lambda p: p["url"] == f"{HOST}/b.html")
        frame = await open_widget(page)
        assert await wait_js(frame, CHAT_ID) == cid
        await shows(frame, ["merhaba", "hâlâ buradayım", "Buyurun"])
        rows = await query(server, "SELECT count(*) FROM conversation")
        assert rows == [(1,)]
    finally:
        await operator.close()
