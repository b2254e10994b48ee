"""Stored XSS in names and messages, in Chromium on the visitor page and the panel, and in
Telegram's HTML; text rules (NFKC, controls, bidi overrides, length caps).

A page fails on a dialog, a CSP violation, a script error, or any request the content made
(every payload points at /xss-canary or another host).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from tests.security.attack import SUITE_ENV, Requests, start_from, visitor
from tests.support.clients import admin_peer, client_id, visitor_peer
from tests.support.fake_telegram import FakeTelegram
from tests.support.pages import (
    MESSAGES,
    Watch,
    admin_panel,
    close_all,
    open_conversation,
    visitor_page,
)
from tests.support.server import Server, query, sqlite_server
from tests.support.telegram import telegram_env, visitor_with_chat, with_text

SERVER_ENV = SUITE_ENV
NAMES = [
    "<svg/onload=alert(1)>",
    '"><img src=/xss-canary/n2>',
    "<b hx-get=/xss-canary/3 hx-trigger=load>",
    "{{7*7}}{% if 1 %}x{% endif %}",
]
MESSAGES_SENT = [
    "<script>fetch('/xss-canary/m1')</script>",
    "<img src=/xss-canary/m2 onerror=alert(2)>",
    '<div hx-get="/xss-canary/m3" hx-trigger="load" hx-swap="outerHTML">htmx</div>',
    '<a href="javascript:alert(3)">tıkla</a>',
    '<iframe src="/xss-canary/m4"></iframe>',
    "<style>@import '/xss-canary/m5';</style>",
    '<meta http-equiv="refresh" content="0;url=/xss-canary/m6">',
    "<math><mtext><table><mglyph><style><img src=/xss-canary/m7 onerror=alert(7)>",
    '<base href="https://evil.example/">',
    "<form action=https://evil.example><button>gönder</button></form>",
    "{{ config }} {{7*7}} ${7*7} #{7*7}",
    '<svg><a xlink:href="javascript:alert(8)"><text y="20">x</text></a></svg>',
    "</textarea><script>alert(9)</script>",
    "<template><img src=/xss-canary/m10></template>",
]


@pytest.mark.browser
async def test_stored_xss_is_inert_on_both_pages(
    browser: Browser,
    server: Server,
    admin_token: str,
) -> None:
    """Input: visitor names and messages full of markup, event handlers, htmx attributes,
    javascript: URLs, template syntax and mutation-XSS; sent live and reloaded as history, by
    the visitor and echoed by the operator. Safe: each shows as its literal text; no dialog,
    no CSP violation, no script error, no request made by content, on either page."""
    requests = Requests(server.url)
    admin_watch = Watch()
    admin = await admin_panel(browser, server, admin_token, admin_watch)
    requests.attach(admin)
    pages: list[Page] = [admin]
    watches = [admin_watch]
    try:
        for name in NAMES:
            token, cid = await visitor(server, name)
            page, watch = await visitor_page(browser, server, token)
            requests.attach(page)
            pages.append(page)
            watches.append(watch)
            row = admin.locator(f"li.conv[data-chat-id='{cid}'] .conv__name")
            await expect(row).to_have_text(name)
            await expect(page.locator(".chat__hello")).to_contain_text(name)
            await open_conversation(admin, cid)
            await expect(admin.locator("#pane .chat__title")).to_contain_text(name)
        # The last visitor sends every payload live; the operator sends them back.
        peer = await visitor_peer(server.url, token)
        operator = await admin_peer(server.url, admin_token)
        try:
            for text in MESSAGES_SENT:
                ack = await peer.call(
                    "send", {"chat_id": cid, "text": text, "client_id": client_id()}
                )
                assert ack["ok"], ack
                ack = await operator.call(
                    "send", {"chat_id": cid, "text": text, "client_id": client_id()}
                )
                assert ack["ok"], ack
        finally:
            await peer.close()
            await operator.close()
        expected = [t for text in MESSAGES_SENT for t in (text, text)]
        visitor_view = pages[-1]
        await expect(visitor_view.locator(MESSAGES)).to_have_text(expected)
        await expect(admin.locator(MESSAGES)).to_have_text(expected)
        for page in (visitor_view, admin):
            await page.reload()
            await expect(page.locator(MESSAGES)).to_have_text(expected)
        await asyncio.sleep(1)  # give a hx-trigger=load or a meta refresh its chance
        for page in pages:
            live = "#messages script, #messages img, #messages iframe, #messages [hx-get], base"
            assert await page.locator(live).count() == 0, page.url
            assert page.url.startswith(server.url), page.url
        for watch in watches:
            assert watch.dialogs == [], watch.dialogs
            watch.assert_clean()
        assert requests.suspicious == [], requests.suspicious
    finally:
        await close_all(*pages)


async def test_markup_is_escaped_in_telegram_html(tmp_path: Path) -> None:
    """Input: a visitor named `<b>Eve</b>` writes `<script>x</script> & <a href=…>`. Safe:
    the bot's HTML-mode messages carry them escaped (the fake Bot API refuses bad HTML, as
    Telegram does), so the operator reads the literal text."""
    async with FakeTelegram() as fake:
        async with sqlite_server(tmp_path, telegram_env(fake)) as server:
            peer, cid = await visitor_with_chat(server, "<b>Eve</b>")
            try:
                text = '<script>x</script> & <a href="https://evil.example">tıkla</a>'
                ack = await peer.call(
                    "send", {"chat_id": cid, "text": text, "client_id": client_id()}
                )
                assert ack["ok"]
                entered = await fake.wait_for_sent(with_text(f"[CID: {cid}]"))
                assert "&lt;b&gt;Eve&lt;/b&gt;" in (entered.text or ""), entered.text
                forwarded = await fake.wait_for_sent(with_text("&lt;script&gt;"))
                assert "&amp;" in (forwarded.text or "") and "<a " not in (forwarded.text or "")
            finally:
                await peer.close()
            rows = await query(server, "SELECT COUNT(*) FROM tg_outbox WHERE status = 'failed'")
            assert rows == [(0,)]


TEXT_RULES = [
    # (input, what is stored)
    ("ﬁle Ｔｅｓｔ ①", "file Test 1"),  # NFKC: ligature, full-width, circled digit
    ("a\u202eevil\u202c b", "aevil b"),  # bidi override
    ("x\u2066y\u2069z\u200bw", "xyzw"),  # isolates, zero-width space
    ("E\u200cd\u200da\u2060-7F3C\u00ad\u034f", "Eda-7F3C"),  # every default-ignorable
    ("a\ufe0fb\U000e0041", "ab"),  # a selector or a tag that follows no emoji
    (
        "👨\u200d👩\u200d👧 ❤\ufe0f 1\ufe0f\u20e3",
        "👨\u200d👩\u200d👧 ❤\ufe0f 1\ufe0f\u20e3",
    ),  # emoji
    ("tab\there\x00nul\x07bell", "tab herenulbell"),  # controls
    ("line1\r\nline2\n\n\n\nline3", "line1\nline2\n\nline3"),  # newlines kept, runs cut
    ("  padded  ", "padded"),
]


@pytest.mark.parametrize(("raw", "stored"), TEXT_RULES, ids=[r[1][:12] for r in TEXT_RULES])
async def test_text_is_normalised_and_stripped(server: Server, raw: str, stored: str) -> None:
    """Input: messages with compatibility characters, bidi overrides, zero-width and control
    characters. Safe: stored NFKC-normalised with those characters removed."""
    token, cid = await visitor(server, "Rules")
    peer = await visitor_peer(server.url, token)
    try:
        ack = await peer.call("send", {"chat_id": cid, "text": raw, "client_id": client_id()})
        assert ack["ok"] and ack["message"]["text"] == stored, ack
    finally:
        await peer.close()


async def test_names_are_normalised_and_capped(server: Server) -> None:
    """Input: names with bidi overrides and controls, one of 41 characters, one of only
    invisible characters. Safe: cleaned; too long and empty are refused with a message that
    keeps the form (nothing stored)."""
    status, token, _ = await start_from(server, "Ad\u202enan\x07 \u200bKaya")
    assert status == 303 and token
    rows = await query(server, "SELECT visitor_name FROM conversation ORDER BY id DESC LIMIT 1")
    assert rows == [("Adnan Kaya",)]
    status, _, page = await start_from(server, "x" * 41)
    assert status == 400 and "40" in page
    status, _, page = await start_from(server, "\u202e\u200b\x07")
    assert status == 400
    status, _, _ = await start_from(server, "Eda\u200c\u200d\u2060-7F3C\ufe0f")
    assert status == 303
    rows = await query(server, "SELECT visitor_name FROM conversation ORDER BY id DESC LIMIT 1")
    assert rows == [("Eda-7F3C",)]
    too_long = await start_from(server, "y" * 10_000)
    assert too_long[0] == 400
