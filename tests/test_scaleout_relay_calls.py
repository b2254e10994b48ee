"""Relayed calls across two server processes (one PostgreSQL, one Redis), with real aiortc peers.

A relayed call's two legs are in one process's media hub: the process where the relay was
first needed (the one that took the answer, with CALL_FORCE_RELAY; the one that got `call:relay`
otherwise). The party on the other process has its offers, candidates and `call:connected`
carried there; both hear each other through that one relay. The echo peer answers wherever the
caller is.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.calls import Media, call_peer, calling_visitor, system_messages
from tests.support.clients import Peer, admin_login
from tests.support.server import Server, redis_pair

# A killed process's heartbeat expires within PRESENCE_TTL_SECONDS (15 by default); its calls
# end on the survivors' next sweep, within the 30 s presence heals in.
STOPPED_WITHIN = 30

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

VISITOR_HZ, ADMIN_HZ = 440.0, 660.0


@pytest.fixture(scope="module")
async def forced(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Server, Server]]:
    env = {"CALL_FORCE_RELAY": "1", "CALL_RELAY_MAX": "1"}
    async with redis_pair(tmp_path_factory.mktemp("relay-forced"), env) as servers:
        yield servers


@pytest.fixture(scope="module")
async def fallback(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[Server, Server]]:
    async with redis_pair(tmp_path_factory.mktemp("relay-fallback")) as servers:
        yield servers


async def relayed(caller: Peer, callee: Peer, call_id: str) -> list[Media]:
    """Both parties' connections through the relay, each hearing the other; left open."""
    media = [
        Media(caller, call_id, VISITOR_HZ, ADMIN_HZ),
        Media(callee, call_id, ADMIN_HZ, VISITOR_HZ),
    ]
    try:
        answers = await asyncio.gather(*(m.offer() for m in media))
        assert all(a["from"] == "server" for a in answers), answers
        await asyncio.gather(*(m.hear() for m in media))
        for side in (caller, callee):
            await side.wait_for("call:connected", lambda m: m["call_id"] == call_id)
    except BaseException:
        for m in media:
            await m.close()
        raise
    return media


async def through_the_relay(
    caller: Peer, callee: Peer, call_id: str, caller_hz: float, hangs_up: Peer
) -> None:
    """Both parties offer to the server; each hears the other through the one relay; then
    `hangs_up` ends the call (before the connections close: a relay leg that closes first
    ends the call as failed)."""
    callee_hz = ADMIN_HZ if caller_hz == VISITOR_HZ else VISITOR_HZ
    media = [
        Media(caller, call_id, caller_hz, callee_hz),
        Media(callee, call_id, callee_hz, caller_hz),
    ]
    try:
        # Each party's earlier calls' answers are behind it.
        answers = await asyncio.gather(*(m.offer(len(m.peer.events["rtc:answer"])) for m in media))
        assert all(a["from"] == "server" for a in answers), answers
        for side in (caller, callee):
            ack = await side.call("rtc:candidate", {"call_id": call_id, "candidate": None})
            assert ack["ok"], ack
        await asyncio.gather(*(m.hear() for m in media))
        # Both relay legs connected (in one process): both sides are told.
        for side in (caller, callee):
            connected = await side.wait_for("call:connected", lambda m: m["call_id"] == call_id)
            assert connected["mode"] == "relay" and connected["state"] == "active", connected
        await hang_up(hangs_up, callee if hangs_up is caller else caller, call_id)
    finally:
        for m in media:
            await m.close()


async def hang_up(side: Peer, other: Peer, call_id: str) -> None:
    assert (await side.call("call:end", {"call_id": call_id}))["ok"]
    for peer in (side, other):
        ended = await peer.wait_for("call:ended", lambda m: m["call_id"] == call_id)
        assert ended["reason"] == "hangup" and ended["duration"] >= 0, ended


async def call_messages(server: Server, token: str, cid: str, count: int) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        found = [m for m in await system_messages(server.url, token, cid) if m["type"] == "call"]
        if len(found) >= count or loop.time() > deadline:
            return found
        await asyncio.sleep(0.2)  # each poll opens a socket: don't hammer the servers


