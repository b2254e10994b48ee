"""Calls on the reference cluster (HAProxy in front of two processes, one PostgreSQL, one
Redis): the visitor on process one calls the operator on process two and the operator calls
back, P2P and with every call relayed (CALL_FORCE_RELAY), with real aiortc peers hearing each
other's tones through the balancer's one address."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from app.chat.rooms import ADMINS, visitor_room
from tests.support.calls import CALL_EVENTS, Media
from tests.support.clients import ADMIN_COOKIE, VISITOR_COOKIE, Peer, admin_login, start_visitor
from tests.support.cluster import PROCESS_COOKIE, Cluster, cluster, on_process
from tests.support.server import REDIS_URL

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

VISITOR_HZ, ADMIN_HZ = 440.0, 660.0


async def call_sockets_on(c: Cluster, room: str) -> set[int]:
    """Which processes (1-based) hold `/call` sockets of a room, read from Redis."""
    prefix = c.servers[0].environment()["REDIS_CHANNEL"]
    client = aioredis.from_url(REDIS_URL, decode_responses=True)
    try:
        members = await client.smembers(f"{prefix}:calls:presence:call:{room}")
    finally:
        await client.aclose()
    pids = {n: server.proc.pid for n, server in enumerate(c.servers, 1) if server.proc}
    host = socket.gethostname()
    return {n for m in members for n, pid in pids.items() if str(m).startswith(f"{host}-{pid}-")}


async def talk(caller: Peer, callee: Peer, call_id: str, relayed: bool) -> None:
    """The two parties connect (P2P: the caller offers, the callee answers; relayed: both offer
    to the server), each hears the other, and the caller hangs up."""
    hz = {caller: VISITOR_HZ if caller.role == "visitor" else ADMIN_HZ}
    hz[callee] = ADMIN_HZ if caller.role == "visitor" else VISITOR_HZ
    media = [
        Media(side, call_id, hz[side], hz[other])
        for side, other in ((caller, callee), (callee, caller))
    ]
    try:
        if relayed:
            # Each party's answers from earlier calls are behind it.
            await asyncio.gather(*(m.offer(len(m.peer.events["rtc:answer"])) for m in media))
        else:
            await asyncio.gather(
                media[0].offer(len(caller.events["rtc:answer"])), media[1].answer()
            )
        await asyncio.gather(*(m.hear() for m in media))
        if relayed:
            for side in (caller, callee):
                connected = await side.wait_for("call:connected", lambda m: m["call_id"] == call_id)
                assert connected["mode"] == "relay", connected
        assert (await caller.call("call:end", {"call_id": call_id}))["ok"]
        for side in (caller, callee):
            ended = await side.wait_for("call:ended", lambda m: m["call_id"] == call_id)
            assert ended["reason"] == "hangup" and ended["by"] == caller.role, ended
    finally:
        for m in media:
            await m.close()


@pytest.mark.parametrize("relayed", [False, True], ids=["p2p", "forced-relay"])
async def test_a_call_across_the_balancer_and_back(tmp_path: Path, relayed: bool) -> None:
    env = {"CALL_FORCE_RELAY": "1" if relayed else "0"}
    async with cluster(tmp_path, 2, env) as c:
        admin_token = await admin_login(c.servers[1])
        token, cid = await start_visitor(c.url, "Küme", headers={"Cookie": f"{PROCESS_COOKIE}=p1"})
        visitor = await Peer(
            c.url,
            on_process(f"{VISITOR_COOKIE}={token}", 1),
            "visitor",
            namespace="/call",
            events=CALL_EVENTS,
        ).connect()
        admin = await Peer(
            c.url,
            on_process(f"{ADMIN_COOKIE}={admin_token}", 2),
            "admin",
            namespace="/call",
            events=CALL_EVENTS,
        ).connect()
        try:
            assert (await visitor.call("join", {"chat_id": cid}))["ok"]
            # The one conversation of this fresh database is the first.
            assert await call_sockets_on(c, visitor_room(1)) == {1}
            assert await call_sockets_on(c, ADMINS) == {2}
            mode = "relay" if relayed else "p2p"
            for caller, callee in ((visitor, admin), (admin, visitor)):
                ring = await caller.call("call:ring", {"chat_id": cid})
                assert ring["ok"], ring
                call_id = ring["call_id"]
                await callee.wait_for("call:incoming", lambda m, i=call_id: m["call_id"] == i)
                accepted = await callee.call("call:accept", {"call_id": call_id})
                assert accepted["ok"] and accepted["mode"] == mode, accepted
                await caller.wait_for("call:accepted", lambda m, i=call_id: m["call_id"] == i)
                await talk(caller, callee, call_id, relayed)
        finally:
            await visitor.close()
            await admin.close()
