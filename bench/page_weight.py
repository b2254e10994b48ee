"""The visitor page's first-load weight, as Chromium counts it (bytes on the wire).

    .venv/bin/python bench/page_weight.py [--budget 40960]

Starts a server like the tests do (fresh SQLite), opens a conversation for a new visitor, then
loads `/` once in headless Chromium with an empty cache and sums every response's
`encodedDataLength` from the DevTools protocol: the compressed body plus the response headers,
i.e. what DevTools shows as "transferred". It waits for the page to be idle (Socket.IO
connected) so everything the first load pulls in is counted, and prints one row per resource.
Exits 1 when the total is over the budget (40 KB by default).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.async_api import Browser  # noqa: E402

from tests.support.browser import chromium, phone  # noqa: E402
from tests.support.clients import VISITOR_COOKIE, start_visitor  # noqa: E402
from tests.support.server import scratch_server  # noqa: E402

BUDGET = 40 * 1024
PHONE = phone()


@dataclass
class Weight:
    """Bytes per loaded resource (path -> (type, encoded bytes, content-encoding))."""

    rows: dict[str, tuple[str, int, str]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(size for _, size, _ in self.rows.values())

    def table(self) -> str:
        lines = [f"{'resource':58} {'type':11} {'encoding':8} {'bytes':>7}"]
        for url, (kind, size, encoding) in sorted(self.rows.items(), key=lambda r: -r[1][1]):
            lines.append(f"{url[:58]:58} {kind:11} {encoding or '-':8} {size:7d}")
        lines.append(f"{'total':79} {self.total:7d}  ({self.total / 1024:.1f} KiB)")
        return "\n".join(lines)


async def measure(browser: Browser, base_url: str, visitor_token: str) -> Weight:
    """Load the visitor page once, cold, and count what came over the network."""
    context = await browser.new_context(**PHONE)
    try:
        await context.add_cookies(
            [{"name": VISITOR_COOKIE, "value": visitor_token, "url": base_url}]
        )
        page = await context.new_page()
        cdp = await context.new_cdp_session(page)
        await cdp.send("Network.enable")
        await cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
        seen: dict[str, dict[str, Any]] = {}
        weight = Weight()

        def on_response(event: dict[str, Any]) -> None:
            response = event["response"]
            headers = {k.lower(): v for k, v in response.get("headers", {}).items()}
            seen[event["requestId"]] = {
                "url": response["url"],
                "type": event.get("type", "Other"),
                "encoding": headers.get("content-encoding", ""),
            }

        def on_finished(event: dict[str, Any]) -> None:
            info = seen.get(event["requestId"])
            if info is None:
                return
            parts = urlsplit(info["url"])
            name = parts.path + ("?" + parts.query if parts.query else "")
            if name.startswith("/socket.io/"):
                name = "/socket.io/ (" + parts.query.split("&t=")[0] + ")"
                previous = weight.rows.get(name)
                if previous:
                    size = previous[1] + int(event["encodedDataLength"])
                    weight.rows[name] = (info["type"], size, info["encoding"])
                    return
            weight.rows[name] = (info["type"], int(event["encodedDataLength"]), info["encoding"])

        cdp.on("Network.responseReceived", on_response)
        cdp.on("Network.loadingFinished", on_finished)
        await page.goto(base_url + "/", wait_until="load")
        await page.locator("body[data-socket=up]").wait_for(state="attached", timeout=15000)
        await page.wait_for_load_state("networkidle")
        return weight
    finally:
        await context.close()


async def main(budget: int) -> int:
    async with scratch_server() as server:
        token, _ = await start_visitor(server.url, "Ayşe")
        async with chromium() as browser:
            weight = await measure(browser, server.url, token)
    print(weight.table())
    verdict = "within" if weight.total <= budget else "OVER"
    print(f"budget {budget} bytes: {verdict}")
    return 0 if weight.total <= budget else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=int, default=BUDGET)
    sys.exit(asyncio.run(main(parser.parse_args().budget)))
