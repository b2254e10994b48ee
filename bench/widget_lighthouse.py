"""Lighthouse (mobile preset) on a sample host page with and without the widget's loader.

    npm install --no-save lighthouse        # once, anywhere; or have `lighthouse` on PATH
    LIGHTHOUSE=node_modules/.bin/lighthouse .venv/bin/python -m bench.widget_lighthouse [--runs 3]

Starts a server like the tests do (fresh SQLite) with the sample host site on WIDGET_ORIGINS,
serves that site (a small shop page) from another origin, and runs Lighthouse's default mobile
configuration on the page without and with the one-line snippet, alternating. Prints each
run's performance score, total blocking time and layout shift, and the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
from typing import Any

from aiohttp import web

from bench.lighthouse import lighthouse
from tests.support.server import free_port, scratch_server

SHOP = """<!doctype html><html lang="tr"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="description" content="Örnek mağaza"><link rel="icon" href="data:,">
<title>Örnek Mağaza</title></head>
<body style="font-family:sans-serif;margin:0 auto;max-width:40rem;padding:1rem">
<h1>Örnek Mağaza</h1>{paragraphs}{snippet}</body></html>"""
PARAGRAPH = "<p>El yapımı seramik kupalar, tabaklar ve vazolar; her biri tek tek fırınlanır.</p>"


async def main(runs: int, binary: str) -> None:
    port = free_port()
    host = f"http://localhost:{port}"
    async with scratch_server({"WIDGET_ORIGINS": host}) as server:
        snippet = f'<script src="{server.url}/widget.js" data-greeting="Yardım" async></script>'

        async def page(request: web.Request) -> web.Response:
            with_widget = request.match_info["name"] == "widget"
            body = SHOP.format(paragraphs=PARAGRAPH * 12, snippet=snippet if with_widget else "")
            return web.Response(text=body, content_type="text/html")

        app = web.Application()
        app.router.add_get("/{name}.html", page)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        results: dict[str, list[dict[str, Any]]] = {"plain": [], "widget": []}
        try:
            for _ in range(runs):
                for name in results:
                    report = await asyncio.to_thread(
                        lighthouse, binary, f"{host}/{name}.html", "--only-categories=performance"
                    )
                    results[name].append(report)
        finally:
            await runner.cleanup()
    print(f"Lighthouse {results['plain'][0]['lighthouseVersion']}, {runs} runs each")
    for name, reports in results.items():
        scores = [round(r["categories"]["performance"]["score"] * 100) for r in reports]
        tbt = [r["audits"]["total-blocking-time"]["numericValue"] for r in reports]
        cls = [r["audits"]["cumulative-layout-shift"]["numericValue"] for r in reports]
        lcp = [r["audits"]["largest-contentful-paint"]["numericValue"] for r in reports]
        print(
            f"{name:>7}: performance {scores} median {statistics.median(scores)}; "
            f"TBT median {statistics.median(tbt):.0f} ms; LCP median "
            f"{statistics.median(lcp):.0f} ms; CLS max {max(cls):.3f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.runs, os.environ.get("LIGHTHOUSE", "lighthouse")))
