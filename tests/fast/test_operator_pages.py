"""The operator's HTTP pages in-process: the two login steps, the panel behind them, and the
Test & Repair page and API refusing anyone without a session (or without the CSRF token)."""

from __future__ import annotations

import re

import pytest
from quart.typing import TestClientProtocol as Client

from tests.support.clients import ADMIN_COOKIE
from tests.support.inprocess import login_code, set_cookie, text_of
from tests.support.server import ADMIN_PASSWORD

LOGIN_COOKIE = "sohbet_login"
ALERT = re.compile(r'<p class="alert" role="alert">(.*?)</p>', re.S)


async def test_login_page_asks_for_the_password(client: Client) -> None:
    r = await client.get("/admin")
    page = await text_of(r)
    assert r.status_code == 200
    assert 'action="/admin/login"' in page
    assert re.search(r'<input[^>]*type="password"[^>]*name="password"', page)
    assert 'id="conversation-list"' not in page


async def test_a_wrong_password_is_refused_and_sends_no_code(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING")
    r = await client.post("/admin/login", form={"password": "not the password"})
    assert r.status_code == 400
    assert ALERT.findall(await text_of(r)) == ["Şifre yanlış."]
    assert "Set-Cookie" not in r.headers
    assert "LOGIN CODE" not in caplog.text


async def test_the_code_step_needs_the_password_step_first(client: Client) -> None:
    r = await client.get("/admin/code")
    assert r.status_code == 303 and r.headers["Location"] == "/admin"


async def test_password_then_code_signs_in(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING")
    r = await client.post("/admin/login", form={"password": ADMIN_PASSWORD})
    assert r.status_code == 303 and r.headers["Location"] == "/admin/code"
    challenge = set_cookie(r, LOGIN_COOKIE)
    for attribute in ("HttpOnly", "SameSite=Strict", "Max-Age=300"):
        assert attribute in challenge, challenge
    code = login_code(caplog)

    r = await client.get("/admin/code")
    page = await text_of(r)
    assert r.status_code == 200 and 'action="/admin/verify"' in page
    assert re.search(r'<input[^>]*name="code"[^>]*autocomplete="one-time-code"', page)

    wrong = "000000" if code != "000000" else "111111"
    r = await client.post("/admin/verify", form={"code": wrong})
    assert r.status_code == 400
    assert ALERT.findall(await text_of(r)) == [
        "Kod yanlış ya da süresi dolmuş. Yeni bir kod isteyin."
    ]

    r = await client.post("/admin/verify", form={"code": code})
    assert r.status_code == 303 and r.headers["Location"] == "/admin"
    session = set_cookie(r, ADMIN_COOKIE)
    assert "HttpOnly" in session and "SameSite=Lax" in session
    page = await text_of(await client.get("/admin"))
    assert 'id="conversation-list"' in page and 'action="/admin/login"' not in page

    # The code is used up: the same code again does not sign in a second browser.
    again = await client.post("/admin/verify", form={"code": code})
    assert again.status_code == 400


async def test_the_test_page_and_api_need_a_session(client: Client) -> None:
    r = await client.get("/test")
    assert r.status_code == 303 and r.headers["Location"] == "/admin"
    r = await client.post("/test/run", headers={"HX-Request": "true"})
    assert r.status_code == 401 and r.headers["HX-Redirect"] == "/admin"
    for r in (await client.get("/api/test/runs"), await client.post("/api/test/run")):
        assert r.status_code == 401
        assert await r.get_json() == {
            "error": "unauthorized",
            "message": "Lütfen yeniden giriş yapın.",
        }


async def test_the_test_page_for_the_operator_and_its_csrf_check(operator: Client) -> None:
    r = await operator.get("/test")
    page = await text_of(r)
    assert r.status_code == 200
    assert 'hx-post="/test/run"' in page
    token = re.search(r'"X-CSRF-Token": "([^"]+)"', page)
    assert token, page
    # A state change without the session's token is refused (a cross-site form cannot send
    # it); with the token it goes through.
    form = {"time_hhmm": "03:00", "tz": "UTC", "enabled": "on"}
    r = await operator.post("/test/schedule", form=form)
    assert r.status_code == 403
    assert "Formun süresi doldu" in await text_of(r)
    r = await operator.get("/api/test/schedule")
    assert r.status_code == 200 and (await r.get_json())["schedules"] == []
    r = await operator.post("/test/schedule", form=form, headers={"X-CSRF-Token": token.group(1)})
    assert r.status_code == 200, await text_of(r)
    schedules = (await (await operator.get("/api/test/schedule")).get_json())["schedules"]
    assert [(s["time_hhmm"], s["tz"]) for s in schedules] == [("03:00", "UTC")]
