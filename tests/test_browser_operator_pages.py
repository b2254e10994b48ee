"""The operator's pages in Debian's headless Chromium, as an operator reads them: the Test page's
wording and layout, deleting one message, the call screens' contrast.

Nothing here depends on the database: the module runs on SQLite only.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, expect

from tests.support.browser import phone
from tests.support.server import Server, sqlite_server
from tests.test_browser import admin_panel, close_all

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    """One server on SQLite."""
    async with sqlite_server(tmp_path_factory.mktemp("operator")) as srv:
        yield srv


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
