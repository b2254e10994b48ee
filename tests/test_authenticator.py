"""The authenticator app (TOTP) and recovery codes: a second factor that needs no Telegram.

Everything goes through real HTTP against the server, with the fake Bot API delivering (or
failing to deliver) the Telegram codes.
"""

from __future__ import annotations

import asyncio
import html
import re
import time

import aiohttp
import pyotp

from tests.support.clients import ask_code, cookie_from, jarless, redeem_code
from tests.support.fake_telegram import FakeTelegram
from tests.support.server import Server, execute_sql, query

# Several sign-ins per test: room in the hourly code budget.
TELEGRAM_ENV = {"LOGIN_CODES_PER_HOUR": "60"}
ADMIN = "sohbet_admin"


async def login_via_telegram(server: Server, fake: FakeTelegram) -> str:
    """Sign in with the code the bot sends for this login. A code held up by an earlier
    outage may arrive first: it is refused and the next one is tried."""
    async with jarless() as http:
        seen = {id(m) for m in fake.sent()}
        challenge = await password_step(http, server)
        for _ in range(3):
            note = await fake.wait_for_sent(
                lambda m: id(m) not in seen and "giriş kodu" in (m.text or ""), timeout=30
            )
            seen.add(id(note))
            code = re.search(r"<code>(\d{6})</code>", note.text or "")
            assert code, note.text
            status, token, page = await redeem_code(http, server.url, challenge, code.group(1))
            if status == 303 and token:
                return token
    raise AssertionError(page)


def admin_headers(token: str, csrf: str = "") -> dict[str, str]:
    return {"Cookie": f"{ADMIN}={token}", **({"X-CSRF-Token": csrf} if csrf else {})}


async def csrf_of(http: aiohttp.ClientSession, server: Server, token: str) -> str:
    async with http.get(server.url + "/admin/security", headers=admin_headers(token)) as r:
        page = await r.text()
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert r.status == 200 and match, page
    return match.group(1)


async def security_post(
    http: aiohttp.ClientSession, server: Server, token: str, path: str, data: dict[str, str]
) -> tuple[int, str]:
    """A form on the Sign-in security page, posted by the signed-in operator."""
    async with http.post(
        server.url + "/admin/security" + path, data=data, headers=admin_headers(token)
    ) as r:
        return r.status, await r.text()


async def signed_in_without_app(server: Server, fake: FakeTelegram) -> tuple[str, str]:
    """Sign in with Telegram, with no authenticator app set up; (session, CSRF token).

    An earlier test may have left an app whose codes this one does not know: the rows go."""
    await execute_sql(server, "DELETE FROM recovery_code")
    await execute_sql(server, "DELETE FROM totp_factor")
    token = await login_via_telegram(server, fake)
    async with jarless() as http:
        csrf = await csrf_of(http, server, token)
    return token, csrf


async def enrol(server: Server, fake: FakeTelegram) -> tuple[pyotp.TOTP, list[str]]:
    """Sign in with Telegram, set up a fresh authenticator app, return it and its codes."""
    token, csrf = await signed_in_without_app(server, fake)
    async with jarless() as http:
        status, page = await security_post(http, server, token, "/totp", {"csrf_token": csrf})
        assert status == 200, page
        uri = html.unescape(
            re.search(r'id="otpauth-uri" rows="3" readonly>([^<]+)<', page).group(1)  # type: ignore[union-attr]
        )
        secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page).group(1)  # type: ignore[union-attr]
        assert 'src="data:image/svg+xml' in page
        totp = pyotp.parse_uri(uri)
        assert isinstance(totp, pyotp.TOTP) and totp.secret == secret
        data = {"csrf_token": csrf, "code": totp.now()}
        status, page = await security_post(http, server, token, "/totp/confirm", data)
        assert status == 200, page
    codes = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", page)
    assert len(codes) == 10 and len(set(codes)) == 10
    return totp, codes


def next_code(totp: pyotp.TOTP) -> str:
    """The code of the next 30-second step (the current one was used to confirm enrolment)."""
    return totp.at(time.time(), counter_offset=1)


async def sign_in(
    http: aiohttp.ClientSession, server: Server, challenge: str, code: str, method: str = "app"
) -> tuple[int, str | None, str]:
    async with http.post(
        server.url + "/admin/verify",
        data={"code": code, "method": method},
        headers={"Cookie": f"sohbet_login={challenge}"},
        allow_redirects=False,
    ) as r:
        return r.status, cookie_from(r, ADMIN), await r.text()


async def password_step(http: aiohttp.ClientSession, server: Server) -> str:
    status, challenge, page = await ask_code(http, server.url)
    assert status == 303 and challenge, page
    return challenge


