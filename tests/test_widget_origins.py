"""The widget's sites, changed by the owner in the panel, and the operator's state on the closed
launcher, in Debian's Chromium with third-party cookies blocked: Sohbet on `127.0.0.1`, host
sites on `localhost` ports (another site to the browser). The module's server starts with one
site on WIDGET_ORIGINS; the other is added and removed in the panel.

Runs on SQLite only: the two-process view of the same changes is tests/test_widget_scaleout.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect

from tests.support.accessibility import assert_accessible
from tests.support.browser import CHROMIUM_ARGS, chromium
from tests.support.clients import ADMIN_COOKIE, admin_csrf, admin_login, admin_peer, panel_action
from tests.support.pages import DESKTOP, admin_panel, open_page
from tests.support.server import Server, free_port, query, sqlite_server
from tests.support.widget_host import host_sites

pytestmark = pytest.mark.browser

HOST_PORT = free_port()
NEW_PORT = free_port()
HOST = f"http://localhost:{HOST_PORT}"
NEW = f"http://localhost:{NEW_PORT}"
NO_THIRD_PARTY_COOKIES = [*CHROMIUM_ARGS, "--test-third-party-cookie-phaseout"]
# The launcher asks again this often (the product's own setting, small for the test); a change
# shows within it, plus the time a page takes to load and ask.
POLL_SECONDS = 2
WITHIN_MS = (POLL_SECONDS + 8) * 1000


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium(NO_THIRD_PARTY_COOKIES) as launched:
        yield launched


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    env = {"WIDGET_ORIGINS": HOST, "WIDGET_POLL_SECONDS": str(POLL_SECONDS)}
    async with sqlite_server(tmp_path_factory.mktemp("widget-origins"), env) as srv:
        async with host_sites(srv.url, [HOST_PORT, NEW_PORT], allowed=HOST):
            yield srv


@pytest.fixture(scope="module")
async def admin_token(server: Server) -> str:
    return await admin_login(server)


async def saved_origins(server: Server) -> list[str] | None:
    rows = await query(server, "SELECT value FROM setting WHERE key = 'widget_origins'")
    return json.loads(rows[0][0]) if rows else None


async def frame_headers(server: Server, origin: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/widget/frame?origin={origin}") as r:
            return r.status, r.headers["Content-Security-Policy"]


async def owner_page(browser: Browser, server: Server, token: str) -> Page:
    admin = await admin_panel(browser, server, token)
    await admin.locator("#widget-link").click()
    await expect(admin.locator("#origin-form")).to_be_visible()
    return admin


async def test_an_origin_added_in_the_panel_embeds_at_once_and_a_removed_one_is_refused(
    browser: Browser, server: Server, admin_token: str
) -> None:
    before = await saved_origins(server)
    admin = await owner_page(browser, server, admin_token)
    context, page, watch = await open_page(browser, DESKTOP)
    try:
        # Not on the list yet: the loader shows nothing, the frame refuses the site.
        await page.goto(f"{NEW}/a.html")
        await page.wait_for_load_state("load")
        await expect(page.locator("#sohbet-launcher")).to_have_count(0)
        assert await page.evaluate("typeof window.Sohbet") == "undefined"
        status, csp = await frame_headers(server, NEW)
        assert status == 403 and NEW not in csp

        # A page's address is refused, with why, in the form, which keeps what was typed.
        await admin.locator("#origin-input").fill(f"{NEW}/sepet")
        await admin.locator("#origin-form button[type=submit]").click()
        await expect(admin.locator("#origin-error")).to_contain_text(
            f"Sayfa olmadan yalnızca sitenin adresi: {NEW} ("
        )
        await expect(admin.locator("#origin-input")).to_have_attribute("aria-invalid", "true")
        await expect(admin.locator("#origin-input")).to_have_value(f"{NEW}/sepet")
        await expect(admin.locator("#widget-origins code")).to_have_text([HOST])
        await assert_accessible(admin, "widget owner page, refused address")
        assert await saved_origins(server) == before

        # The owner adds it (typed as people type it: upper case, a trailing slash).
        await admin.locator("#origin-input").fill(f"  HTTP://LOCALHOST:{NEW_PORT}/ ")
        await admin.locator("#origin-form button[type=submit]").click()
        await expect(admin.locator("#widget-origins code")).to_have_text([HOST, NEW])
        assert await saved_origins(server) == [HOST, NEW]

        # At once: the next page view gets the bubble, and the chat opens in its frame.
        await page.reload()
        launcher = page.locator("#sohbet-launcher")
        await expect(launcher).to_be_visible()
        await launcher.click()
        element = await page.locator("#sohbet-panel iframe").element_handle()
        frame = await element.content_frame()
        assert frame is not None
        await expect(frame.locator("#start-form")).to_be_visible()
        status, csp = await frame_headers(server, NEW)
        assert status == 200 and f"frame-ancestors {HOST} {NEW}" in csp
        watch.assert_clean()

        # The owner removes it: the open page loses its bubble at its next check, a new page
        # view gets nothing, and the frame may no longer be put on that site.
        await admin.get_by_role("button", name=f"{NEW} adresini kaldır").click()
        await expect(admin.locator("#widget-origins code")).to_have_text([HOST])
        assert await saved_origins(server) == [HOST]
        await expect(launcher).to_have_count(0, timeout=WITHIN_MS)
        await expect(page.locator("#sohbet-panel")).to_have_count(0)
        await page.reload()
        await page.wait_for_load_state("load")
        await expect(launcher).to_have_count(0)
        status, csp = await frame_headers(server, NEW)
        assert status == 403 and NEW not in csp
        status, csp = await frame_headers(server, HOST)
        assert status == 200 and csp.endswith(f"frame-ancestors {HOST}")
        # The site that stayed keeps its widget.
        await page.goto(f"{HOST}/a.html")
        await expect(launcher).to_be_visible()
    finally:
        await context.close()
        await admin.context.close()


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("", "Sitenin adresini yazın"),
        ("shop.example.com", "Adres https:// (ya da http://) ile başlamalı"),
        ("ftp://shop.example.com", "Adres https:// (ya da http://) ile başlamalı"),
        ("https://*.example.com", "Joker karakter (*) kullanılamaz"),
        (
            "https://shop.example.com/sepet?x=1",
            "Sayfa olmadan yalnızca sitenin adresi: https://shop.example.com (",
        ),
        ("https://user@shop.example.com", "Bu bir site adresi değil"),
        ("https://shop..example.com", "Bu bir site adresi değil"),
        ("https://shop.example.com:70000", "Port 1 ile 65535 arasında"),
        (f"https://{'a' * 200}.com", "Bu adres çok uzun (en fazla 200 karakter)"),
        (HOST, f"{HOST} zaten listede."),
        (f"{HOST}/", f"{HOST} zaten listede."),
    ],
)
async def test_an_origin_that_cant_be_added_is_refused_with_why_and_nothing_changes(
    server: Server, admin_token: str, typed: str, message: str
) -> None:
    before = await saved_origins(server)
    csrf = await admin_csrf(server.url, admin_token)
    status, page = await panel_action(
        server.url, admin_token, csrf, "/admin/widget/origins", {"origin": typed}
    )
    assert status == 400, page
    assert 'role="alert" id="origin-error"' in page and message in page, page
    assert await saved_origins(server) == before
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/widget/status", headers={"Origin": HOST}) as r:
            assert r.status == 200


async def test_removing_what_is_not_listed_or_without_the_csrf_token_changes_nothing(
    server: Server, admin_token: str
) -> None:
    before = await saved_origins(server)
    csrf = await admin_csrf(server.url, admin_token)
    status, page = await panel_action(
        server.url, admin_token, csrf, "/admin/widget/origins/remove", {"origin": NEW}
    )
    assert status == 404 and f"{NEW} listede yok." in page, page
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        cookie = {"Cookie": f"{ADMIN_COOKIE}={admin_token}"}
        form = {"origin": HOST, "csrf_token": "forged"}
        async with http.post(
            server.url + "/admin/widget/origins/remove", data=form, headers=cookie
        ) as r:
            assert r.status == 403
        # Signed out: to the sign-in page, nothing saved.
        async with http.post(
            server.url + "/admin/widget/origins", data={"origin": NEW}, allow_redirects=False
        ) as r:
            assert r.status == 303 and r.headers["Location"] == "/admin"
    assert await saved_origins(server) == before
    status, csp = await frame_headers(server, HOST)
    assert status == 200 and HOST in csp


async def test_the_closed_launcher_shows_whether_an_operator_is_online(
    browser: Browser, server: Server, admin_token: str
) -> None:
    context, page, watch = await open_page(browser, DESKTOP)
    operator = None
    try:
        await page.goto(f"{HOST}/a.html")
        launcher = page.locator("#sohbet-launcher")
        # No operator socket (other tests' have closed): offline, in the page's language.
        await expect(launcher).to_have_attribute(
            "aria-label", "Yardım — çevrimdışı", timeout=WITHIN_MS
        )
        await expect(launcher).to_have_attribute("data-online", "false")
        operator = await admin_peer(server.url, admin_token)
        await expect(launcher).to_have_attribute(
            "aria-label", "Yardım — çevrimiçi", timeout=WITHIN_MS
        )
        await expect(launcher).to_have_attribute("data-online", "true")
        await assert_accessible(page, "launcher", "#sohbet-launcher")
        # Nothing but the loader and its status so far: no frame, no other script.
        assert [f.url for f in page.frames if "/widget/frame" in f.url] == []
        scripts = await page.evaluate(
            "performance.getEntriesByType('resource').map((e) => e.name)"
            ".filter((u) => u.startsWith(location.protocol + '//127.0.0.1'))"
        )
        assert {s.split("?")[0].rsplit("/", 1)[-1] for s in scripts} == {"widget.js", "status"}
        await operator.close()
        operator = None
        await expect(launcher).to_have_attribute(
            "aria-label", "Yardım — çevrimdışı", timeout=WITHIN_MS
        )
        await expect(launcher).to_have_attribute("data-online", "false")
        watch.assert_clean()
    finally:
        if operator is not None:
            await operator.close()
        await context.close()
