"""Every state-changing route of the real app: CSRF, no session, no change on GET.

The routes are read from the app's own URL map (built by the factory), so a route added later
is attacked too without editing this file.
"""

from __future__ import annotations

import re

import aiohttp
import pytest
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Rule

from app import create_app
from tests.security.attack import SUITE_ENV, visitor
from tests.support.clients import ADMIN_COOKIE, admin_csrf, admin_login, jarless
from tests.support.server import Server, query

SERVER_ENV = SUITE_ENV
# Reachable before signing in, each with its own protection (origin check, password, secret,
# the one-time device link's token, the one-time invitation link's token).
# The widget's frame opens a conversation (`/widget/start`, like `/start`) or shows the one of
# the token it keeps (`/widget/frame`), each only for a host page on WIDGET_ORIGINS.
PUBLIC_WRITES = {
    "/start",
    "/admin/login",
    "/admin/verify",
    "/tg/webhook",
    "/continue/<token>",
    "/admin/invite/<token>",
    "/widget/start",
    "/widget/frame",
}
# A visitor's own writes: the visitor cookie (SameSite=Lax) or the widget frame's token, and
# the origin check, protect them.
VISITOR_WRITES = {"/handoff", "/widget/page", "/widget/identify"}
WRITE_METHODS = {"POST", "PUT", "DELETE", "PATCH"}
# Visitor or operator writes: the operator's form says `as=admin` and carries a file.
UPLOADS = {"/media/upload"}


def form_for(path: str, cid: str, token: str | None) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("csrf_token", token or "")
    if path in UPLOADS:
        form.add_field("as", "admin")
        form.add_field("chat_id", cid)
        form.add_field("type", "photo")
        form.add_field("client_id", "csrf-probe-0001")
        form.add_field("file", b"GIF89a" + bytes(64), filename="x.gif", content_type="image/gif")
    return form


# Built, never served: only its URL map is read.
APP = create_app({"SOHBET_ENV_FILE": "/nonexistent", "DATABASE_URL": "sqlite://:memory:"})
RULES = [
    (method, rule)
    for rule in APP.url_map.iter_rules()
    for method in sorted(WRITE_METHODS & set(rule.methods or ()))
    if rule.rule not in PUBLIC_WRITES
]


def fill(rule: Rule, cid: str, schedule_id: int) -> str:
    def value(match: re.Match[str]) -> str:
        converter, name = match.group(1), match.group(2)
        if name == "cid":
            return cid
        return str(schedule_id) if converter == "int" else "x"

    return re.sub(r"<(?:(\w+):)?(\w+)>", value, rule.rule)


def test_the_route_list_is_not_empty() -> None:
    """Input: the app's URL map. Safe: the admin's state changes are found (the cases below
    would pass vacuously otherwise)."""
    paths = {rule.rule for _, rule in RULES}
    assert {"/admin/logout", "/admin/c/<cid>/delete", "/api/test/schedule"} <= paths, paths
    assert VISITOR_WRITES <= paths, "a visitor write left the app: update VISITOR_WRITES"


async def test_every_admin_write_needs_the_csrf_token(server: Server, admin_token: str) -> None:
    """Input: each state-changing route with the operator's cookie but no token, a wrong
    token, and the token of another operator session. Safe: 403 each time, nothing changed."""
    _, cid = await visitor(server, "Csrf")
    other_session = await admin_login(server)
    token = await admin_csrf(server.url, admin_token)
    foreign_token = await admin_csrf(server.url, other_session)
    assert token != foreign_token
    async with jarless() as http:
        async with http.post(
            server.url + "/api/test/schedule",
            json={"time_hhmm": "03:00", "tz": "UTC"},
            headers={"Cookie": f"{ADMIN_COOKIE}={admin_token}", "X-CSRF-Token": token},
        ) as r:
            assert r.status == 201
            schedule_id = (await r.json())["id"]
        before = await query(server, "SELECT COUNT(*) FROM selftest_schedule")
        for method, rule in RULES:
            if rule.rule in VISITOR_WRITES:
                continue
            path = fill(rule, cid, schedule_id)
            for sent in (None, "wrong", foreign_token):
                headers = {"Cookie": f"{ADMIN_COOKIE}={admin_token}"}
                if sent is not None:
                    headers["X-CSRF-Token"] = sent
                async with http.request(
                    method, server.url + path, headers=headers, data=form_for(path, cid, sent)
                ) as r:
                    assert r.status == 403, (method, path, sent, r.status)
    assert await query(server, f"SELECT COUNT(*) FROM conversation WHERE cid = '{cid}'") == [(1,)]
    assert await query(server, "SELECT COUNT(*) FROM selftest_schedule") == before
    async with jarless() as http:
        async with http.get(
            server.url + "/admin", headers={"Cookie": f"{ADMIN_COOKIE}={admin_token}"}
        ) as r:
            assert 'id="conversation-list"' in await r.text(), "the session survived"


async def test_every_admin_write_needs_a_session(server: Server) -> None:
    """Input: each state-changing route with no cookie, and with a made-up session cookie.
    Safe: never a 2xx and never a server error (login redirect, 401, 403, or 404 for an
    upload into a conversation the caller does not belong to)."""
    _, cid = await visitor(server, "NoSession")
    async with jarless() as http:
        for method, rule in RULES:
            path = fill(rule, cid, 1)
            for cookie in ("", f"{ADMIN_COOKIE}=made-up-session-token"):
                async with http.request(
                    method,
                    server.url + path,
                    headers={"Cookie": cookie, "X-CSRF-Token": "x"},
                    data=form_for(path, cid, "x"),
                    allow_redirects=False,
                ) as r:
                    assert r.status in (303, 401, 403, 404), (method, path, r.status)


@pytest.mark.parametrize(("method", "rule"), RULES, ids=[f"{m} {r.rule}" for m, r in RULES])
def test_no_state_change_on_get(method: str, rule: Rule) -> None:
    """Input: GET on the path of a state-changing route. Safe: it is not the same view (405,
    or a read-only view of the same path such as GET /api/test/schedule)."""
    adapter = APP.url_map.bind("localhost")
    path = fill(rule, "Ada-0001", 1)
    try:
        endpoint, _ = adapter.match(path, method="GET")
    except (MethodNotAllowed, NotFound):
        return
    assert endpoint != rule.endpoint, (path, endpoint)
