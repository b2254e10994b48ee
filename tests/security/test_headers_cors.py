"""Headers, CORS and cross-site WebSocket hijacking: what a foreign site can and cannot do."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.security.attack import SUITE_ENV, handshake, visitor
from tests.support.clients import (
    ADMIN_COOKIE,
    VISITOR_COOKIE,
    jarless,
    send_code,
    set_cookie_header,
)
from tests.support.server import Server, sqlite_server

ALLOWED = "https://shop.example"
EVIL = "https://evil.example"
SERVER_ENV = {**SUITE_ENV, "ALLOWED_ORIGINS": ALLOWED, "FRAME_ANCESTORS": "'self'"}


async def pages(server: Server, admin_token: str) -> dict[str, tuple[int, dict[str, str], str]]:
    """Every kind of response: pages, partials, static, errors, JSON."""
    token, cid = await visitor(server, "Header")
    cookies = {
        "visitor": f"{VISITOR_COOKIE}={token}",
        "admin": f"{ADMIN_COOKIE}={admin_token}",
        "none": "",
    }
    targets = [
        ("none", "/"),
        ("visitor", "/"),
        ("visitor", "/chat/older?before=5"),
        ("none", "/admin"),
        ("admin", "/admin"),
        ("admin", f"/admin/c/{cid}"),
        ("admin", "/admin/conversations"),
        ("admin", "/test"),
        ("admin", "/api/test/runs"),
        ("none", "/health"),
        ("none", "/static/css/app.css"),
        ("none", "/no/such/page"),
    ]
    out = {}
    async with jarless() as http:
        for who, path in targets:
            async with http.get(server.url + path, headers={"Cookie": cookies[who]}) as r:
                out[f"{who} {path}"] = (r.status, dict(r.headers), await r.text())
    return out


async def test_security_headers_on_every_response(server: Server, admin_token: str) -> None:
    """Input: each kind of response. Safe: CSP (script-src 'self', object-src 'none', base-uri
    'none', frame-ancestors from FRAME_ANCESTORS), nosniff and a Referrer-Policy on all."""
    for label, (status, headers, _) in (await pages(server, admin_token)).items():
        assert status in (200, 404), label
        csp = headers.get("Content-Security-Policy", "")
        directives = {d.split()[0]: d.split()[1:] for d in csp.split("; ") if d}
        assert directives.get("script-src") == ["'self'"], (label, csp)
        assert directives.get("object-src") == ["'none'"], (label, csp)
        assert directives.get("base-uri") == ["'none'"], (label, csp)
        assert directives.get("frame-ancestors") == ["'self'"], (label, csp)
        assert headers.get("X-Content-Type-Options") == "nosniff", label
        assert headers.get("Referrer-Policy") in {"same-origin", "no-referrer"}, label


async def test_no_inline_script_or_handler_in_any_page(server: Server, admin_token: str) -> None:
    """Input: every HTML page and partial. Safe: no <script> without src, no on* attribute,
    no javascript: URL (the CSP would block them; the page must not need them)."""
    checked = 0
    for label, (_, headers, body) in (await pages(server, admin_token)).items():
        if not headers.get("Content-Type", "").startswith("text/html"):
            continue
        checked += 1
        for tag in re.findall(r"<script\b[^>]*>", body, re.I):
            assert "src=" in tag, (label, tag)
        assert not re.search(r"<[^>]+\son[a-z]+\s*=", body, re.I), label
        assert "javascript:" not in body.lower(), label
    assert checked >= 8


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_foreign_origin_handshake_with_admin_cookie_is_refused(
    server: Server, admin_token: str, transport: str
) -> None:
    """Input: a Socket.IO handshake from https://evil.example carrying the operator's cookie
    (what a page on another site would make the operator's browser send). Safe: refused."""
    cookie = f"{ADMIN_COOKIE}={admin_token}"
    assert not await handshake(server.url, cookie, origin=EVIL, transport=transport)
    # The same cookie from the site itself, or from an allowed origin, connects.
    for origin in (server.url, ALLOWED):
        assert await handshake(server.url, cookie, origin=origin, transport=transport), origin


async def test_foreign_origin_handshake_with_visitor_cookie_is_refused(server: Server) -> None:
    """Input: a handshake from a foreign origin with a visitor's cookie, and one whose Origin
    only starts like the site's. Safe: both refused."""
    token, _ = await visitor(server, "Hijack")
    cookie = f"{VISITOR_COOKIE}={token}"
    for origin in (EVIL, server.url + ".evil.example", "null"):
        assert not await handshake(server.url, cookie, origin=origin), origin


async def test_cors_allow_list_for_http(server: Server) -> None:
    """Input: reads and preflights from an allowed and a foreign origin. Safe: only the allowed
    origin gets Access-Control-Allow-Origin (with credentials); never '*'."""
    async with jarless() as http:
        for origin, allowed in ((ALLOWED, True), (EVIL, False)):
            async with http.get(server.url + "/health", headers={"Origin": origin}) as r:
                got = r.headers.get("Access-Control-Allow-Origin")
                assert got == (origin if allowed else None), (origin, got)
                assert "Origin" in r.headers.get("Vary", "")
            async with http.options(
                server.url + "/admin/logout",
                headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
            ) as r:
                assert r.status in (200, 204)
                assert ("Access-Control-Allow-Methods" in r.headers) is allowed
                assert r.headers.get("Access-Control-Allow-Origin") == (origin if allowed else None)


async def test_cross_origin_form_posts_are_refused(server: Server, admin_token: str) -> None:
    """Input: form POSTs from a foreign origin to the start form, the login and an admin action
    carrying the operator's cookie. Safe: 403 and nothing happens."""
    _, cid = await visitor(server, "Target")
    async with jarless() as http:
        for path, data, cookie in (
            ("/start", {"name": "Forged"}, ""),
            ("/admin/login", {"password": "x"}, ""),
            (f"/admin/c/{cid}/delete", {}, f"{ADMIN_COOKIE}={admin_token}"),
        ):
            async with http.post(
                server.url + path,
                data=data,
                headers={"Origin": EVIL, "Cookie": cookie},
                allow_redirects=False,
            ) as r:
                assert r.status == 403, path
        async with http.get(
            server.url + f"/admin/c/{cid}", headers={"Cookie": f"{ADMIN_COOKIE}={admin_token}"}
        ) as r:
            assert r.status == 200, "the conversation is still there"


async def test_cookies_over_https_are_host_prefixed_and_secure(tmp_path: Path) -> None:
    """Input: a server behind HTTPS (COOKIE_SECURE=1). Safe: the visitor and admin cookies are
    `__Host-` names with Secure, HttpOnly, SameSite, Path=/ and no Domain; the admin cookie
    lives ADMIN_SESSION_HOURS, not Quart's 31 days; the unprefixed names are not read."""
    env = {**SUITE_ENV, "COOKIE_SECURE": "1", "ADMIN_SESSION_HOURS": "3"}
    async with sqlite_server(tmp_path, env) as server, jarless() as http:
        async with http.post(
            server.url + "/start", data={"name": "Secure"}, allow_redirects=False
        ) as r:
            visitor_cookie = set_cookie_header(r, "__Host-sohbet_visitor")
        async with http.post(
            server.url + "/admin/login",
            data={"password": "correct horse battery"},
            allow_redirects=False,
        ) as r:
            challenge_raw = set_cookie_header(r, "__Host-sohbet_login")
        challenge = challenge_raw.split(";", 1)[0].split("=", 1)[1]
        code = server.last_login_code()
        async with send_code(http, server.url, code, f"__Host-sohbet_login={challenge}") as r:
            assert r.status == 303
            admin_cookie = set_cookie_header(r, "__Host-sohbet_admin")
        for cookie in (visitor_cookie, challenge_raw, admin_cookie):
            attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
            assert {"secure", "httponly", "samesite", "path"} <= attrs, cookie
            assert "domain" not in attrs and "Path=/" in cookie, cookie
        assert "Max-Age=10800" in admin_cookie, admin_cookie
        # The secure-named cookie is the one the server reads (page and socket).
        token = visitor_cookie.split(";", 1)[0].split("=", 1)[1]
        async with http.get(
            server.url + "/", headers={"Cookie": f"__Host-sohbet_visitor={token}"}
        ) as r:
            assert 'data-chat-id="Secure-' in await r.text()
        assert await handshake(server.url, f"__Host-sohbet_visitor={token}")
        # The plain names (cookies a sibling subdomain could plant) are ignored over HTTPS.
        assert not await handshake(server.url, f"sohbet_visitor={token}")
        session = admin_cookie.split(";", 1)[0].split("=", 1)[1]
        for name, signed_in in (("__Host-sohbet_admin", True), (ADMIN_COOKIE, False)):
            async with http.get(
                server.url + "/admin", headers={"Cookie": f"{name}={session}"}
            ) as r:
                assert ('id="conversation-list"' in await r.text()) is signed_in, name
