"""Two server processes, one PostgreSQL, one Redis: a budget set for the deployment holds for
both processes together, not once per process."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.support.calls import call_peer
from tests.support.clients import ask_code, client_id, start_visitor, visitor_peer
from tests.support.server import (
    Server,
    query,
    redis_pair,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

MESSAGES_PER_MINUTE = 5
PASSWORD_TRIES = 10  # wrong passwords per 15 minutes per address (app/admin/auth.py)
RINGS_PER_MINUTE = 6  # per conversation side (app/calls/namespace.py)
_addresses = itertools.count(1)


def new_address() -> str:
    """A client address of its own (198.18.0.0/15, for tests), so budgets start afresh."""
    n = next(_addresses)
    return f"198.18.{n // 250}.{n % 250 + 1}"


def from_address(address: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(), headers={"X-Forwarded-For": address}
    )


@pytest.fixture(scope="module")
async def pair(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Server, Server]]:
    env = {"MESSAGES_PER_MINUTE": str(MESSAGES_PER_MINUTE), "TRUSTED_PROXIES": "127.0.0.1"}
    async with redis_pair(tmp_path_factory.mktemp("scaleout-limits"), env) as servers:
        yield servers


async def test_a_visitor_gets_the_message_budget_once_across_processes(
    pair: tuple[Server, Server],
) -> None:
    """The visitor's page is open twice, one socket on each process; sends alternate. Per
    process counting let 2 x 5 through."""
    one, two = pair
    token, cid = await start_visitor(one.url, "Budget", headers={"X-Forwarded-For": new_address()})
    sockets = [await visitor_peer(one.url, token), await visitor_peer(two.url, token)]
    try:
        for peer in sockets:
            assert (await peer.call("join", {"chat_id": cid}))["ok"]
        acks = []
        for n in range(2 * MESSAGES_PER_MINUTE):
            body = {"chat_id": cid, "text": f"m{n}", "client_id": client_id()}
            acks.append(await sockets[n % 2].call("send", body))
        assert [a["ok"] for a in acks] == [True] * MESSAGES_PER_MINUTE + [False] * (
            MESSAGES_PER_MINUTE
        ), acks
        for refused in acks[MESSAGES_PER_MINUTE:]:
            assert refused["error"] == "too_many_messages", refused
            assert 0 < refused["retry_after"] <= 60, refused
            assert "Çok hızlı gönderiyorsunuz" in refused["message"], refused
        rows = await query(
            one,
            "SELECT COUNT(*) FROM message m JOIN conversation c ON c.id = m.conversation_id "
            f"WHERE c.cid = '{cid}'",
        )
        assert rows[0][0] == MESSAGES_PER_MINUTE
    finally:
        for peer in sockets:
            await peer.close()


async def test_wrong_passwords_are_counted_once_across_processes(
    pair: tuple[Server, Server],
) -> None:
    """Guesses alternate between the processes: the 11th is refused (per process counting
    allowed 20), and then even the right password waits, on both processes."""
    one, two = pair
    async with from_address(new_address()) as http:
        statuses = [
            (await ask_code(http, (one, two)[n % 2].url, f"guess-{n}"))[0]
            for n in range(PASSWORD_TRIES + 2)
        ]
        assert statuses == [400] * PASSWORD_TRIES + [429, 429]
        for server in pair:
            status, challenge, page = await ask_code(http, server.url)
            assert status == 429 and challenge is None
            assert "dakika" in page
    async with from_address(new_address()) as http:
        status, challenge, _ = await ask_code(http, two.url)
        assert status == 303 and challenge, "another address has its own budget"


async def test_a_right_password_does_not_use_up_the_budget(pair: tuple[Server, Server]) -> None:
    """Only wrong passwords count, on whichever process the right one arrives."""
    one, two = pair
    async with from_address(new_address()) as http:
        statuses = [
            (await ask_code(http, one.url, f"guess-{n}"))[0] for n in range(PASSWORD_TRIES - 1)
        ]
        assert statuses == [400] * (PASSWORD_TRIES - 1)
        status, challenge, _ = await ask_code(http, two.url)
        assert status == 303 and challenge
        assert (await ask_code(http, two.url, "last-guess"))[0] == 400
        assert (await ask_code(http, one.url, "one-too-many"))[0] == 429


async def test_rings_are_counted_once_across_processes(pair: tuple[Server, Server]) -> None:
    """A visitor rings from `/call` sockets on both processes (nobody answers: each ring is
    counted, then ends as a missed call); the 7th ring in a minute is refused."""
    one, two = pair
    token, cid = await start_visitor(one.url, "Rings", headers={"X-Forwarded-For": new_address()})
    callers = [
        await call_peer(one.url, "visitor", token),
        await call_peer(two.url, "visitor", token),
    ]
    try:
        errors = [
            (await callers[n % 2].call("call:ring", {"chat_id": cid}))["error"]
            for n in range(RINGS_PER_MINUTE + 2)
        ]
        assert errors == ["callee_offline"] * RINGS_PER_MINUTE + ["too_many_calls"] * 2, errors
    finally:
        for caller in callers:
            await caller.close()
