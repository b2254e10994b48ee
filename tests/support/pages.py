"""Sohbet's pages in Chromium, as the browser tests drive them: a phone visitor, the operator's
desktop panel, and what a page reported that a user would not see (errors, CSP violations).

Importing this module sets Playwright's `expect` timeout to WAIT_MS for every test.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Dialog,
    Frame,
    Page,
    Response,
    Route,
    expect,
)

from tests.support.browser import phone
from tests.support.clients import ADMIN_COOKIE, VISITOR_COOKIE
from tests.support.server import ADMIN_PASSWORD, Server

PHONE = phone(390, 844, scale=3)
DESKTOP: dict[str, Any] = {"viewport": {"width": 1280, "height": 800}, "locale": "tr-TR"}
WAIT_MS = 10_000
MESSAGES = "#messages li.msg[data-seq] .msg__text"
PENDING = "#messages li.msg--pending"
expect.set_options(timeout=WAIT_MS)

# Reports CSP violations to the test (a CDP-injected script: not subject to the page's CSP).
CSP_PROBE = """
document.addEventListener("securitypolicyviolation", (e) => {
  window.__sohbetCsp(`${e.violatedDirective} ${e.blockedURI} ${e.sample || ""}`);
});
"""


@dataclass
class Watch:
    """What a page reported that a user would not see: errors, CSP violations, dialogs."""

    accept_dialogs: bool = False
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    csp: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        page.on("response", self._response)
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))
        page.on("dialog", self._dialog)

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.failed.append(f"{response.status} {response.url}")

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error":
            self.console_errors.append(f"{msg.text} at {msg.location.get('url')}")
            if "Content Security Policy" in msg.text:
                self.csp.append(msg.text)

    async def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        if self.accept_dialogs:
            await dialog.accept()
        else:
            await dialog.dismiss()

    def assert_clean(self) -> None:
        assert self.csp == [], self.csp
        assert self.page_errors == [], self.page_errors
        assert self.console_errors == [], (self.console_errors, self.failed)


async def open_page(
    browser: Browser, options: dict[str, Any], watch: Watch | None = None
) -> tuple[BrowserContext, Page, Watch]:
    watch = watch or Watch()
    context = await browser.new_context(**options)
    context.set_default_timeout(WAIT_MS)
    await context.expose_binding("__sohbetCsp", lambda _source, text: watch.csp.append(text))
    await context.add_init_script(CSP_PROBE)
    page = await context.new_page()
    watch.attach(page)
    return context, page, watch


async def start_chat(page: Page, base_url: str, name: str) -> str:
    """Fill the start form like a visitor; return the conversation id the chat page shows."""
    await page.goto(base_url + "/")
    await page.locator("#visitor-name").fill(name)
    await page.locator("#start-form button[type=submit]").click()
    chat = page.locator("#conversation[data-chat-id]")
    await expect(chat).to_be_visible()
    cid = await chat.get_attribute("data-chat-id")
    assert cid
    return cid


async def admin_sign_in(page: Page, server: Server) -> None:
    """The real two-step sign-in: password, then the code the server log shows."""
    await page.goto(server.url + "/admin")
    await page.locator("input[name=password]").fill(ADMIN_PASSWORD)
    await page.locator("form[action='/admin/login'] button[type=submit]").click()
    await page.wait_for_url("**/admin/code")
    await page.locator("input[name=code]").fill(server.last_login_code())
    await page.locator("form[action='/admin/verify'] button[type=submit]").click()
    await page.wait_for_url("**/admin")
    await expect(page.locator("#conversation-list")).to_be_attached()


async def admin_panel(
    browser: Browser,
    server: Server,
    token: str,
    watch: Watch | None = None,
    route: tuple[Callable[[str], bool], Callable[[Route], Awaitable[None]]] | None = None,
) -> Page:
    """A desktop operator panel using a session from the `admin_token` fixture."""
    context, page, _ = await open_page(browser, DESKTOP, watch)
    await sign_in_with(context, server, token)
    if route:
        await page.route(*route)
    await page.goto(server.url + "/admin")
    await expect(page.locator("#conversation-list")).to_be_attached()
    return page


async def sign_in_with(context: BrowserContext, server: Server, token: str) -> None:
    """Give a browser context the operator session from the `admin_token` fixture."""
    await context.add_cookies([{"name": ADMIN_COOKIE, "value": token, "url": server.url}])


async def open_conversation(admin: Page, cid: str) -> None:
    row = admin.locator(f"#conversation-list li.conv[data-chat-id='{cid}']")
    await row.locator("a.conv__link").click()
    await expect(admin.locator(f"#pane #conversation[data-chat-id='{cid}']")).to_be_visible()
    await admin.wait_for_url(f"**/admin/c/{quote(cid)}")


async def send(page: Page | Frame, text: str) -> None:
    """Type a message and press the send button (in a page, or the widget's frame)."""
    box = page.locator("#composer textarea")
    await box.fill(text)
    # The typed text reached the box (a frame whose keyboard was lost fails here, by name).
    await expect(box).to_have_value(text)
    await page.locator("#composer button[type=submit]").click()


async def texts(page: Page) -> list[str]:
    return await page.locator(MESSAGES).all_inner_texts()


async def seqs(page: Page) -> list[int]:
    values = await page.locator("#messages li.msg[data-seq]").evaluate_all(
        "(nodes) => nodes.map((n) => Number(n.dataset.seq))"
    )
    return list(values)


async def close_all(*pages: Page) -> None:
    for page in pages:
        await page.context.close()  # a no-op when the test closed it already


async def visitor_page(
    browser: Browser,
    server: Server,
    token: str,
) -> tuple[Page, Watch]:
    context, page, watch = await open_page(browser, PHONE)
    await context.add_cookies([{"name": VISITOR_COOKIE, "value": token, "url": server.url}])
    await page.goto(server.url + "/")
    await expect(page.locator("#conversation[data-chat-id]")).to_be_visible()
    return page, watch
