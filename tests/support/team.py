"""The team over real HTTP: the owner's invitations, an invitee accepting one and linking
Telegram through the fake Bot API, and each operator signing in with their own code."""

from __future__ import annotations

import asyncio
import html
import re
from typing import Any

import aiohttp

from tests.support.clients import ADMIN_COOKIE, Peer, cookie_from, jarless
from tests.support.fake_telegram import FakeTelegram, SentMessage
from tests.support.server import ADMIN_PASSWORD, Server

OWNER = "Destek"
SETUP_COOKIE = "sohbet_setup"
LOGIN_COOKIE = "sohbet_login"
JSON = dict[str, Any]


def tg_user(user_id: int, first_name: str) -> JSON:
    """A Telegram user as the Bot API describes one."""
    return {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "tr"}


def admin_headers(token: str, csrf: str = "", htmx: bool = False) -> dict[str, str]:
    headers = {"Cookie": f"{ADMIN_COOKIE}={token}"}
    if csrf:
        headers["X-CSRF-Token"] = csrf
    if htmx:
        headers["HX-Request"] = "true"
    return headers


async def team_csrf(server: Server, owner: str) -> str:
    """The CSRF token on the owner's team page."""
    async with (
        jarless() as http,
        http.get(server.url + "/admin/team", headers=admin_headers(owner)) as r,
    ):
        page = await r.text()
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert r.status == 200 and match, page
    return match.group(1)


async def create_invite(server: Server, owner: str) -> str:
    """The owner presses "Create an invitation link" (HTMX); return the link shown."""
    csrf = await team_csrf(server, owner)
    async with (
        jarless() as http,
        http.post(
            server.url + "/admin/team/invite", headers=admin_headers(owner, csrf, htmx=True)
        ) as r,
    ):
        body = await r.text()
    assert r.status == 200, body
    assert 'src="data:image/svg+xml' in body, body  # the QR code
    match = re.search(r'id="invite-url"[^>]*>([^<]+)</textarea>', body)
    assert match, body
    return html.unescape(match.group(1)).strip()


async def accept_invite(
    link: str, name: str, password: str, repeat: str | None = None
) -> tuple[int, str | None, str]:
    """The invitee's form: (status, setup cookie, page)."""
    data = {"name": name, "password": password, "password2": password if repeat is None else repeat}
    async with jarless() as http, http.post(link, data=data, allow_redirects=False) as r:
        return r.status, cookie_from(r, SETUP_COOKIE), await r.text()


async def setup_page(server: Server, setup: str, path: str = "/admin/invite/setup") -> str:
    headers = {"Cookie": f"{SETUP_COOKIE}={setup}"}
    async with jarless() as http, http.get(server.url + path, headers=headers) as r:
        assert r.status == 200, await r.text()
        return await r.text()


def link_command(page: str) -> str:
    match = re.search(r'id="link-command">(/link \d{8})<', page)
    assert match, page
    return match.group(1)


async def link_telegram(server: Server, fake: FakeTelegram, setup: str, user: JSON) -> SentMessage:
    """Send the bot the code the setup page shows, from `user`'s private chat; return the
    bot's answer there."""
    command = link_command(await setup_page(server, setup))
    seen = len(fake.sent(chat_id=user["id"]))
    await fake.private_command(user, command)
    return await next_in_chat(fake, user["id"], seen)


async def next_in_chat(fake: FakeTelegram, chat_id: int, seen: int) -> SentMessage:
    """The first message the bot sends to `chat_id` after the `seen` already there."""
    await fake.wait_for_sent(lambda m: len(fake.sent(chat_id=chat_id)) > seen, timeout=30)
    return fake.sent(chat_id=chat_id)[seen]


async def join_team(
    server: Server, fake: FakeTelegram, owner: str, name: str, password: str, user: JSON
) -> None:
    """Invite, accept and link Telegram, as the owner and the new operator would."""
    link = await create_invite(server, owner)
    status, setup, page = await accept_invite(link, name, password)
    assert status == 303 and setup, page
    answer = await link_telegram(server, fake, setup, user)
    assert "bağlandı" in (answer.text or ""), answer.text


