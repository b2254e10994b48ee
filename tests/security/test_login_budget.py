"""Login codes are limited per hour (default 5), whatever the browser or address."""

from __future__ import annotations

import aiohttp

from tests.support.server import ADMIN_PASSWORD, Server


async def test_codes_per_hour(server: Server) -> None:
    statuses = []
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        for _ in range(6):
            async with http.post(
                server.url + "/admin/login",
                data={"password": ADMIN_PASSWORD},
                allow_redirects=False,
            ) as r:
                statuses.append(r.status)
                page = await r.text()
    assert statuses == [303] * 5 + [429]
    assert "60" in page
    assert server.log().count("LOGIN CODE") == 5