async def test_a_forced_relay_call_across_processes_carries_audio_both_ways_and_back(
    forced: tuple[Server, Server],
) -> None:
    one, two = forced
    admin_token = await admin_login(two)
    visitor, token, cid = await calling_visitor(one.url, "Röleli")
    admin = await call_peer(two.url, "admin", admin_token)
    try:
        # The visitor on one rings; the operator answers on two, whose hub relays the call.
        ring = await visitor.call("call:ring", {"chat_id": cid})
        assert ring["ok"], ring
        call_id = ring["call_id"]
        await admin.wait_for("call:incoming", lambda m: m["call_id"] == call_id)
        accepted = await admin.call("call:accept", {"call_id": call_id})
        assert accepted["ok"] and accepted["mode"] == "relay", accepted
        theirs = await visitor.wait_for("call:accepted", lambda m: m["call_id"] == call_id)
        assert theirs["mode"] == "relay", theirs
        await through_the_relay(visitor, admin, call_id, VISITOR_HZ, hangs_up=visitor)

        # The operator on two calls back; the visitor answers on one, whose hub relays it.
        back = await admin.call("call:ring", {"chat_id": cid})
        assert back["ok"], back
        back_id = back["call_id"]
        await visitor.wait_for("call:incoming", lambda m: m["call_id"] == back_id)
        assert (await visitor.call("call:accept", {"call_id": back_id}))["ok"]
        await admin.wait_for("call:accepted", lambda m: m["call_id"] == back_id)
        await through_the_relay(admin, visitor, back_id, ADMIN_HZ, hangs_up=admin)
    finally:
        await visitor.close()
        await admin.close()
    messages = await call_messages(one, token, cid, 2)
    assert len(messages) == 2, messages
    assert all(m["text"].startswith("📞 Arama, ") for m in messages), [m["text"] for m in messages]


async def test_a_call_moved_to_the_relay_on_one_process_is_joined_from_the_other(
    fallback: tuple[Server, Server],
) -> None:
    one, two = fallback
    admin_token = await admin_login(one)
    visitor, token, cid = await calling_visitor(one.url, "Düşen")
    admin = await call_peer(two.url, "admin", admin_token)
    try:
        ring = await visitor.call("call:ring", {"chat_id": cid})
        assert ring["ok"], ring
        call_id = ring["call_id"]
        await admin.wait_for("call:incoming", lambda m: m["call_id"] == call_id)
        accepted = await admin.call("call:accept", {"call_id": call_id})
        assert accepted["ok"] and accepted["mode"] == "p2p", accepted
        # P2P did not connect (the pages decide): the visitor asks process one for the relay;
        # the operator's `call:relay` on two finds it there.
        assert await visitor.call("call:relay", {"call_id": call_id}) == {
            "ok": True,
            "mode": "relay",
        }
        assert await admin.call("call:relay", {"call_id": call_id}) == {"ok": True, "mode": "relay"}
        for side in (visitor, admin):
            moved = await side.wait_for("call:relay", lambda m: m["call_id"] == call_id)
            assert moved["mode"] == "relay" and moved["ice_servers"], moved
        await through_the_relay(visitor, admin, call_id, VISITOR_HZ, hangs_up=admin)
    finally:
        await visitor.close()
        await admin.close()
    messages = await call_messages(two, token, cid, 1)
    assert len(messages) == 1 and messages[0]["text"].startswith("📞 Arama, "), messages


async def test_a_full_relay_hands_the_call_to_the_other_process_and_busy_when_both_are_full(
    forced: tuple[Server, Server],
) -> None:
    """CALL_RELAY_MAX=1 per process: the operator on two answers two calls; the first is
    relayed on two, the second (two being full) on one; a third, both full, is refused."""
    one, two = forced
    admin_token = await admin_login(two)
    panels = [await call_peer(two.url, "admin", admin_token) for _ in range(2)]
    panels.append(await call_peer(one.url, "admin", admin_token))
    visitors: list[Peer] = []
    media: list[Media] = []
    try:
        calls = []
        for n, panel in enumerate(panels):
            visitor, _, cid = await calling_visitor((one, one, two)[n].url, f"Dolu{n}")
            visitors.append(visitor)
            ring = await visitor.call("call:ring", {"chat_id": cid})
            assert ring["ok"], ring
            await panel.wait_for("call:incoming", lambda m, i=ring["call_id"]: m["call_id"] == i)
            accepted = await panel.call("call:accept", {"call_id": ring["call_id"]})
            calls.append(ring["call_id"])
            if n < 2:
                assert accepted["ok"] and accepted["mode"] == "relay", accepted
                # Both parties hear each other, the second call with the first still going.
                media += await relayed(visitor, panel, ring["call_id"])
            else:
                assert accepted["ok"] is False and accepted["error"] == "relay_busy", accepted
                ended = await visitor.wait_for(
                    "call:ended", lambda m, i=ring["call_id"]: m["call_id"] == i
                )
                assert ended["reason"] == "relay_busy", ended
        for n in range(2):
            await hang_up(visitors[n], panels[n], calls[n])
    finally:
        for m in media:
            await m.close()
        for peer in (*visitors, *panels):
            await peer.close()


