"""The visitor page's first-load weight, as Chromium counts it (bytes on the wire).

`measure` loads `/` once in a fresh context with the cache disabled and sums every response's
`encodedDataLength` from the DevTools protocol: the compressed body plus the response headers,
i.e. what DevTools shows as "transferred". It waits for the page to be idle (Socket.IO
connected) so everything the first load pulls in is counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from playwright.async_api import Browser

from tests.support.browser import phone
from tests.support.clients import VISITOR_COOKIE

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
