"""The visitor's journey in Firefox (firefox-esr) and WebKit (WebKitGTK), against the real server.

Chromium is covered by tests/test_browser*.py; here the same product runs in the two other
engine families a visitor may bring (Firefox; Safari's WebKit), driven through
tests/support/engines.py. The operator is a real Socket.IO client; the visitor reaches the
server through a proxy that can cut the connection (the offline resend).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.clients import Peer, admin_login, admin_peer, client_id
from tests.support.engines import (
    EnginePage,
    firefox,
    firefox_missing,
    wait_js,
    webkit,
    webkit_missing,
)
from tests.support.media_files import jpeg
from tests.support.proxy import CuttingProxy
from tests.support.server import Server, sqlite_server_fixture

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
MESSAGES = "#messages li.msg[data-seq] .msg__text"
PHOTOS = "#messages li.msg[data-seq] .msg__photo img"
VOICES = "#messages li.msg[data-seq] .msg__audio audio"
PENDING = "#messages li.msg--pending"

TEXTS = f"return [...document.querySelectorAll('{MESSAGES}')].map((e) => e.textContent.trim())"
COUNT = "return document.querySelectorAll(arguments[0]).length"
VISIBLE = """const el = document.querySelector(arguments[0]);
return !!el && !el.hidden && el.getClientRects().length > 0 && getComputedStyle(el).visibility !== "hidden";"""


server = sqlite_server_fixture("engines")


async def new_visitor_page(
    engine: str, tmp_path: Path, width: int = 390, height: int = 844
) -> AsyncIterator[EnginePage]:
    """A fresh tab (own cookies and storage) in the named engine; closed afterwards."""
    if engine == "firefox":
        if (why := firefox_missing()) is not None:
            pytest.skip(why)
        async with firefox() as driver:
            page: EnginePage = await driver.new_page(width, height)
            try:
                yield page
            finally:
                await page.close()
    else:
        if (why := webkit_missing()) is not None:
            pytest.skip(why)
        async with webkit(tmp_path) as driver:
            page = await driver.new_page(width, height)
            try:
                yield page
            finally:
                await page.close()


@pytest.fixture(params=["firefox", "webkit"])
async def visitor(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EnginePage]:
    async for page in new_visitor_page(request.param, tmp_path):
        yield page


async def texts(page: EnginePage) -> list[str]:
    return list(await page.js(TEXTS))


async def wait_texts(page: EnginePage, expected: list[str], timeout: float = 15) -> None:
    """Wait until the page shows exactly these messages, in this order."""
    body = (
        TEXTS.replace("return ", "const t = ", 1) + "; return JSON.stringify(t) === arguments[0];"
    )
    try:
        await wait_js(
            page,
            body,
            json.dumps(expected, ensure_ascii=False, separators=(",", ":")),
            timeout=timeout,
        )
    except AssertionError:
        assert await texts(page) == expected
        raise


async def send_text(page: EnginePage, text: str) -> None:
    await page.type("#composer textarea", text)
    await page.click("#composer button[type=submit]")


async def operator_message(operator: Peer, cid: str, text: str) -> dict[str, object]:
    return dict(
        await operator.wait_for(
            "chat:message",
            lambda m: (
                m.get("chat_id") == cid and m.get("role") == "visitor" and m.get("text") == text
            ),
        )
    )


async def test_visitor_journey(visitor: EnginePage, server: Server, tmp_path: Path) -> None:
    engine = visitor.engine
    proxy = await CuttingProxy(server.port).start()
    operator = await admin_peer(server.url, await admin_login(server))
    try:
        # Name -> chat.
        await visitor.goto(proxy.url + "/")
        await wait_js(visitor, VISIBLE, "#visitor-name")
        await visitor.type("#visitor-name", "Ece")
        await visitor.click("#start-form button[type=submit]")
        cid = await wait_js(
            visitor,
            "const c = document.querySelector('#conversation[data-chat-id]'); return c && c.dataset.chatId",
        )
        assert (await operator.call("join", {"chat_id": cid}))["ok"]

        # Send; the operator gets it live and answers; the visitor sees the reply live.
        await send_text(visitor, "Merhaba, siparişim nerede?")
        await operator_message(operator, cid, "Merhaba, siparişim nerede?")
        await wait_texts(visitor, ["Merhaba, siparişim nerede?"])
        await wait_js(visitor, COUNT.replace("return", "return 0 ==="), PENDING)
        sent = await operator.call(
            "send",
            {
                "chat_id": cid,
                "type": "text",
                "text": "Kargoda, yarın elinizde.",
                "client_id": client_id(),
            },
        )
        assert sent["ok"], sent
        await wait_texts(visitor, ["Merhaba, siparişim nerede?", "Kargoda, yarın elinizde."])

        # Reload: the history is kept.
        await visitor.reload()
        await wait_texts(visitor, ["Merhaba, siparişim nerede?", "Kargoda, yarın elinizde."])

        # An emoji from the quick bar, sent as a message.
        emoji = await visitor.js("return document.querySelector('[data-emoji]').dataset.emoji")
        await visitor.click("[data-emoji]")
        assert (
            await visitor.js("return document.querySelector('#composer textarea').value") == emoji
        )
        await visitor.click("#composer button[type=submit]")
        await operator_message(operator, cid, emoji)
        await wait_texts(visitor, ["Merhaba, siparişim nerede?", "Kargoda, yarın elinizde.", emoji])

        # A photo from the gallery: shrunk in the page, shown once it is stored.
        photo = tmp_path / "IMG_0001.jpg"
        photo.write_bytes(jpeg(2400, 1800))
        await visitor.click("#composer .attach summary")
        await visitor.upload("input[data-media=photo]:not([capture])", photo)
        await wait_js(visitor, COUNT.replace("return", "return 1 ==="), PHOTOS)
        width = await wait_js(
            visitor,
            "const img = document.querySelector(arguments[0]); return img.complete && img.naturalWidth",
            PHOTOS,
        )
        assert width == 2048, width
        await operator.wait_for(
            "chat:message", lambda m: m.get("chat_id") == cid and m.get("type") == "photo"
        )

        # A voice message from the engine's fake microphone (WebKitGTK's recorder breaks the
        # file's last fragment: the server keeps what decodes, 3 s recorded leave at least 2).
        records = await visitor.js(
            "return typeof MediaRecorder === 'function' && !!navigator.mediaDevices"
        )
        assert records
        await visitor.click("#composer [data-record]")
        await wait_js(visitor, VISIBLE, "#recorder")
        await wait_js(
            visitor,
            "return /0:0[3-9]/.test(document.querySelector('#recorder-time').textContent)",
        )
        await visitor.click("#recorder [data-recorder=send]")
        await wait_js(visitor, COUNT.replace("return", "return 1 ==="), VOICES, timeout=30)
        await operator.wait_for(
            "chat:message", lambda m: m.get("chat_id") == cid and m.get("type") == "voice"
        )
        duration = await visitor.js(
            """const audio = document.querySelector(arguments[0]);
            return new Promise((resolve) => {
              if (audio.readyState >= 1) resolve(audio.duration);
              audio.addEventListener("loadedmetadata", () => resolve(audio.duration));
              audio.load();
            });""",
            VOICES,
        )
        assert 1.0 < duration < 30.0, duration

        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await visitor.screenshot(SCREENSHOTS / f"visitor-chat-{engine}.png")

        # Offline: the connection is cut and reconnects refused; the message waits on the page
        # and is delivered once when the network is back.
        proxy.refusing = True
        assert proxy.cut() > 0
        await wait_js(visitor, VISIBLE, "#connection-banner")
        await send_text(visitor, "tünelden yazıyorum")
        await wait_js(visitor, COUNT.replace("return", "return 1 ==="), PENDING)
        proxy.refusing = False
        await wait_js(visitor, COUNT.replace("return", "return 0 ==="), PENDING, timeout=30)
        await operator_message(operator, cid, "tünelden yazıyorum")
        assert (await texts(visitor))[-1] == "tünelden yazıyorum"
        await visitor.reload()
        final = await texts(visitor)
        assert final.count("tünelden yazıyorum") == 1, final
        seqs = await visitor.js(
            "return [...document.querySelectorAll('#messages li.msg[data-seq]')].map((e) => +e.dataset.seq)"
        )
        assert seqs == sorted(set(seqs)) and len(seqs) == 6, seqs
        assert [m.get("text") for m in operator.events["chat:message"]].count(
            "tünelden yazıyorum"
        ) == 1
        errors = await visitor.console_errors()
        if errors is not None:
            # The cut connection is reported by the engine itself; nothing else may be.
            assert [
                e for e in errors if not re.search(r"socket\.io|WebSocket|NetworkError", e)
            ] == []
    finally:
        await operator.close()
        await proxy.stop()


async def test_webkit_without_webrtc_says_so_instead_of_ringing(
    server: Server, tmp_path: Path
) -> None:
    """Debian's WebKitGTK has no WebRTC (like some in-app web views and iOS Lockdown Mode): the
    phone button says why in the visitor's language and never rings; the operator reads why
    in the conversation."""
    async for visitor in new_visitor_page("webkit", tmp_path):
        assert await visitor.js("return typeof RTCPeerConnection") == "undefined"
        operator = await admin_peer(server.url, await admin_login(server))
        try:
            await visitor.goto(server.url + "/")
            await wait_js(visitor, VISIBLE, "#visitor-name")
            await visitor.type("#visitor-name", "Safari")
            await visitor.click("#start-form button[type=submit]")
            cid = await wait_js(
                visitor,
                "const c = document.querySelector('#conversation[data-chat-id]'); return c && c.dataset.chatId",
            )
            assert (await operator.call("join", {"chat_id": cid}))["ok"]
            await wait_js(visitor, VISIBLE, "#call-button")
            await visitor.click("#call-button")
            await wait_js(
                visitor,
                "const t = document.getElementById('call-ended-text'); return !!t && t.textContent.trim() === arguments[0]",
                "Tarayıcınız arama yapamıyor; bunun yerine sesli mesaj gönderin.",
            )
            told = await operator.wait_for(
                "chat:message",
                lambda m, cid=cid: m.get("chat_id") == cid and m.get("role") == "system",
            )
            assert "tarayıcısı arama yapamıyor" in str(told.get("html", "")), told
        finally:
            await operator.close()
