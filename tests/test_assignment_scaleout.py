"""Assignment across two server processes on one PostgreSQL and one Redis: two operators on
different processes taking the same conversation at once (exactly one wins), and automatic
assignment taking turns between operators whose panels are open on different processes."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest

from tests.support.assignment import (
    assignee,
    audit_rows,
    join,
    new_conversation,
    press,
    set_auto_assign,
)
from tests.support.clients import admin_peer
from tests.support.server import ADMIN_PASSWORD, Server, redis_pair
from tests.support.team import OWNER, sign_in_log

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture(scope="module")
async def pair(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Server, Server]]:
    async with redis_pair(tmp_path_factory.mktemp("assign-scaleout")) as servers:
        yield servers


async def test_race_and_round_robin_across_processes(pair: tuple[Server, Server]) -> None:
    one, two = pair
    owner = await sign_in_log(one, OWNER, ADMIN_PASSWORD)
    ayse = await join(one, owner, "Ayşe")
    burak = await join(two, owner, "Burak")

    for round_ in range(6):
        _, cid = await new_conversation(one if round_ % 2 else two, f"Süreç {round_}")
        (a_status, a_body), (b_status, b_body) = await asyncio.gather(
            press(one, ayse, cid, "take"), press(two, burak, cid, "take")
        )
        assert sorted((a_status, b_status)) == [200, 409], (a_body, b_body)
        winner = ayse if a_status == 200 else burak
        assert (await assignee(one, cid))[0] == winner.id
        assert [row[0] for row in await audit_rows(one, "conversation_take", cid)] == [winner.name]

    await set_auto_assign(one, owner, True)
    # Ayşe's panel is open on one process, Burak's on the other; the owner's nowhere.
    peers = [await admin_peer(one.url, ayse.token), await admin_peer(two.url, burak.token)]
    try:
        given = []
        for n in range(4):
            _, cid = await new_conversation(two if n % 2 else one, f"Sıra {n}")
            given.append((await assignee(one, cid))[0])
        assert given.count(ayse.id) == 2 and given.count(burak.id) == 2, given
        assert all(a != b for a, b in itertools.pairwise(given)), given
    finally:
        for peer in peers:
            await peer.close()
        await set_auto_assign(one, owner, False)