async def code_page(
    http: aiohttp.ClientSession, server: Server, challenge: str, path: str = "/admin/code"
) -> str:
    """The code step (or its polled status line) as the browser holding `challenge` sees it."""
    headers = {"Cookie": f"sohbet_login={challenge}", "HX-Request": "true"}
    async with http.get(server.url + path, headers=headers) as r:
        assert r.status == 200
        return await r.text()


async def wait_until_telegram_fails(
    http: aiohttp.ClientSession, server: Server, challenge: str
) -> str:
    """Poll the status line as the page does, until it says Telegram is not delivering."""
    deadline = time.monotonic() + 30
    while True:
        line = await code_page(http, server, challenge, "/admin/code/status")
        state = re.search(r'data-state="(\w+)"', line).group(1)  # type: ignore[union-attr]
        if state == "failing":
            return line
        assert time.monotonic() < deadline, f"delivery state stayed {state!r}"
        await asyncio.sleep(0.2)


async def panel_opens(server: Server, token: str) -> bool:
    async with jarless() as http:
        async with http.get(server.url + "/admin", headers=admin_headers(token)) as r:
            return "conversation-list" in await r.text()


async def test_enrolment_needs_a_current_code_and_stores_no_plain_recovery_code(
    tg_server: Server, fake: FakeTelegram
) -> None:
    token, csrf = await signed_in_without_app(tg_server, fake)
    async with jarless() as http:
        _, page = await security_post(http, tg_server, token, "/totp", {"csrf_token": csrf})
        secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page).group(1)  # type: ignore[union-attr]
        wrong = f"{(int(pyotp.TOTP(secret).now()) + 1) % 1_000_000:06d}"
        data = {"csrf_token": csrf, "code": wrong}
        status, _ = await security_post(http, tg_server, token, "/totp/confirm", data)
        assert status == 400
        # A pending secret is not a second factor yet.
        assert (
            await query(tg_server, "SELECT id FROM totp_factor WHERE confirmed_at IS NOT NULL")
            == []
        )
        # Without the CSRF token, nothing is enrolled.
        data = {"code": pyotp.TOTP(secret).now()}
        status, _ = await security_post(http, tg_server, token, "/totp/confirm", data)
        assert status == 403
    _totp, codes = await enrol(tg_server, fake)
    rows = await query(tg_server, "SELECT code_hash FROM recovery_code WHERE used_at IS NULL")
    stored = {row[0] for row in rows}
    assert len(stored) == 10 and not stored & set(codes)
    assert not any(code.replace("-", "") in hashed for code in codes for hashed in stored)


async def test_signs_in_with_the_app_while_telegram_is_down(
    tg_server: Server, fake: FakeTelegram
) -> None:
    totp, _ = await enrol(tg_server, fake)
    fake.outage(True)
    try:
        async with jarless() as http:
            challenge = await password_step(http, tg_server)
            assert 'id="app-code-form"' in await code_page(http, tg_server, challenge)
            # The page follows the code's delivery until Telegram is seen failing.
            await wait_until_telegram_fails(http, tg_server, challenge)
            status, token, page = await sign_in(http, tg_server, challenge, next_code(totp))
        assert status == 303 and token, page
        assert await panel_opens(tg_server, token)
    finally:
        fake.outage(False)


async def test_a_used_app_code_is_refused(tg_server: Server, fake: FakeTelegram) -> None:
    totp, _ = await enrol(tg_server, fake)
    code = next_code(totp)
    async with jarless() as http:
        status, token, page = await sign_in(
            http, tg_server, await password_step(http, tg_server), code
        )
        assert status == 303 and token, page
        status, token, _ = await sign_in(
            http, tg_server, await password_step(http, tg_server), code
        )
        assert status == 400 and token is None
        # The code that confirmed the enrolment is spent too.
        status, token, _ = await sign_in(
            http, tg_server, await password_step(http, tg_server), totp.now()
        )
        assert status == 400 and token is None


async def test_a_recovery_code_works_once(tg_server: Server, fake: FakeTelegram) -> None:
    _, codes = await enrol(tg_server, fake)
    async with jarless() as http:
        typed = codes[3].upper().replace("-", " ")  # as someone might copy it
        status, token, page = await sign_in(
            http, tg_server, await password_step(http, tg_server), typed
        )
        assert status == 303 and token, page
        status, again, _ = await sign_in(
            http, tg_server, await password_step(http, tg_server), codes[3]
        )
        assert status == 400 and again is None
        async with http.get(tg_server.url + "/admin/security", headers=admin_headers(token)) as r:
            page = await r.text()
    assert re.search(r"\b9\b", page)
    assert len(await query(tg_server, "SELECT id FROM recovery_code WHERE used_at IS NULL")) == 9


