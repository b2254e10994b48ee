"""Two server processes on one PostgreSQL and no Redis: the budgets counted in the database
(wrong passwords, login codes, new conversations, rings) hold for both processes together, under
parallel tries, and across a restart. The per-message budget is counted in each process's
memory there (README "Production", Budgets without Redis: a database round trip per message
costs too much), learnt from the stored messages when a process first sees a conversation, so
a restart does not reset it either (on SQLite too)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.calls import call_peer
from tests.support.clients import ask_code, client_id, start_visitor, visitor_peer
from tests.support.server import (
    ADMIN_PASSWORD,
    Server,
    execute_sql,
    postgres_pair,
    query,
    sqlite_server,
)

PASSWORD_TRIES = 10  # wrong passwords per 15 minutes per address (app/admin/auth.py)
LOGIN_CODES_PER_HOUR = 3
CONVERSATIONS_PER_HOUR = 3
MESSAGES_PER_MINUTE = 5
RINGS_PER_MINUTE = 6  # per conversation side (app/calls/namespace.py)
TOO_MANY_CONVERSATIONS = "Bu bağlantıdan çok fazla yeni sohbet açıldı"
_addresses = itertools.count(1)


def new_address() -> str:
    """A client address of its own (198.18.0.0/15, for tests), so budgets start afresh."""
    n = next(_addresses)
    return f"198.18.{n // 250}.{n % 250 + 1}"


def from_address(address: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(), headers={"X-Forwarded-For": address}
    )


async def start_from(server: Server, address: str, name: str = "Ada") -> tuple[int, str]:
    """POST the start form from an address: (status, page)."""
    async with (
        from_address(address) as http,
        http.post(server.url + "/start", data={"name": name}, allow_redirects=False) as resp,
    ):
        return resp.status, await resp.text()


async def fresh_code_budget(server: Server) -> None:
    """Age the codes earlier tests asked for out of the hour, so the deployment may send its
    whole hourly budget again."""
    await execute_sql(server, "UPDATE login_code SET created_at = created_at - interval '2 hours'")


async def restart(server: Server) -> None:
    """A clean stop and a fresh start of one process (a deploy), on the same port."""
    await asyncio.to_thread(server.stop)
    await server.start()


@pytest.fixture(scope="module")
async def pair(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Server, Server]]:
    env = {
        "TRUSTED_PROXIES": "127.0.0.1",
        "LOGIN_CODES_PER_HOUR": str(LOGIN_CODES_PER_HOUR),
        "CONVERSATIONS_PER_HOUR": str(CONVERSATIONS_PER_HOUR),
        "MESSAGES_PER_MINUTE": str(MESSAGES_PER_MINUTE),
    }
    async with postgres_pair(tmp_path_factory.mktemp("scaleout-limits-db"), env) as servers:
        for server in servers:
            assert "REDIS_URL" not in server.environment()
        yield servers


@pytest.mark.postgres
async def test_parallel_wrong_passwords_on_two_processes_get_one_budget(
    pair: tuple[Server, Server],
) -> None:
    """22 guesses from one address at once, alternating between the processes: exactly 10 are
    compared (wrong password), the rest refused; then the right one waits too, on both.
    Per process memory let 20 through, and a count-then-insert would let more through."""
    one, two = pair
    async with from_address(new_address()) as http:
        replies = await asyncio.gather(
            *(ask_code(http, (one, two)[n % 2].url, f"guess-{n}") for n in range(22))
        )
        statuses = sorted(status for status, _, _ in replies)
        assert statuses == [400] * PASSWORD_TRIES + [429] * 12, statuses
        for server in pair:
            status, challenge, page = await ask_code(http, server.url)
            assert status == 429 and challenge is None
            assert "dakika" in page
    async with from_address(new_address()) as http:
        assert (await ask_code(http, one.url, "other-address"))[0] == 400


@pytest.mark.postgres
async def test_login_codes_are_counted_once_across_processes(pair: tuple[Server, Server]) -> None:
    """The right password 12 times at once, alternating between the processes: the deployment
    sends its hourly budget of codes (3), not that many per process, nor more because the
    requests overlap."""
    one, two = pair
    await fresh_code_budget(one)
    async with from_address(new_address()) as http:
        replies = await asyncio.gather(
            *(ask_code(http, (one, two)[n % 2].url, ADMIN_PASSWORD) for n in range(12))
        )
        statuses = sorted(status for status, _, _ in replies)
        assert statuses == [303] * LOGIN_CODES_PER_HOUR + [429] * 9, statuses
        for server in pair:
            status, _, page = await ask_code(http, server.url, ADMIN_PASSWORD)
            assert status == 429 and "dakika" in page
    rows = await query(
        one, "SELECT COUNT(*) FROM login_code WHERE created_at >= now() - interval '1 hour'"
    )
    assert rows[0][0] == LOGIN_CODES_PER_HOUR


@pytest.mark.postgres
async def test_new_conversations_are_counted_once_across_processes(
    pair: tuple[Server, Server],
) -> None:
    """Alternating, then all at once from another address: the hourly budget (3) for both
    processes together, however the requests overlap."""
    one, two = pair
    address = new_address()
    results = [await start_from((one, two)[n % 2], address, "Burst") for n in range(6)]
    assert [status for status, _ in results] == [303] * 3 + [429] * 3
    assert TOO_MANY_CONVERSATIONS in results[3][1]
    burst = await asyncio.gather(
        *(start_from((one, two)[n % 2], "198.18.200.1", "Burst") for n in range(16))
    )
    assert sorted(status for status, _ in burst) == [303] * 3 + [429] * 13
    rows = await query(one, "SELECT COUNT(*) FROM conversation WHERE visitor_name = 'Burst'")
    assert rows[0][0] == 6, "only the allowed ones are stored"
    assert (await start_from(two, new_address()))[0] == 303, "another address starts afresh"


@pytest.mark.postgres
async def test_rings_are_counted_once_across_processes(pair: tuple[Server, Server]) -> None:
    """A visitor rings from `/call` sockets on both processes (nobody answers); the 7th ring
    in a minute is refused, whichever process it reaches."""
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


@pytest.mark.postgres
async def test_a_restart_does_not_reset_the_budgets(pair: tuple[Server, Server]) -> None:
    """Budgets used up, then a process restarts (a deploy): the restarted process still refuses
    the wrong passwords' address, the conversations' address and further codes."""
    one, two = pair
    guesser, starter = new_address(), new_address()
    async with from_address(guesser) as http:
        statuses = [(await ask_code(http, one.url, f"g{n}"))[0] for n in range(PASSWORD_TRIES)]
        assert statuses == [400] * PASSWORD_TRIES
    assert [(await start_from(one, starter))[0] for _ in range(3)] == [303] * 3
    await fresh_code_budget(one)
    async with from_address(new_address()) as http:
        for _ in range(LOGIN_CODES_PER_HOUR):
            assert (await ask_code(http, one.url, ADMIN_PASSWORD))[0] == 303
    # Both processes restart, one after the other: nothing in memory survives.
    await restart(one)
    await restart(two)
    for server in pair:
        async with from_address(guesser) as http:
            assert (await ask_code(http, server.url, "after-restart"))[0] == 429
            assert (await ask_code(http, server.url, ADMIN_PASSWORD))[0] == 429
        status, page = await start_from(server, starter)
        assert status == 429 and TOO_MANY_CONVERSATIONS in page
        async with from_address(new_address()) as http:
            status, _, page = await ask_code(http, server.url, ADMIN_PASSWORD)
            assert status == 429 and "dakika" in page, "the hour's codes are still used up"
    assert (await start_from(two, new_address()))[0] == 303


async def sends(server: Server, token: str, cid: str, count: int) -> list[dict[str, Any]]:
    """`count` messages from the visitor's page on `server` (a socket of its own); the acks."""
    peer = await visitor_peer(server.url, token)
    try:
        assert (await peer.call("join", {"chat_id": cid}))["ok"]
        return [
            await peer.call("send", {"chat_id": cid, "text": f"m{n}", "client_id": client_id()})
            for n in range(count)
        ]
    finally:
        await peer.close()


