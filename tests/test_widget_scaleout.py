"""The widget's sites and the operator's state, on two processes of one deployment (one
PostgreSQL, one Redis): what the owner saves on one process counts on the other within the
list's cache lifetime (app/widget/origins.py), and the launcher's status on either process
sees an operator connected to the other."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from app.widget.origins import TTL_SECONDS
from tests.support.clients import admin_csrf, admin_login, admin_peer, panel_action
from tests.support.server import Server, query, redis_pair

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

HOST = "https://shop.example.com"
NEW = "https://blog.example.com"
# A change on one process reaches the other when its cached list expires; the margin is for
# a loaded machine's slow requests.
PROPAGATION = TTL_SECONDS + 3


@pytest.fixture(scope="module")
async def pair(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Server, Server]]:
    env = {"WIDGET_ORIGINS": HOST}
    async with redis_pair(tmp_path_factory.mktemp("widget-scaleout"), env) as servers:
        yield servers


async def status(server: Server, origin: str) -> dict[str, object]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/widget/status", headers={"Origin": origin}) as r:
            assert r.status == 200
            answer: dict[str, object] = await r.json()
            return answer


async def frame_ancestors(server: Server, origin: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/widget/frame?origin={origin}") as r:
            return r.status, r.headers["Content-Security-Policy"].rsplit("frame-ancestors ", 1)[1]


async def within(seconds: float, check: Callable[[], Awaitable[bool]], what: str) -> float:
    """Ask `check` until it holds; how long that took (failing after `seconds`)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not await check():
        assert loop.time() - start < seconds, f"{what} after {seconds} s"
        await asyncio.sleep(0.05)
    return loop.time() - start


async def test_a_site_saved_on_one_process_counts_on_the_other(
    pair: tuple[Server, Server],
) -> None:
    first, second = pair
    token = await admin_login(first)
    assert (await status(second, NEW))["ok"] is False
    assert await frame_ancestors(second, HOST) == (200, HOST)

    csrf = await admin_csrf(first.url, token)
    code, page = await panel_action(
        first.url, token, csrf, "/admin/widget/origins", {"origin": NEW}
    )
    assert code == 200 and f"<code>{NEW}</code>" in page, page
    rows = await query(first, "SELECT value FROM setting WHERE key = 'widget_origins'")
    assert json.loads(rows[0][0]) == [HOST, NEW]
    # The process that saved it: at once.
    assert (await status(first, NEW))["ok"] is True
    assert await frame_ancestors(first, NEW) == (200, f"{HOST} {NEW}")

    async def second_allows() -> bool:
        return (await status(second, NEW))["ok"] is True

    took = await within(PROPAGATION, second_allows, "the other process still refuses the site")
    print(f"added on one process, seen on the other after {took:.2f} s")
    assert await frame_ancestors(second, NEW) == (200, f"{HOST} {NEW}")

    # Removed on the second process: the first refuses it as soon as its cache expires.
    csrf = await admin_csrf(second.url, token)
    code, page = await panel_action(
        second.url, token, csrf, "/admin/widget/origins/remove", {"origin": NEW}
    )
    assert code == 200 and f"<code>{NEW}</code>" not in page, page
    assert (await status(second, NEW))["ok"] is False

    async def first_refuses() -> bool:
        return (await status(first, NEW))["ok"] is False

    took = await within(PROPAGATION, first_refuses, "the other process still allows the site")
    print(f"removed on one process, refused on the other after {took:.2f} s")
    code, _ = await frame_ancestors(first, NEW)
    assert code == 403
    assert await frame_ancestors(first, HOST) == (200, HOST)


async def test_the_launcher_status_sees_an_operator_on_the_other_process(
    pair: tuple[Server, Server],
) -> None:
    first, second = pair
    token = await admin_login(first)

    async def online_on(server: Server, expected: bool) -> bool:
        answer = await status(server, HOST)
        return answer["online"] is expected

    async def offline_on_second() -> bool:
        return await online_on(second, False)

    async def online_on_second() -> bool:
        return await online_on(second, True)

    # Presence leaves Redis on the socket's disconnect; a process's stale entries in
    # PRESENCE_TTL_SECONDS (15 s), the bound used here.
    await within(20, offline_on_second, "an operator is still online")
    operator = await admin_peer(first.url, token)
    try:
        await within(20, online_on_second, "the operator on the other process is not seen")
        assert (await status(second, HOST))["label"] == "çevrimiçi"
    finally:
        await operator.close()
    await within(20, offline_on_second, "the operator who left is still seen online")


async def test_two_sites_added_at_once_on_two_processes_are_both_kept(
    pair: tuple[Server, Server],
) -> None:
    """Each save reads the list and writes it back in one transaction with the row locked: two
    at once (two tabs on two processes) both count, neither overwrites the other."""
    first, second = pair
    token = await admin_login(first)
    sites = [f"https://shop{n}.example.com" for n in range(2)]
    forms = [
        (server, await admin_csrf(server.url, token), site)
        for server, site in zip((first, second), sites, strict=True)
    ]
    answers = await asyncio.gather(
        *(
            panel_action(server.url, token, csrf, "/admin/widget/origins", {"origin": site})
            for server, csrf, site in forms
        )
    )
    assert [code for code, _ in answers] == [200, 200], answers
    rows = await query(first, "SELECT value FROM setting WHERE key = 'widget_origins'")
    assert sorted(json.loads(rows[0][0])) == sorted([HOST, *sites])
    for server, csrf, site in forms:
        code, _ = await panel_action(
            server.url, token, csrf, "/admin/widget/origins/remove", {"origin": site}
        )
        assert code == 200
    rows = await query(first, "SELECT value FROM setting WHERE key = 'widget_origins'")
    assert json.loads(rows[0][0]) == [HOST]
