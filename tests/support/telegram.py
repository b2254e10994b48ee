"""Shared helpers for tests that run the server with the fake Telegram Bot API.

The fixtures `fake`, `tg_server` and `tg_admin_token` are registered for every test module by
tests/conftest.py; a module shapes them with `TELEGRAM_FORUM = True` (the fake is a forum
supergroup) and `TELEGRAM_ENV = {...}` (settings on top of `telegram_env`)."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Protocol

import aiohttp
import pytest

from tests.support.clients import (
    Peer,
    admin_peer,
    ask_code,
    redeem_code,
    start_visitor,
    visitor_peer,
)
from tests.support.fake_telegram import FakeTelegram, SentMessage
from tests.support.server import Server, sqlite_server

# The self-test summary line when every check passes (calls are skipped in tests).
SUMMARY_OK = (
    "✅ Web, ✅ Soket, ✅ Veritabanı, ✅ Telegram, ✅ Depolama, ✅ Zamanlayıcı, ⚪ Aramalar"
)


class HasUrl(Protocol):
    @property
    def url(self) -> str: ...


def telegram_env(fake: FakeTelegram, **extra: str) -> dict[str, str]:
    """Settings that point the server's bot at the fake (polling, short timeouts)."""
    return {
        "TELEGRAM_BOT_TOKEN": fake.token,
        "TELEGRAM_ADMIN_CHAT_ID": str(fake.admin_chat_id),
        "TELEGRAM_API_BASE": fake.base_url,
        "TELEGRAM_POLL_TIMEOUT": "1",
        "TELEGRAM_TOPICS": "off",
        "TELEGRAM_MAX_BACKOFF": "2",
        **extra,
    }


@pytest.fixture(scope="module")
async def fake(request: pytest.FixtureRequest) -> AsyncIterator[FakeTelegram]:
    """The module's fake Bot API, shared by its tests."""
    async with FakeTelegram(forum=getattr(request.module, "TELEGRAM_FORUM", False)) as f:
        yield f


@pytest.fixture(scope="module")
async def tg_server(
    fake: FakeTelegram, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Server]:
    """The module's server on SQLite, its bot polling the fake."""
    env = telegram_env(fake, **getattr(request.module, "TELEGRAM_ENV", {}))
    async with sqlite_server(tmp_path_factory.mktemp("tg"), env) as srv:
        yield srv


@pytest.fixture(scope="module")
async def tg_admin_token(tg_server: Server, fake: FakeTelegram) -> str:
    """The operator's session on `tg_server`, signed in with the code sent to Telegram."""
    return await login_via_telegram(tg_server, fake)


async def login_via_telegram(server: HasUrl, fake: FakeTelegram) -> str:
    """Sign in reading the code from the admin chat, as the operator would."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        asked_at = int(time.time()) - 1
        status, challenge, page = await ask_code(http, server.url)
        assert status == 303 and challenge, page
        note = await fake.wait_for_sent(
            lambda m: "giriş kodu" in (m.text or "") and m.message["date"] >= asked_at
        )
        code = re.search(r"<code>(\d{6})</code>", note.text or "")
        assert code, note.text
        status, token, page = await redeem_code(http, server.url, challenge, code.group(1))
        assert status == 303 and token, page
    return token


async def visitor_with_chat(server: HasUrl, name: str) -> tuple[Peer, str]:
    """A visitor who opened a conversation and joined it over Socket.IO."""
    token, cid = await start_visitor(server.url, name)
    peer = await visitor_peer(server.url, token)
    await peer.call("join", {"chat_id": cid})
    return peer, cid


@asynccontextmanager
async def joined_visitor(server: HasUrl, name: str) -> AsyncIterator[tuple[Peer, str]]:
    """`visitor_with_chat`, its socket closed afterwards."""
    peer, cid = await visitor_with_chat(server, name)
    try:
        yield peer, cid
    finally:
        await peer.close()


@asynccontextmanager
async def visitor_and_panel(
    server: HasUrl, admin_token: str, name: str
) -> AsyncIterator[tuple[Peer, Peer, str]]:
    """`joined_visitor` and the operator's panel socket, both closed afterwards."""
    async with joined_visitor(server, name) as (visitor, cid):
        panel = await admin_peer(server.url, admin_token)
        try:
            yield visitor, panel, cid
        finally:
            await panel.close()


def with_text(fragment: str) -> Callable[[SentMessage], bool]:
    return lambda m: fragment in (m.text or "")
