"""The audit trail page in Debian's headless Chromium, as the owner uses it: reached from the
panel, filtered with HTMX (the address bar follows), the CSV downloaded, readable on a phone.

Nothing here depends on the database: the module runs on SQLite only.
"""

from __future__ import annotations

import csv
import io

import pytest
from playwright.async_api import Browser, expect

from tests.support.accessibility import assert_accessible
from tests.support.browser import phone
from tests.support.clients import admin_csrf, panel_action, start_visitor
from tests.support.pages import admin_panel, close_all
from tests.support.server import Server, sqlite_server_fixture

pytestmark = pytest.mark.browser

server = sqlite_server_fixture("audit")


async def test_the_owner_filters_and_downloads_the_trail(
    browser: Browser, server: Server, admin_token: str
) -> None:
    csrf = await admin_csrf(server.url, admin_token)
    _, cid = await start_visitor(server.url, "Tarayıcı")
    for action in ("close", "reopen", "close"):
        status, _ = await panel_action(server.url, admin_token, csrf, f"/admin/c/{cid}/{action}")
        assert status == 200

    admin = await admin_panel(browser, server, admin_token)
    try:
        await admin.get_by_role("link", name="İşlem kaydı").click()
        await admin.wait_for_url("**/admin/audit")
        rows = admin.locator("#audit-results tbody tr")
        # The sign-in of the fixture and the three changes, newest first.
        await expect(rows).to_have_count(4)
        await expect(rows.first.locator(".audit-row__action")).to_have_text("Sohbeti kapattı")
        await expect(rows.last.locator(".audit-row__action")).to_have_text("Giriş yaptı")

        await admin.locator("select[name=action]").select_option("conversation_reopen")
        await expect(rows).to_have_count(1)
        await expect(rows.first.locator(".audit-row__target")).to_have_text(cid)
        await admin.wait_for_url("**/admin/audit?action=conversation_reopen*")

        await admin.locator("select[name=action]").select_option("")
        await admin.locator("input[name=target]").fill("tarayıcı")
        await admin.locator("input[name=target]").press("Enter")
        await expect(rows).to_have_count(3)

        async with admin.expect_download() as waiting:
            await admin.locator("#audit-export").click()
        download = await waiting.value
        path = await download.path()
        text = path.read_text(encoding="utf-8-sig")
        lines = list(csv.reader(io.StringIO(text)))
        assert [line[3] for line in lines[1:]] == [
            "conversation_close",
            "conversation_reopen",
            "conversation_close",
        ]
        await assert_accessible(admin, "audit trail")

        # On a phone the table scrolls inside its box; the page itself never scrolls sideways.
        await admin.set_viewport_size(phone(375, 812)["viewport"])
        overflow = await admin.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
    finally:
        await close_all(admin)
