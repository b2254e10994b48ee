"""Firefox and WebKitGTK pages for the cross-engine tests, behind one small async interface.

Firefox is Debian's firefox-esr driven over WebDriver BiDi by npm `puppeteer-core` (a Node
process from tests/engines/driver.mjs, one JSON command per line); WebKit is Debian's
WebKitGTK (`WebKitWebDriver` + MiniBrowser) under `xvfb-run`, driven by selenium. Neither
downloads a browser. A page runs `js` bodies (with `return`, promises awaited), clicks and
types like a user, and reports what its console logged as errors where the engine tells.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parents[2]
ENGINES_DIR = ROOT / "tests" / "engines"
FIREFOX = "/usr/bin/firefox-esr"
WEBKIT_DRIVER = "WebKitWebDriver"
MINIBROWSER = "/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser"
# MiniBrowser's toolbar keeps its window at least 447 px wide; this user style lets it shrink
# to a phone's width (the page itself is untouched).
MINIBROWSER_GTK_CSS = (
    "window * { min-width: 0; min-height: 0; padding: 0; margin: 0; font-size: 1px; }\n"
)


def firefox_missing() -> str | None:
    """Why the Firefox tests cannot run here, or None."""
    if not Path(FIREFOX).exists():
        return "firefox-esr is not installed (scripts/test-services.sh installs it)"
    if not (ENGINES_DIR / "node_modules" / "puppeteer-core").exists():
        return "tests/engines has no node_modules (scripts/test-services.sh runs npm ci)"
    return None


def webkit_missing() -> str | None:
    """Why the WebKit tests cannot run here, or None."""
    if shutil.which(WEBKIT_DRIVER) is None or not Path(MINIBROWSER).exists():
        return "webkit2gtk-driver is not installed (scripts/test-services.sh installs it)"
    if shutil.which("xvfb-run") is None:
        return "xvfb is not installed (scripts/test-services.sh installs it)"
    return None


class EnginePage(Protocol):
    """What a journey needs from one browser tab, whatever the engine."""

    engine: str

    async def goto(self, url: str) -> None: ...
    async def reload(self) -> None: ...
    async def resize(self, width: int, height: int) -> None: ...
    async def js(self, body: str, *args: Any) -> Any: ...
    async def click(self, selector: str) -> None: ...
    async def type(self, selector: str, text: str) -> None: ...
    async def upload(self, selector: str, path: Path) -> None: ...
    async def screenshot(self, path: Path) -> None: ...
    async def console_errors(self) -> list[str] | None: ...
    async def close(self) -> None: ...


class Scriptable(Protocol):
    """Anything that runs `js` bodies: a page or one of its frames."""

    engine: str

    async def js(self, body: str, *args: Any) -> Any: ...


async def wait_js(page: Scriptable, body: str, *args: Any, timeout: float = 15) -> Any:
    """Poll a `js` body until it returns something truthy; return that (the page's own timing
    decides when; the ceiling only matters when it never happens)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = await page.js(body, *args)
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{page.engine}: not true within {timeout}s: {body} -> {last!r}")
        await asyncio.sleep(0.1)


# Chromium -----------------------------------------------------------------------------------


class ChromiumPage:
    """A Playwright page in Debian's Chromium (tests/support/browser.py), for tests that run the
    same checks in every engine."""

    engine = "chromium"

    def __init__(self, context: Any, page: Any) -> None:
        self.context = context
        self.page = page
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def _console(self, msg: Any) -> None:
        if msg.type == "error":
            self.errors.append(f"{msg.text} at {msg.location.get('url')}")

    @classmethod
    async def open(cls, browser: Any, width: int, height: int) -> ChromiumPage:
        context = await browser.new_context(viewport={"width": width, "height": height})
        return cls(context, await context.new_page())

    async def goto(self, url: str) -> None:
        await self.page.goto(url)

    async def reload(self) -> None:
        await self.page.reload()

    async def resize(self, width: int, height: int) -> None:
        await self.page.set_viewport_size({"width": width, "height": height})

    async def js(self, body: str, *args: Any) -> Any:
        source = f"(args) => (async function () {{ {body} }}).apply(null, args)"
        return await self.page.evaluate(source, list(args))

    async def click(self, selector: str) -> None:
        await self.page.locator(selector).click()

    async def type(self, selector: str, text: str) -> None:
        await self.page.locator(selector).press_sequentially(text)

    async def upload(self, selector: str, path: Path) -> None:
        await self.page.locator(selector).set_input_files(str(path))

    async def screenshot(self, path: Path) -> None:
        await self.page.screenshot(path=str(path))

    async def console_errors(self) -> list[str] | None:
        errors, self.errors = self.errors, []
        return errors

    async def close(self) -> None:
        await self.context.close()


