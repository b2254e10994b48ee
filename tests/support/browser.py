"""How Debian's Chromium is launched headless here (never a Playwright-downloaded browser).

The module-scoped `browser` fixture is registered for every test module by tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from playwright.async_api import Browser, async_playwright

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling out on a closed network.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]


@asynccontextmanager
async def chromium(args: list[str] = CHROMIUM_ARGS) -> AsyncIterator[Browser]:
    """Debian's Chromium under Playwright, closed afterwards."""
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=args)
        yield browser
        await browser.close()


def phone(width: int = 375, height: int = 812, scale: int = 2, **extra: Any) -> dict[str, Any]:
    """Context options of a Turkish visitor's phone (mobile viewport, touch)."""
    return {
        "viewport": {"width": width, "height": height},
        "device_scale_factor": scale,
        "is_mobile": True,
        "has_touch": True,
        "locale": "tr-TR",
        **extra,
    }


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    """One Chromium per module; each test opens its own contexts (cookie jars, storage)."""
    async with chromium() as launched:
        yield launched
