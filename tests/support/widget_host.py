"""A sample host site for the widget tests: static shop pages that paste Sohbet's snippet,
served on `localhost` while Sohbet answers on `127.0.0.1` (another site to every browser)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web


def host_page(sohbet: str, title: str, extra: str = "") -> str:
    """One page of the host site with the widget's snippet."""
    return (
        '<!doctype html><html><head><meta name="viewport" content="width=device-width, '
        f'initial-scale=1"><link rel="icon" href="data:,"><title>{title}</title></head><body>'
        f"<h1>{title}</h1><p>Bir mağaza sayfası.</p>{extra}"
        f'<script src="{sohbet}/widget.js" data-greeting="Yardım" data-color="#0f766e" async>'
        "</script></body></html>"
    )


@asynccontextmanager
async def host_sites(sohbet: str, ports: list[int], allowed: str) -> AsyncIterator[None]:
    """Serve `/<name>.html` (titled "Sayfa <name>") on each port of localhost; `framed.html`
    also frames Sohbet directly while claiming to be the `allowed` origin."""

    async def page(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        extra = ""
        if name == "framed":
            extra = f'<iframe id="direct" src="{sohbet}/widget/frame?origin={allowed}"></iframe>'
        return web.Response(
            text=host_page(sohbet, f"Sayfa {name}", extra), content_type="text/html"
        )

    runners = []
    try:
        for port in ports:
            app = web.Application()
            app.router.add_get("/{name}.html", page)
            runner = web.AppRunner(app)
            await runner.setup()
            runners.append(runner)
            await web.TCPSite(runner, "127.0.0.1", port).start()
        yield
    finally:
        for runner in runners:
            await runner.cleanup()