async def test_relay_legs_opened_alongside_p2p_from_two_processes_meet_in_one_relay(
    fallback: tuple[Server, Server],
) -> None:
    """A P2P call whose pages open their relay legs alongside (as a page does when its direct
    connection is slow): the visitor's leg, on one, takes the relay there; the operator's, on
    two, is routed to it; once both legs connect the call is carried by the relay."""
    one, two = fallback
    admin_token = await admin_login(two)
    visitor, token, cid = await calling_visitor(one.url, "Yanyana")
    admin = await call_peer(two.url, "admin", admin_token)
    media: list[Media] = []
    try:
        ring = await visitor.call("call:ring", {"chat_id": cid})
        assert ring["ok"], ring
        call_id = ring["call_id"]
        await admin.wait_for("call:incoming", lambda m: m["call_id"] == call_id)
        accepted = await admin.call("call:accept", {"call_id": call_id})
        assert accepted["ok"] and accepted["mode"] == "p2p", accepted
        media = [
            Media(visitor, call_id, VISITOR_HZ, ADMIN_HZ, to="server"),
            Media(admin, call_id, ADMIN_HZ, VISITOR_HZ, to="server"),
        ]
        await media[0].offer()  # the visitor's leg first: process one holds the relay
        await media[1].offer()
        for side in (visitor, admin):
            ack = await side.call(
                "rtc:candidate", {"call_id": call_id, "candidate": None, "to": "server"}
            )
            assert ack["ok"], ack
        await asyncio.gather(*(m.hear() for m in media))
        for side in (visitor, admin):
            connected = await side.wait_for("call:connected", lambda m: m["call_id"] == call_id)
            assert connected["mode"] == "relay", connected
        await hang_up(admin, visitor, call_id)
    finally:
        for m in media:
            await m.close()
        await visitor.close()
        await admin.close()
    messages = await call_messages(one, token, cid, 1)
    assert len(messages) == 1 and messages[0]["text"].startswith("📞 Arama, "), messages


async def test_the_relay_process_killed_ends_its_call_once_and_the_other_call_goes_on(
    tmp_path: Path,
) -> None:
    """Both parties of two calls on process one, CALL_RELAY_MAX=1: the first relayed on one,
    the second on two. SIGKILL of two: the second call ends (media_failed) once, on one; the
    first one carries on."""
    env = {"CALL_FORCE_RELAY": "1", "CALL_RELAY_MAX": "1"}
    async with redis_pair(tmp_path, env) as (one, two):
        admin_token = await admin_login(one)
        panels = [await call_peer(one.url, "admin", admin_token) for _ in range(2)]
        visitors: list[Peer] = []
        media: list[Media] = []
        calls = []
        try:
            for n, panel in enumerate(panels):
                visitor, _, cid = await calling_visitor(one.url, f"Kopan{n}")
                visitors.append(visitor)
                ring = await visitor.call("call:ring", {"chat_id": cid})
                assert ring["ok"], ring
                call_id = ring["call_id"]
                calls.append(call_id)
                await panel.wait_for("call:incoming", lambda m, i=call_id: m["call_id"] == i)
                accepted = await panel.call("call:accept", {"call_id": call_id})
                assert accepted["ok"] and accepted["mode"] == "relay", accepted
                media += await relayed(visitor, panel, call_id)
            two.stop(signal.SIGKILL)
            for side in (visitors[1], panels[1]):
                ended = await side.wait_for(
                    "call:ended", lambda m: m["call_id"] == calls[1], timeout=STOPPED_WITHIN
                )
                assert ended["reason"] == "media_failed", ended
            # The call relayed on one still carries audio both ways, and was never ended.
            await asyncio.gather(*(m.hear() for m in media[:2]))
            for side in (visitors[0], panels[0]):
                assert not [m for m in side.events["call:ended"] if m["call_id"] == calls[0]]
            await hang_up(visitors[0], panels[0], calls[0])
        finally:
            for m in media:
                await m.close()
            for peer in (*visitors, *panels):
                await peer.close()
        for side in (visitors[1], panels[1]):
            assert [m["call_id"] for m in side.events["call:ended"]].count(calls[1]) == 1


@pytest.mark.parametrize("where", [0, 1])
async def test_the_echo_peer_answers_on_either_process(
    forced: tuple[Server, Server], where: int
) -> None:
    server = forced[where]
    visitor, _, cid = await calling_visitor(server.url, "Yankı")
    try:
        ring = await visitor.call("call:ring", {"chat_id": cid, "echo": True})
        assert ring["ok"] and ring["mode"] == "echo", ring
        call_id = ring["call_id"]
        echo = Media(visitor, call_id, VISITOR_HZ, VISITOR_HZ)
        try:
            answer = await echo.offer()
            assert answer["from"] == "server"
            await echo.hear()
            connected = await visitor.wait_for("call:connected", lambda m: m["call_id"] == call_id)
            assert connected["mode"] == "echo", connected
        finally:
            await echo.close()
        assert (await visitor.call("call:end", {"call_id": call_id}))["ok"]
        await visitor.wait_for("call:ended", lambda m: m["call_id"] == call_id)
    finally:
        await visitor.close()