def refused(ack: dict[str, Any]) -> bool:
    return ack.get("error") == "too_many_messages" and 0 < ack["retry_after"] <= 60


@pytest.mark.postgres
async def test_the_message_budget_is_picked_up_by_a_process_new_to_the_conversation(
    pair: tuple[Server, Server],
) -> None:
    """The visitor uses the minute's budget on one process; the other process, which has not
    counted this conversation yet, refuses the next message, and so does the first after a
    restart."""
    one, two = pair
    token, cid = await start_visitor(one.url, "Budget", headers={"X-Forwarded-For": new_address()})
    assert [a["ok"] for a in await sends(one, token, cid, MESSAGES_PER_MINUTE)] == [True] * 5
    [ack] = await sends(two, token, cid, 1)
    assert refused(ack), ack
    await restart(one)
    [ack] = await sends(one, token, cid, 1)
    assert refused(ack), ack
    rows = await query(
        one,
        "SELECT COUNT(*) FROM message m JOIN conversation c ON c.id = m.conversation_id "
        f"WHERE c.cid = '{cid}'",
    )
    assert rows[0][0] == MESSAGES_PER_MINUTE


async def test_a_restart_does_not_reset_the_message_budget_on_sqlite(tmp_path: Path) -> None:
    """One process on SQLite (budgets in its memory): after a restart the conversation's
    budget is where it was, not full again."""
    env = {"MESSAGES_PER_MINUTE": str(MESSAGES_PER_MINUTE)}
    async with sqlite_server(tmp_path, env) as server:
        token, cid = await start_visitor(server.url, "Quick")
        acks = await sends(server, token, cid, MESSAGES_PER_MINUTE - 1)
        assert [a["ok"] for a in acks] == [True] * (MESSAGES_PER_MINUTE - 1)
        await restart(server)
        acks = await sends(server, token, cid, 2)
        assert acks[0]["ok"] and refused(acks[1]), acks