# Firefox ------------------------------------------------------------------------------------


class FirefoxDriver:
    """One firefox-esr, driven by tests/engines/driver.mjs over stdin/stdout."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()

    async def send(self, cmd: str, timeout: float = 60, **params: Any) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        async with self._lock:
            ident = next(self._ids)
            line = json.dumps({"id": ident, "cmd": cmd, **params}) + "\n"
            self.proc.stdin.write(line.encode())
            await self.proc.stdin.drain()
            raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not raw:
            raise RuntimeError(f"the Firefox driver exited ({self.proc.returncode})")
        answer = json.loads(raw)
        assert answer["id"] == ident, answer
        if not answer["ok"]:
            raise AssertionError(f"firefox: {cmd} failed: {answer['error']}")
        return answer["value"]

    async def new_page(self, width: int, height: int) -> FirefoxPage:
        return FirefoxPage(self, await self.send("open", width=width, height=height))


class FirefoxFrame:
    """The frame of a Firefox page whose URL contains `part` (a cross-site iframe such as the
    widget's), with the page's `js`, `click` and `type`."""

    engine = "firefox"

    def __init__(self, page: FirefoxPage, part: str) -> None:
        self.page = page
        self.part = part

    async def js(self, body: str, *args: Any) -> Any:
        return await self.page.driver.send(
            "js", page=self.page.ident, body=body, args=list(args), frame=self.part
        )

    async def click(self, selector: str) -> None:
        await self.page.driver.send(
            "click", page=self.page.ident, selector=selector, frame=self.part
        )

    async def type(self, selector: str, text: str) -> None:
        await self.page.driver.send(
            "type", page=self.page.ident, selector=selector, text=text, frame=self.part
        )


class FirefoxPage:
    engine = "firefox"

    def __init__(self, driver: FirefoxDriver, ident: int) -> None:
        self.driver = driver
        self.ident = ident

    async def goto(self, url: str) -> None:
        await self.driver.send("goto", page=self.ident, url=url)

    async def reload(self) -> None:
        await self.driver.send("reload", page=self.ident)

    async def resize(self, width: int, height: int) -> None:
        await self.driver.send("resize", page=self.ident, width=width, height=height)

    async def js(self, body: str, *args: Any) -> Any:
        return await self.driver.send("js", page=self.ident, body=body, args=list(args))

    async def click(self, selector: str) -> None:
        await self.driver.send("click", page=self.ident, selector=selector)

    async def type(self, selector: str, text: str) -> None:
        await self.driver.send("type", page=self.ident, selector=selector, text=text)

    async def upload(self, selector: str, path: Path) -> None:
        await self.driver.send("upload", page=self.ident, selector=selector, path=str(path))

    async def screenshot(self, path: Path) -> None:
        await self.driver.send("screenshot", page=self.ident, path=str(path))

    async def console_errors(self) -> list[str] | None:
        return list(await self.driver.send("errors", page=self.ident))

    async def close(self) -> None:
        await self.driver.send("close", page=self.ident)

    def frame(self, part: str) -> FirefoxFrame:
        """This page's frame whose URL contains `part`."""
        return FirefoxFrame(self, part)


@asynccontextmanager
async def firefox(prefs: dict[str, Any] | None = None) -> AsyncIterator[FirefoxDriver]:
    """A headless firefox-esr for the duration of the block, with these preferences on top of
    tests/engines/driver.mjs's own."""
    env = {
        **os.environ,
        "FIREFOX": FIREFOX,
        "PUPPETEER_SKIP_DOWNLOAD": "1",
        "SOHBET_FIREFOX_PREFS": json.dumps(prefs or {}),
    }
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(ENGINES_DIR / "driver.mjs"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=ENGINES_DIR,
        env=env,
        start_new_session=True,
    )
    driver = FirefoxDriver(proc)
    browser_pid: int | None = None
    try:
        await driver.send("version", timeout=120)  # the browser is up
        browser_pid = await driver.send("pid")
        yield driver
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        if browser_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(browser_pid, signal.SIGKILL)  # gone already when closed cleanly


# WebKit -------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WebKitPage:
    """One MiniBrowser window (a WebDriver session of its own: separate cookies and storage)."""

    engine = "webkit"

    def __init__(self, driver: Any, chrome_height: int) -> None:
        self.driver = driver
        self.chrome_height = chrome_height

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def goto(self, url: str) -> None:
        await self._run(self.driver.get, url)

    async def reload(self) -> None:
        await self._run(self.driver.refresh)

    async def resize(self, width: int, height: int) -> None:
        await self._run(self.driver.set_window_size, width, height + self.chrome_height)

    async def js(self, body: str, *args: Any) -> Any:
        return await self._run(self.driver.execute_script, body, *args)

    def _element(self, selector: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, selector)

    async def click(self, selector: str) -> None:
        await self._run(lambda: self._element(selector).click())

    async def type(self, selector: str, text: str) -> None:
        await self._run(lambda: self._element(selector).send_keys(text))

    async def upload(self, selector: str, path: Path) -> None:
        await self._run(lambda: self._element(selector).send_keys(str(path)))

    async def screenshot(self, path: Path) -> None:
        await self._run(self.driver.save_screenshot, str(path))

    async def console_errors(self) -> list[str] | None:
        return None  # WebKitWebDriver offers neither logs nor BiDi

    async def close(self) -> None:
        await self._run(self.driver.quit)


class WebKitDriver:
    """One `WebKitWebDriver` under `xvfb-run`; each page is a MiniBrowser session."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _session(self) -> Any:
        from selenium import webdriver
        from selenium.webdriver.remote.file_detector import UselessFileDetector

        options = webdriver.WebKitGTKOptions()
        options.binary_location = MINIBROWSER
        for arg in (
            "--automation",
            "--enable-media-stream=true",
            "--enable-mock-capture-devices=true",
            "--autoplay-policy=allow",
        ):
            options.add_argument(arg)
        with warnings.catch_warnings():
            # selenium's own Remote() path for a browser it has no connection class for
            # (webkitgtk) goes through its deprecated RemoteConnection argument.
            warnings.simplefilter("ignore", DeprecationWarning)
            driver = webdriver.Remote(command_executor=self.url, options=options)
        # The browser runs on this machine: a file input gets the local path as it is (the
        # default detector would upload it to a Selenium Grid endpoint WebKit does not have).
        driver.file_detector = UselessFileDetector()
        return driver

    async def new_page(self, width: int, height: int) -> WebKitPage:
        driver = await asyncio.to_thread(self._session)
        driver.set_window_size(width, height)
        inner = int(driver.execute_script("return window.innerHeight"))
        page = WebKitPage(driver, chrome_height=max(0, height - inner))
        await page.resize(width, height)
        return page


@asynccontextmanager
async def webkit(workdir: Path) -> AsyncIterator[WebKitDriver]:
    """WebKitWebDriver on a virtual X display for the duration of the block."""
    config = workdir / "xdg"
    (config / "gtk-3.0").mkdir(parents=True, exist_ok=True)
    (config / "gtk-3.0" / "gtk.css").write_text(MINIBROWSER_GTK_CSS)
    port = _free_port()
    env = {**os.environ, "XDG_CONFIG_HOME": str(config)}
    with (workdir / "webkit.log").open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            "xvfb-run",
            "-a",
            "-s",
            "-screen 0 1280x1024x24",
            WEBKIT_DRIVER,
            f"--port={port}",
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            if proc.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError((workdir / "webkit.log").read_text(errors="replace"))
            await asyncio.sleep(0.1)
        yield WebKitDriver(f"http://127.0.0.1:{port}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
