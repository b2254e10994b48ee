"""The visitor page's first-load weight, as Chromium counts it (bytes on the wire).

    .venv/bin/python -m bench.page_weight [--budget 40960]

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

from tests.support.browser import chromium
from tests.support.clients import start_visitor
from tests.support.page_weight import BUDGET, measure
from tests.support.server import scratch_server


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
