"""Take the README screenshots from the real product in Debian's headless Chromium.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]

Starts the server exactly as the tests do (Hypercorn subprocess, fresh SQLite database in a
temporary directory), plays a short conversation between a phone visitor and the operator,
and writes visitor-start.png (375x812), visitor-chat.png (375x812) and admin-panel.png
(1280x800), then the same conversation at the other size (visitor-chat-desktop.png,
admin-panel-phone.png) and in dark mode (visitor-chat-dark.png, admin-panel-dark.png).
Emoji need a colour emoji font (Debian: fonts-noto-color-emoji).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.async_api import (  # noqa: E402
    Browser,
    BrowserContext,
    Page,
    expect,
)

from tests.support.browser import chromium, phone  # noqa: E402
from tests.support.clients import (  # noqa: E402
    ADMIN_COOKIE,
    admin_login,
    admin_peer,
    client_id,
    start_visitor,
    visitor_peer,
)
from tests.support.server import Server, scratch_server  # noqa: E402

PHONE = phone(color_scheme="light")
DESKTOP = {"viewport": {"width": 1280, "height": 800}, "locale": "tr-TR", "color_scheme": "light"}


async def send(page: Page, text: str) -> None:
    await page.locator("#composer textarea").fill(text)
    await page.locator("#composer button[type=submit]").click()
    await expect(page.locator("#messages li.msg--pending")).to_have_count(0)


async def other_conversations(server: Server, admin_token: str) -> None:
    """A few more rows for the operator's list: one answered, one waiting."""
    admin = await admin_peer(server.url, admin_token)
    try:
        for name, lines, answer in (
            (
                "Mehmet",
                ["İade nasıl yapılıyor?"],
                "Siparişlerim sayfasından iade talebi açabilirsiniz.",
            ),
            ("Elif", ["Merhaba", "Kapıda ödeme var mı?"], None),
        ):
            token, cid = await start_visitor(server.url, name)
            visitor = await visitor_peer(server.url, token)
            try:
                for line in lines:
                    await visitor.call(
                        "send", {"chat_id": cid, "text": line, "client_id": client_id()}
                    )
                if answer:
                    await admin.call(
                        "send", {"chat_id": cid, "text": answer, "client_id": client_id()}
                    )
            finally:
                await visitor.close()
    finally:
        await admin.close()


async def other_sizes(
    browser: Browser, url: str, visitor_ctx: BrowserContext, admin_token: str, cid: str, out: Path
) -> None:
    """The same conversation at the other size, and in dark mode."""
    cookies = await visitor_ctx.cookies()
    shots = (
        ("visitor-chat-desktop.png", DESKTOP, cookies, "/"),
        ("visitor-chat-dark.png", {**PHONE, "color_scheme": "dark"}, cookies, "/"),
        ("admin-panel-phone.png", PHONE, None, f"/admin/c/{cid}"),
        ("admin-panel-dark.png", {**DESKTOP, "color_scheme": "dark"}, None, f"/admin/c/{cid}"),
    )
    for name, options, jar, path in shots:
        context = await browser.new_context(**options)
        await context.add_cookies(jar or [{"name": ADMIN_COOKIE, "value": admin_token, "url": url}])
        page = await context.new_page()
        await page.goto(url + path)
        await expect(page.locator("body[data-socket=up]")).to_be_attached()
        await expect(page.locator("#messages li.msg[data-seq]").last).to_be_visible()
        await asyncio.sleep(0.6)  # the entry animation and smooth scrolling settle
        await page.screenshot(path=str(out / name))
        await context.close()


async def main(out: Path) -> None:
    async with scratch_server() as server:
        admin_token = await admin_login(server)
        await other_conversations(server, admin_token)
        async with chromium() as browser:
            visitor_ctx = await browser.new_context(**PHONE)
            admin_ctx = await browser.new_context(**DESKTOP)
            await admin_ctx.add_cookies(
                [{"name": ADMIN_COOKIE, "value": admin_token, "url": server.url}]
            )
            visitor = await visitor_ctx.new_page()
            admin = await admin_ctx.new_page()
            await admin.goto(server.url + "/admin")

            await visitor.goto(server.url + "/")
            await visitor.locator("#visitor-name").fill("Ayşe")
            await visitor.screenshot(path=str(out / "visitor-start.png"))
            await visitor.locator("#start-form button[type=submit]").click()
            await expect(visitor.locator("#conversation")).to_be_visible()
            cid = await visitor.locator("#conversation").get_attribute("data-chat-id")

            await send(visitor, "Merhaba, dün verdiğim sipariş ne zaman kargoya verilir?")
            await send(visitor, "Sipariş numarası 48213 👋")
            await admin.locator(f"li.conv[data-chat-id='{cid}'] a.conv__link").click()
            await expect(
                admin.locator(f"#pane #conversation[data-chat-id='{cid}']")
            ).to_be_visible()
            await send(admin, "Merhaba Ayşe Hanım, siparişiniz bugün kargoya verilecek.")
            await send(admin, "Takip numarası akşam SMS ile gelir 🙏")
            await send(visitor, "Çok teşekkürler!")
            await visitor.locator("#composer textarea").press_sequentially(
                "Bir sorum daha", delay=20
            )
            await expect(admin.locator("#typing")).to_be_visible()
            await asyncio.sleep(0.6)  # smooth scrolling settles
            await visitor.screenshot(path=str(out / "visitor-chat.png"))
            await admin.screenshot(path=str(out / "admin-panel.png"))
            await other_sizes(browser, server.url, visitor_ctx, admin_token, cid, out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    target = parser.parse_args().out
    target.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(target))
