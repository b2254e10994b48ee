"""Operator login: password, then a one-time code; sessions, logout, CSRF and limits."""

from __future__ import annotations

import re

import aiohttp

from tests.support.clients import (
    admin_csrf,
    admin_login,
    ask_code,
    redeem_code,
    send_code,
    set_cookie_header,
    start_visitor,
)
from tests.support.server import Server, execute_sql

# Each module gets its own server; this one needs a larger hourly code budget for its cases,
# except the test that checks the budget itself (it uses the default of 5 through a fresh server).
SERVER_ENV = {"LOGIN_CODES_PER_HOUR": "40"}


def jarless() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())


def other_code(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def test_panel_needs_login(server: Server) -> None:
    async with jarless() as http:
        async with http.get(server.url + "/admin") as r:
            page = await r.text()
        assert 'action="/admin/login"' in page and "conversation-list" not in page
        async with http.get(server.url + "/admin/conversations", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/admin"
        async with http.get(
            server.url + "/admin/conversations", headers={"HX-Request": "true"}
        ) as r:
            assert r.status == 401 and r.headers["HX-Redirect"] == "/admin"


async def test_wrong_password_sends_no_code(server: Server) -> None:
    before = server.log().count("LOGIN CODE")
    async with jarless() as http:
        status, challenge, page = await ask_code(http, server.url, "wrong")
    assert status == 400 and challenge is None
    assert "Şifre yanlış" in page or "Wrong password" in page
    assert server.log().count("LOGIN CODE") == before


async def test_code_login_sets_a_strict_session_cookie(server: Server) -> None:
    async with jarless() as http:
        _, challenge, _ = await ask_code(http, server.url)
        assert challenge
        code = server.last_login_code()
        async with send_code(http, server.url, code, f"sohbet_login={challenge}") as r:
            assert r.status == 303
            header = set_cookie_header(r, "sohbet_admin")
        assert "HttpOnly" in header and "SameSite=Lax" in header and "Path=/" in header
        token = re.match(r"sohbet_admin=([^;]+)", header).group(1)  # type: ignore[union-attr]
        async with http.get(
            server.url + "/admin", headers={"Cookie": f"sohbet_admin={token}"}
        ) as r:
            assert "conversation-list" in await r.text()


async def test_code_is_single_use(server: Server) -> None:
    async with jarless() as http:
        _, challenge, _ = await ask_code(http, server.url)
        code = server.last_login_code()
        status, token, _ = await redeem_code(http, server.url, challenge or "", code)
        assert status == 303 and token
        status, token, _ = await redeem_code(http, server.url, challenge or "", code)
        assert status == 400 and token is None


async def test_code_only_works_for_the_browser_that_asked(server: Server) -> None:
    async with jarless() as http:
        _, challenge, _ = await ask_code(http, server.url)
        code = server.last_login_code()
        status, token, _ = await redeem_code(http, server.url, "someone-elses-challenge", code)
        assert status == 400 and token is None
        status, token, _ = await redeem_code(http, server.url, challenge or "", code)
        assert status == 303 and token


async def test_five_wrong_tries_burn_the_code(server: Server) -> None:
    async with jarless() as http:
        _, challenge, _ = await ask_code(http, server.url)
        code = server.last_login_code()
        statuses = [
            (await redeem_code(http, server.url, challenge or "", other_code(code)))[0]
            for _ in range(5)
        ]
        assert statuses == [400, 400, 400, 400, 429]
        status, token, page = await redeem_code(http, server.url, challenge or "", code)
        assert status == 429 and token is None, "the right code after 5 wrong tries is refused"
        assert "yeni bir kod" in page.lower() or "new one" in page.lower()


async def test_expired_code_is_refused(server: Server) -> None:
    async with jarless() as http:
        _, challenge, _ = await ask_code(http, server.url)
        code = server.last_login_code()
        await execute_sql(
            server,
            "UPDATE login_code SET expires_at = '2000-01-01 00:00:00+00:00' WHERE used_at IS NULL",
        )
        status, token, _ = await redeem_code(http, server.url, challenge or "", code)
        assert status == 400 and token is None


async def test_logout_invalidates_the_session_everywhere(server: Server) -> None:
    token = await admin_login(server)
    csrf = await admin_csrf(server.url, token)
    cookie = {"Cookie": f"sohbet_admin={token}"}
    async with jarless() as http:
        async with http.post(
            server.url + "/admin/logout", headers=cookie, allow_redirects=False
        ) as r:
            assert r.status == 403, "logout needs the CSRF token too"
        async with http.post(
            server.url + "/admin/logout",
            data={"csrf_token": csrf},
            headers=cookie,
            allow_redirects=False,
        ) as r:
            assert r.status == 303
        async with http.get(server.url + "/admin", headers=cookie) as r:
            assert 'action="/admin/login"' in await r.text(), "the kept cookie is worthless"


async def test_sessions_expire(server: Server) -> None:
    token = await admin_login(server)
    await execute_sql(server, "UPDATE admin_session SET expires_at = '2000-01-01 00:00:00+00:00'")
    async with jarless() as http:
        async with http.get(
            server.url + "/admin", headers={"Cookie": f"sohbet_admin={token}"}
        ) as r:
            assert 'action="/admin/login"' in await r.text()


async def test_cross_site_post_is_refused(server: Server) -> None:
    token = await admin_login(server)
    csrf = await admin_csrf(server.url, token)
    _, cid = await start_visitor(server.url, "Csrf")
    async with jarless() as http:
        async with http.post(
            f"{server.url}/admin/c/{cid}/delete",
            headers={
                "Cookie": f"sohbet_admin={token}",
                "X-CSRF-Token": csrf,
                "Origin": "https://evil.example",
            },
        ) as r:
            assert r.status == 403
        async with http.get(
            f"{server.url}/admin/c/{cid}", headers={"Cookie": f"sohbet_admin={token}"}
        ) as r:
            assert r.status == 200, "the conversation is still there"


async def test_password_guessing_is_rate_limited(server: Server) -> None:
    async with jarless() as http:
        # test_wrong_password_sends_no_code already spent one of the 10 wrong tries.
        statuses = [(await ask_code(http, server.url, f"guess-{i}"))[0] for i in range(11)]
        assert statuses == [400] * 9 + [429, 429]
        status, challenge, page = await ask_code(http, server.url)
    assert status == 429 and challenge is None, "blocked even with the right password, for now"
    assert "dakika" in page or "minutes" in page
