"""The visitor's pages hold at phone widths in Chromium, Firefox and WebKit, without console errors.

At 320, 390 and 430 px wide the start page and the chat never scroll sideways and the send
button is on screen; neither page logs an error in any engine that reports its console.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.browser import chromium
from tests.support.engines import (
    ChromiumPage,
    EnginePage,
    firefox,
    firefox_missing,
    wait_js,
    webkit,
    webkit_missing,
)
from tests.support.server import Server, sqlite_server_fixture

pytestmark = pytest.mark.browser

WIDTHS = (320, 390, 430)
HEIGHT = 844
# What a visitor would see scroll sideways, and where the send button ends.
MEASURE = """const doc = document.documentElement;
const send = document.querySelector("#composer .composer__send");
return {
  inner: window.innerWidth,
  client: doc.clientWidth,
  scroll: Math.max(doc.scrollWidth, document.body.scrollWidth),
  send: send ? send.getBoundingClientRect().right : null,
};"""
VIEWPORT_META = "return document.querySelector('meta[name=viewport]').content"


server = sqlite_server_fixture("layout")


@pytest.fixture(params=["chromium", "firefox", "webkit"])
async def page(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EnginePage]:
    """A fresh visitor tab 390 px wide in each engine."""
    opened: EnginePage
    if request.param == "chromium":
        async with chromium() as browser:
            opened = await ChromiumPage.open(browser, 390, HEIGHT)
            yield opened
            await opened.close()
    elif request.param == "firefox":
        if (why := firefox_missing()) is not None:
            pytest.skip(why)
        async with firefox() as driver:
            opened = await driver.new_page(390, HEIGHT)
            yield opened
            await opened.close()
    else:
        if (why := webkit_missing()) is not None:
            pytest.skip(why)
        async with webkit(tmp_path) as driver:
            opened = await driver.new_page(390, HEIGHT)
            yield opened
            await opened.close()


async def assert_fits(page: EnginePage, where: str) -> None:
    for width in WIDTHS:
        await page.resize(width, HEIGHT)
        await wait_js(page, "return window.innerWidth === arguments[0]", width)
        m = await page.js(MEASURE)
        assert m["scroll"] <= m["inner"], (page.engine, where, width, m)
        assert m["client"] == m["inner"], (page.engine, where, width, m)  # no vertical scrollbar
        if m["send"] is not None:
            assert m["send"] <= m["inner"], (page.engine, where, width, m)
    await page.resize(390, HEIGHT)


async def test_phone_widths_hold_without_console_errors(page: EnginePage, server: Server) -> None:
    await page.goto(server.url + "/")
    await wait_js(page, "return !!document.querySelector('#visitor-name')")
    await assert_fits(page, "start")
    assert await page.console_errors() in ([], None)

    await page.type("#visitor-name", "Genişlik")
    await page.click("#start-form button[type=submit]")
    await wait_js(page, "return !!document.querySelector('#conversation[data-chat-id]')")
    # The chat's script is running (the send button is enabled by it).
    await page.type("#composer textarea", "kenar")
    await wait_js(page, "return !document.querySelector('#composer .composer__send').disabled")
    await assert_fits(page, "chat")
    assert await page.console_errors() in ([], None)

    # WebKitWebDriver does not relay the console: what WebKit reported as an error (a viewport
    # key it does not know) must not be in the page it gets.
    meta = await page.js(VIEWPORT_META)
    if page.engine == "chromium":
        assert "interactive-widget=resizes-content" in meta, meta
    else:
        assert "interactive-widget" not in meta, meta
