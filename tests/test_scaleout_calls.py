"""Two server processes, one PostgreSQL, one Redis: a P2P call whose parties are on different
processes rings, is answered once, carries real audio, and ends on both sides."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.calls import Media, call_peer, calling_visitor, system_messages
from tests.support.clients import Peer, admin_login
from tests.support.server import Server, redis_pair

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

VISITOR_HZ, ADMIN_HZ = 440.0, 660.0
RING_SECONDS = 8


@pytest.fixture(scope="module")
async def pair(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Server, Server]]:
    env = {"CALL_RING_SECONDS": str(RING_SECONDS)}
    async with redis_pair(tmp_path_factory.mktemp("scaleout-calls"), env) as servers:
        yield servers


@pytest.fixture(scope="module")
async def admin_token(pair: tuple[Server, Server]) -> str:
    return await admin_login(pair[1])


async def call_messages(server: Server, token: str, cid: str, count: int) -> list[dict[str, Any]]:
    """The conversation's call messages once there are `count` (or after 10 s)."""
    deadline = time.monotonic() + 10
    while True:
        found = [m for m in await system_messages(server.url, token, cid) if m["type"] == "call"]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.2)  # each poll opens a socket: don't hammer the servers


async def talk(
    caller: Peer, callee: Peer, call_id: str, caller_hz: float, callee_hz: float
) -> None:
    """Both pages exchange offer, answer and candidates through the server; both hear."""
    caller_media = Media(caller, call_id, caller_hz, callee_hz)
    callee_media = Media(callee, call_id, callee_hz, caller_hz)
    try:
        await asyncio.gather(caller_media.offer(), callee_media.answer())
        assert caller.events["rtc:answer"][0]["from"] == callee.role
        # aiortc puts its candidates in the SDP; the end-of-candidates crosses processes too.
        for side, other in ((caller, callee), (callee, caller)):
            ack = await side.call("rtc:candidate", {"call_id": call_id, "candidate": None})
            assert ack["ok"], ack
            got = await other.wait_for("rtc:candidate", lambda m: m["call_id"] == call_id)
            assert got["from"] == side.role and got["candidate"] is None
        await asyncio.gather(caller_media.hear(), callee_media.hear())
        assert (await caller.call("call:connected", {"call_id": call_id}))["ok"]
    finally:
        await caller_media.close()
        await callee_media.close()


async def test_visitor_on_one_process_calls_the_operator_on_the_other_and_back(
    pair: tuple[Server, Server], admin_token: str
) -> None:
    one, two = pair
    visitor, token, cid = await calling_visitor(one.url, "Uzakta")
    admin = await call_peer(two.url, "admin", admin_token)
    try:
        ring = await visitor.call("call:ring", {"chat_id": cid})
        assert ring["ok"], ring  # not callee_offline: the operator is on the other process
        call_id = ring["call_id"]
        incoming = await admin.wait_for("call:incoming", lambda m: m["call_id"] == call_id)
        assert incoming["chat_id"] == cid and incoming["from"] == "visitor"
        joined = await admin.call("join", {"chat_id": cid})
        assert joined["call"]["call_id"] == call_id and joined["call"]["state"] == "ringing"
        accepted = await admin.call("call:accept", {"call_id": call_id})
        assert accepted["ok"], accepted
        await visitor.wait_for("call:accepted", lambda m: m["call_id"] == call_id)
        await talk(visitor, admin, call_id, VISITOR_HZ, ADMIN_HZ)
        assert (await visitor.call("call:end", {"call_id": call_id}))["ok"]
        for side in (visitor, admin):
            ended = await side.wait_for("call:ended", lambda m: m["call_id"] == call_id)
            assert ended["reason"] == "hangup" and ended["by"] == "visitor"

        # The operator calls back from process two; the visitor answers on process one.
        back = await admin.call("call:ring", {"chat_id": cid})
        assert back["ok"], back
        back_id = back["call_id"]
        await visitor.wait_for("call:incoming", lambda m: m["call_id"] == back_id)
        assert (await visitor.call("call:accept", {"call_id": back_id}))["ok"]
        await admin.wait_for("call:accepted", lambda m: m["call_id"] == back_id)
        await talk(admin, visitor, back_id, ADMIN_HZ, VISITOR_HZ)
        assert (await admin.call("call:end", {"call_id": back_id}))["ok"]
        for side in (visitor, admin):
            ended = await side.wait_for("call:ended", lambda m: m["call_id"] == back_id)
            assert ended["reason"] == "hangup" and ended["by"] == "admin"
    finally:
        await visitor.close()
        await admin.close()
    messages = await call_messages(one, token, cid, 2)
    assert len(messages) == 2, messages
    assert all(m["text"].startswith("📞 Arama, ") for m in messages), messages


async def test_two_operator_pages_on_two_processes_accept_at_once_and_one_wins(
    pair: tuple[Server, Server], admin_token: str
) -> None:
    one, two = pair
    visitor, token, cid = await calling_visitor(one.url, "Yarış")
    here = await call_peer(one.url, "admin", admin_token)
    there = await call_peer(two.url, "admin", admin_token)
    other_tab = await call_peer(two.url, "visitor", token)
    try:
        ring = await visitor.call("call:ring", {"chat_id": cid})
        assert ring["ok"], ring
        call_id = ring["call_id"]
        for page in (here, there):
            await page.wait_for("call:incoming", lambda m: m["call_id"] == call_id)
        answers = await asyncio.gather(
            here.call("call:accept", {"call_id": call_id}),
            there.call("call:accept", {"call_id": call_id}),
        )
        assert sorted(a["ok"] for a in answers) == [False, True], answers
        loser = answers[0] if not answers[0]["ok"] else answers[1]
        assert loser["error"] in ("call_gone", "already_in_call"), loser
        # Busy is busy on every process: the visitor's other tab cannot ring a second call.
        again = await other_tab.call("call:ring", {"chat_id": cid})
        assert again["ok"] is False and again["error"] == "call_busy", again
        winner = here if answers[0]["ok"] else there
        assert (await winner.call("call:end", {"call_id": call_id}))["ok"]
        await visitor.wait_for("call:ended", lambda m: m["call_id"] == call_id)
    finally:
        for peer in (visitor, here, there, other_tab):
            await peer.close()
    messages = await call_messages(two, token, cid, 1)
    assert len(messages) == 1, messages


async def test_an_unanswered_ring_ends_once_across_processes(
    pair: tuple[Server, Server], admin_token: str
) -> None:
    one, two = pair
    visitor, token, cid = await calling_visitor(one.url, "Cevapsız")
    admin = await call_peer(two.url, "admin", admin_token)
    try:
        ring = await visitor.call("call:ring", {"chat_id": cid})
        assert ring["ok"] and ring["ring_seconds"] == RING_SECONDS, ring
        call_id = ring["call_id"]
        await admin.wait_for("call:incoming", lambda m: m["call_id"] == call_id)
        for side in (visitor, admin):
            ended = await side.wait_for(
                "call:ended", lambda m: m["call_id"] == call_id, timeout=RING_SECONDS + 10
            )
            assert ended["reason"] == "timeout"
        # The call is gone everywhere: the operator's late accept on the other process fails.
        late = await admin.call("call:accept", {"call_id": call_id})
        assert late["ok"] is False and late["error"] == "call_gone", late
        assert [m["call_id"] for m in admin.events["call:ended"]].count(call_id) == 1
    finally:
        await visitor.close()
        await admin.close()
    messages = await call_messages(two, token, cid, 1)
    assert len(messages) == 1, messages