async def ask_code_as(
    http: aiohttp.ClientSession,
    server: Server,
    name: str,
    password: str,
    headers: dict[str, str] | None = None,
) -> tuple[int, str | None, str]:
    """The first sign-in step with a name: (status, challenge cookie, page)."""
    async with http.post(
        server.url + "/admin/login",
        data={"name": name, "password": password},
        headers=headers,
        allow_redirects=False,
    ) as r:
        return r.status, cookie_from(r, LOGIN_COOKIE), await r.text()


async def redeem(
    http: aiohttp.ClientSession, server: Server, challenge: str, code: str
) -> tuple[int, str | None, str]:
    async with http.post(
        server.url + "/admin/verify",
        data={"code": code},
        headers={"Cookie": f"{LOGIN_COOKIE}={challenge}"},
        allow_redirects=False,
    ) as r:
        return r.status, cookie_from(r, ADMIN_COOKIE), await r.text()


def code_in(message: SentMessage) -> str:
    match = re.search(r"<code>(\d{6})</code>", message.text or "")
    assert match, message.text
    return match.group(1)


async def code_for(fake: FakeTelegram, chat_id: int, seen: int) -> str:
    """The next login code the bot sends to `chat_id` after the `seen` messages already there."""

    def new_code() -> SentMessage | None:
        later = fake.sent(chat_id=chat_id)[seen:]
        return next((m for m in later if "giriş kodu" in (m.text or "")), None)

    await fake.wait_for_sent(lambda m: new_code() is not None, timeout=30)
    note = new_code()
    assert note is not None
    return code_in(note)


async def sign_in_telegram(
    server: Server, fake: FakeTelegram, name: str, password: str, chat_id: int
) -> str:
    """Sign in as `name`, with the code the bot sends to `chat_id`; return the session."""
    async with jarless() as http:
        seen = len(fake.sent(chat_id=chat_id))
        status, challenge, page = await ask_code_as(http, server, name, password)
        assert status == 303 and challenge, page
        code = await code_for(fake, chat_id, seen)
        status, token, page = await redeem(http, server, challenge, code)
        assert status == 303 and token, page
    return token


async def owner_token(server: Server, fake: FakeTelegram) -> str:
    """The owner signs in by name with the code sent to the admin's private chat."""
    return await sign_in_telegram(server, fake, OWNER, ADMIN_PASSWORD, fake.admin_chat_id)


def last_code_in_log(server: Server, name: str) -> str:
    codes = re.findall(rf"LOGIN CODE (\d{{6}}) for {re.escape(name)} ", server.log())
    assert codes, "no login code in the server log"
    return codes[-1]


async def sign_in_log(server: Server, name: str, password: str) -> str:
    """Sign in on a server without Telegram (the code in its log)."""
    async with jarless() as http:
        status, challenge, page = await ask_code_as(http, server, name, password)
        assert status == 303 and challenge, page
        status, token, page = await redeem(http, server, challenge, last_code_in_log(server, name))
        assert status == 303 and token, page
    return token


async def set_active(server: Server, owner: str, operator_id: int, active: bool) -> tuple[int, str]:
    """The owner's Deactivate / Reactivate button (HTMX)."""
    csrf = await team_csrf(server, owner)
    async with (
        jarless() as http,
        http.post(
            server.url + f"/admin/team/{operator_id}/active",
            data={"active": "1" if active else "0"},
            headers=admin_headers(owner, csrf, htmx=True),
        ) as r,
    ):
        return r.status, await r.text()


def watch_disconnect(peer: Peer) -> asyncio.Event:
    """An event set when the server disconnects `peer` (register before it can happen)."""
    gone = asyncio.Event()

    async def on_disconnect(*_: object) -> None:
        gone.set()

    peer.sio.on("disconnect", on_disconnect, namespace=peer.namespace)
    return gone


async def get(server: Server, path: str, headers: dict[str, str]) -> tuple[int, str]:
    async with (
        jarless() as http,
        http.get(server.url + path, headers=headers, allow_redirects=False) as r,
    ):
        return r.status, await r.text()
