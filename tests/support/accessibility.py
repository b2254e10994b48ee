"""axe-core (tests/support/vendor/, npm 4.14.1) run in a Chromium page, injected over DevTools so
the page's CSP does not apply."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from playwright.async_api import Page

AXE = (Path(__file__).parent / "vendor" / "axe-core-4.14.1.min.js").read_text()
# Rules axe reports as serious or critical fail the test; moderate/minor are printed only.
BLOCKING = {"serious", "critical"}


async def axe_violations(
    page: Page, within: str | None = None, paused_clock: bool = False
) -> list[dict[str, Any]]:
    """Every axe violation in the page, or in the element `within` selects. With
    `paused_clock` (a page whose Playwright clock is paused), the clock is stepped a
    millisecond at a time while axe runs: axe waits on timers of its own."""
    await page.evaluate(AXE)
    await page.evaluate(
        """(within) => {
            window.__axeResult = null;
            const where = within ? document.querySelector(within) : document;
            // axe leaves text the colour of its background (1:1) "to review", as if it were
            // hidden on purpose: here that is a violation (a white "Close" on white).
            const sameColour = (n) => n.any.some((c) => c.data?.messageKey === "equalRatio");
            axe.run(where, { resultTypes: ["violations", "incomplete"] }).then((r) => {
                const unseen = r.incomplete
                    .filter((v) => v.id === "color-contrast")
                    .map((v) => ({ ...v, impact: "serious", nodes: v.nodes.filter(sameColour) }))
                    .filter((v) => v.nodes.length);
                window.__axeResult = [...r.violations, ...unseen].map((v) => ({
                    id: v.id, impact: v.impact, help: v.help,
                    nodes: v.nodes.map((n) => n.target.join(" ") + " :: " + n.failureSummary),
                }));
            });
        }""",
        within,
    )
    deadline = asyncio.get_running_loop().time() + 60
    while (result := await page.evaluate("window.__axeResult")) is None:
        assert asyncio.get_running_loop().time() < deadline, "axe did not finish"
        if paused_clock:
            await page.clock.run_for(1)
        else:
            await asyncio.sleep(0.05)
    return list(result)


async def assert_accessible(
    page: Page, what: str, within: str | None = None, paused_clock: bool = False
) -> None:
    """No serious or critical axe violation (the others are printed)."""
    violations = await axe_violations(page, within, paused_clock)
    blocking = [v for v in violations if v["impact"] in BLOCKING]
    for v in violations:
        print(what, v["impact"], v["id"], v["help"], v["nodes"][:3])
    assert blocking == [], json.dumps(blocking, ensure_ascii=False, indent=1)