async def test_wrong_app_codes_use_up_the_challenge(tg_server: Server, fake: FakeTelegram) -> None:
    totp, codes = await enrol(tg_server, fake)
    right = next_code(totp)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    async with jarless() as http:
        challenge = await password_step(http, tg_server)
        statuses = [(await sign_in(http, tg_server, challenge, w))[0] for w in [wrong] * 4]
        assert statuses == [400, 400, 400, 400]
        status, _, _ = await sign_in(http, tg_server, challenge, "aaaa-bbbb-cccc-dddd")
        assert status == 429
        # Five tries per challenge, whatever the kind of code: the right one comes too late.
        for code in (right, codes[0]):
            status, token, _ = await sign_in(http, tg_server, challenge, code)
            assert status == 429 and token is None
        # The Telegram code of that challenge shares the same budget.
        status, token, _ = await sign_in(http, tg_server, challenge, "123456", method="telegram")
        assert status == 429 and token is None


async def test_without_an_app_only_the_telegram_code_is_offered(
    tg_server: Server, fake: FakeTelegram
) -> None:
    await signed_in_without_app(tg_server, fake)
    async with jarless() as http:
        challenge = await password_step(http, tg_server)
        page = await code_page(http, tg_server, challenge)
        assert 'action="/admin/verify"' in page and 'id="app-code-form"' not in page
        status, got, _ = await sign_in(http, tg_server, challenge, "aaaa-bbbb-cccc-dddd")
        assert status == 400 and got is None
        # With Telegram down, the page says so and still offers only the Telegram code.
        fake.outage(True)
        try:
            challenge = await password_step(http, tg_server)
            line = await wait_until_telegram_fails(http, tg_server, challenge)
            assert "doğrulama uygulaması kurun" in line  # "set up an authenticator app"
            assert 'id="app-code-form"' not in await code_page(http, tg_server, challenge)
        finally:
            fake.outage(False)
    # The Telegram path works as before.
    assert await panel_opens(tg_server, await login_via_telegram(tg_server, fake))


async def test_changing_the_app_needs_a_current_code(tg_server: Server, fake: FakeTelegram) -> None:
    totp, codes = await enrol(tg_server, fake)
    token = await login_via_telegram(tg_server, fake)
    async with jarless() as http:
        csrf = await csrf_of(http, tg_server, token)
        # A signed-in session alone cannot start over with another secret.
        status, _ = await security_post(http, tg_server, token, "/totp", {"csrf_token": csrf})
        assert status == 409
        for action in ("remove", "move", "recovery"):
            form = {"csrf_token": csrf, "action": action, "code": "000000"}
            status, _ = await security_post(http, tg_server, token, "/change", form)
            assert status == 400
        # A recovery code authorizes new recovery codes (and is spent doing it).
        form = {"csrf_token": csrf, "action": "recovery", "code": codes[0]}
        status, page = await security_post(http, tg_server, token, "/change", form)
        assert status == 200, page
        fresh = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", page)
        assert len(fresh) == 10 and not set(fresh) & set(codes)
        # The old codes stopped working.
        status, got, _ = await sign_in(
            http, tg_server, await password_step(http, tg_server), codes[1]
        )
        assert status == 400 and got is None
        # A current code from the app turns it off.
        form = {"csrf_token": csrf, "action": "remove", "code": next_code(totp)}
        status, page = await security_post(http, tg_server, token, "/change", form)
        assert status == 200 and 'action="/admin/security/totp"' in page, page
    assert await query(tg_server, "SELECT id FROM totp_factor") == []
    assert await query(tg_server, "SELECT id FROM recovery_code") == []


async def test_wrong_codes_for_a_change_are_limited(tg_server: Server, fake: FakeTelegram) -> None:
    _totp, codes = await enrol(tg_server, fake)
    token = await login_via_telegram(tg_server, fake)
    async with jarless() as http:
        csrf = await csrf_of(http, tg_server, token)
        wrong = {"csrf_token": csrf, "action": "remove", "code": "aaaa-bbbb-cccc-dddd"}
        statuses = [
            (await security_post(http, tg_server, token, "/change", wrong))[0] for _ in range(5)
        ]
        assert statuses == [400] * 5
        # The session has used its tries: even a right code is refused for a while.
        right = {"csrf_token": csrf, "action": "remove", "code": codes[0]}
        status, _ = await security_post(http, tg_server, token, "/change", right)
        assert status == 429
    rows = await query(tg_server, "SELECT id FROM totp_factor WHERE confirmed_at IS NOT NULL")
    assert len(rows) == 1
    assert len(await query(tg_server, "SELECT id FROM recovery_code WHERE used_at IS NULL")) == 10
