"""Assignment in two Chromium panels, as two operators use it: one takes a conversation, the
other (a moment late, on a pane opened before) is told who has it; the Unassigned tab drops the
row live and gets it back on release; a transfer's note shows to the receiving operator.

Nothing here depends on the database: the module runs on SQLite only.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
from playwright.async_api import Browser, expect

from tests.support.accessibility import assert_accessible
from tests.support.assignment import join
from tests.support.clients import client_id, start_visitor, visitor_peer
from tests.support.pages import Watch, admin_panel, open_conversation
from tests.support.server import Server, sqlite_server_fixture

pytestmark = pytest.mark.browser

server = sqlite_server_fixture("assign")

NOTE = "Fatura sorusu, iade tamam"


async def test_take_race_tabs_release_and_transfer_in_two_panels(
    browser: Browser, server: Server, admin_token: str
) -> None:
    ayse_member = await join(server, admin_token, "Ayşe")
    burak_member = await join(server, admin_token, "Burak")
    ayse_watch, burak_watch = Watch(), Watch()
    ayse = await admin_panel(browser, server, ayse_member.token, ayse_watch)
    burak = await admin_panel(browser, server, burak_member.token, burak_watch)
    try:
        _, cid = await start_visitor(server.url, "İki Panel")
        for page in (ayse, burak):
            await expect(
                page.locator(f"#conversation-list li.conv[data-chat-id='{cid}']")
            ).to_be_visible()
            await open_conversation(page, cid)
            await expect(page.locator("#take-button")).to_be_visible()
        await assert_accessible(ayse, "a conversation with its assignment bar")

        # Ayşe takes it; Burak, on the pane he opened before, is told she has it.
        await ayse.locator("#take-button").click()
        await expect(ayse.locator("#assignee")).to_contain_text("Size atandı")
        await burak.locator("#take-button").click()
        await expect(burak.locator("#assign-error")).to_contain_text("Ayşe")
        await expect(burak.locator("#assignee")).to_contain_text("Ayşe")
        await expect(burak.locator("#take-button")).to_have_count(0)

        # Burak's Unassigned tab leaves it out; Ayşe's release brings the row back live.
        await burak.locator("#tab-unassigned").click()
        await expect(burak.locator("#tab-unassigned")).to_have_attribute("aria-selected", "true")
        burak_row = burak.locator(f"#conversation-list li.conv[data-chat-id='{cid}']")
        await expect(burak_row).to_have_count(0)
        await ayse.locator("#release-button").click()
        await expect(ayse.locator("#take-button")).to_be_visible()
        await expect(burak_row).to_have_count(1)

        # Ayşe transfers it to Burak with a note: it leaves his Unassigned tab, and his pane
        # shows the note.
        await ayse.locator(".assign__transfer summary").click()
        await ayse.locator("#transfer-operator").select_option(label="Burak")
        await ayse.locator("#transfer-note-input").fill(NOTE)
        await ayse.locator("#transfer-form button[type=submit]").click()
        await expect(ayse.locator("#assignee")).to_contain_text("Burak")
        await expect(burak_row).to_have_count(0)
        await burak.locator("#tab-mine").click()
        await expect(burak_row).to_have_count(1)
        await open_conversation(burak, cid)
        await expect(burak.locator("#transfer-note")).to_contain_text(NOTE)
        await expect(burak.locator("#assignee")).to_contain_text("Size atandı")
        await assert_accessible(burak, "a transferred conversation with its note")
        # A new visitor writes: Burak's Unassigned tab counts it without a reload.
        visitor, other = await start_visitor(server.url, "Yeni Gelen")
        peer = await visitor_peer(server.url, visitor)
        try:
            await peer.call("join", {"chat_id": other})
            await peer.call("send", {"chat_id": other, "text": "selam", "client_id": client_id()})
        finally:
            await peer.close()
        await expect(burak.locator("#tab-unassigned .badge")).to_have_text("1")
        await expect(burak.locator("#tab-mine .badge")).to_have_count(0)
        # Ayşe reads it: the live row every panel gets says the team has read it, but Burak's
        # badge stays his own (1: he has not).
        await burak.locator("#tab-unassigned").click()
        other_row = burak.locator(f"#conversation-list li.conv[data-chat-id='{other}']")
        await expect(other_row.locator(".badge")).to_have_text("1")
        await expect(
            ayse.locator(f"#conversation-list li.conv[data-chat-id='{other}']")
        ).to_be_visible()
        await open_conversation(ayse, other)
        await expect(other_row).to_have_attribute("data-unread", "0")
        await expect(other_row.locator(".badge")).to_have_text("1")
        await expect(
            ayse.locator(f"#conversation-list li.conv[data-chat-id='{other}'] .badge")
        ).to_have_count(0)
        ayse_watch.assert_clean()
        # The one refused press is the only failed request (htmx swaps its 409 in as the alert).
        assert burak_watch.failed == [f"409 {server.url}/admin/c/{quote(cid)}/take"], (
            burak_watch.failed
        )
        burak_watch.console_errors = [e for e in burak_watch.console_errors if "409" not in e]
        burak_watch.assert_clean()
    finally:
        await ayse.context.close()
        await burak.context.close()
