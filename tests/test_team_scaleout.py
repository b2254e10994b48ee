"""Two server processes, one PostgreSQL, one Redis: deactivating an operator on one process
ends their live sockets on the other (python-socketio publishes the close of their room
through Redis), and their session is refused by both."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.support.clients import ADMIN_COOKIE, Peer, admin_peer
from tests.support.server import ADMIN_PASSWORD, Server, query, redis_pair
from tests.support.team import (
    OWNER,
    accept_invite,
    admin_headers,
    create_invite,
    get,
    set_active,
    sign_in_log,
    watch_disconnect,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

PASSWORD = "sifre-1234-uzun"


@pytest.fixture(scope="module")
async def pair(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Server, Server]]:
    async with redis_pair(tmp_path_factory.mktemp("team-scaleout")) as servers:
        yield servers


async def test_both_processes_starting_at_once_make_one_owner(pair: tuple[Server, Server]) -> None:
    one, _ = pair
    assert await query(one, "SELECT name, role, active FROM operator") == [(OWNER, "owner", True)]


async def test_deactivation_on_one_process_cuts_sockets_on_the_other(
    pair: tuple[Server, Server],
) -> None:
    one, two = pair
    owner = await sign_in_log(one, OWNER, ADMIN_PASSWORD)
    status, setup, page = await accept_invite(await create_invite(one, owner), "İpek", PASSWORD)
    assert status == 303 and setup, page
    # She works on the other process, with the panel's two sockets.
    token = await sign_in_log(two, "İpek", PASSWORD)
    chat = await admin_peer(two.url, token)
    call = await Peer(two.url, f"{ADMIN_COOKIE}={token}", "admin", "/call", ()).connect()
    chat_gone, call_gone = watch_disconnect(chat), watch_disconnect(call)
    # A socket of the owner's on the same process stays.
    owners = await admin_peer(two.url, owner)
    owners_gone = watch_disconnect(owners)
    try:
        rows = await query(one, "SELECT id FROM operator WHERE name = 'İpek'")
        status, row = await set_active(one, owner, int(rows[0][0]), False)
        assert status == 200 and 'data-active="0"' in row
        await asyncio.wait_for(asyncio.gather(chat_gone.wait(), call_gone.wait()), 10)
        assert not owners_gone.is_set() and owners.sio.connected
    finally:
        await chat.close()
        await call.close()
        await owners.close()
    for server in pair:
        status, page = await get(server, "/admin", admin_headers(token))
        assert status == 200 and "devre dışı" in page and 'id="conversation-list"' not in page
