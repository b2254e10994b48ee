"""Two server processes on one PostgreSQL and one Redis, with the fake Telegram Bot API: ring
timeouts, the repair of abandoned calls and the Telegram ring notice happen once, whichever
process the parties are on and whichever process dies.

A call's ring ends on the process that rang, or on any other once its ring has run out or its
caller's process stopped beating (SIGKILL); the claims in Redis let exactly one of them end it,
leave its one "Missed call" message and turn its Telegram ring into "X called: Missed call".
"""

from __future__ import annotations

import asyncio
import secrets
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.calls import Media, call_peer, calling_visitor, system_messages
from tests.support.clients import Peer, admin_login
from tests.support.fake_telegram import FakeTelegram, SentMessage
from tests.support.server import (
    REDIS_URL,
    Server,
    create_pg_database,
    drop_pg_database,
    query,
    redis_pair,
)
from tests.support.telegram import login_via_telegram, telegram_env

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(300)]

LEASE = 3
LEADS = "telegram bridge leading"
# A killed process's heartbeat expires within PRESENCE_TTL_SECONDS (15 by default); its
# ringing call then ends on the next sweep: well within the 30 s presence must heal in.
ABANDONED_WITHIN = 30
VISITOR_HZ, ADMIN_HZ = 440.0, 660.0


@asynccontextmanager
async def telegram_pair(
    workdir: Path, ring_seconds: int
) -> AsyncIterator[tuple[FakeTelegram, Server, Server]]:
    """Two processes sharing PostgreSQL, Redis and one bot; (fake, leader, follower)."""
    url, name = await create_pg_database()
    async with FakeTelegram() as fake:
        env = telegram_env(
            fake,
            LEADER_LEASE_SECONDS=str(LEASE),
            CALL_RING_SECONDS=str(ring_seconds),
            REDIS_URL=REDIS_URL,
            REDIS_CHANNEL=f"sohbet-calls-{secrets.token_hex(4)}",
        )
        one = Server(url, workdir, env_extra=env)
        two = Server(url, workdir, env_extra=env)
        try:
            await asyncio.gather(one.start(), two.start())
            leader = await leader_of(one, two)
            yield fake, leader, two if leader is one else one
        finally:
            await asyncio.gather(asyncio.to_thread(one.stop), asyncio.to_thread(two.stop))
            await drop_pg_database(name)


async def leader_of(one: Server, two: Server, timeout: float = 30) -> Server:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        leading = [s for s in (one, two) if LEADS in s.log()]
        if leading:
            assert len(leading) == 1, "two leaders at once"
            return leading[0]
        await asyncio.sleep(0.2)
    raise AssertionError("no process took the Telegram lease")


def rings_of(fake: FakeTelegram, cid: str) -> list[SentMessage]:
    """The Telegram ring notices sent for a conversation."""
    return [m for m in fake.sent() if f"[CID: {cid}]" in (m.text or "") and "📞" in (m.text or "")]


async def ring_notice(fake: FakeTelegram, cid: str, count: int = 1) -> SentMessage:
    """The `count`-th ring notice of a conversation, once Telegram has it (the leader sends
    what any process queued within a few seconds)."""
    await fake.wait_for_sent(lambda _: len(rings_of(fake, cid)) >= count, timeout=20)
    return rings_of(fake, cid)[count - 1]


async def recorded_sent(server: Server, call_id: str, timeout: float = 20) -> None:
    """Wait until the leader has recorded the ring as sent (killing it between Telegram's
    answer and that record would send the ring again: the outbox delivers at least once)."""
    sql = f"SELECT 1 FROM tg_outbox WHERE dedupe_key = 'call:{call_id}' AND status = 'sent'"
    deadline = asyncio.get_running_loop().time() + timeout
    while not await query(server, sql):
        assert asyncio.get_running_loop().time() < deadline, "the ring was not recorded as sent"
        await asyncio.sleep(0.1)


def edits_of(fake: FakeTelegram, message: SentMessage) -> list[Any]:
    return [
        c
        for c in fake.calls("editMessageText")
        if int(c.params.get("message_id", 0)) == message.message_id
    ]


async def call_messages(server: Server, token: str, cid: str) -> list[dict[str, Any]]:
    return [m for m in await system_messages(server.url, token, cid) if m["type"] == "call"]


async def rings_once_more(survivor: Server, token: str, cid: str, fake: FakeTelegram) -> None:
    """The conversation is free again (a new ring goes through); its ring notice comes after
    anything queued before in the conversation's outbox lane, so by then a second end of the
    earlier call would have reached Telegram too."""
    page = await call_peer(survivor.url, "visitor", token)
    try:
        joined = await page.call("join", {"chat_id": cid})
        assert joined["ok"] and joined["call"] is None, joined
        again = await page.call("call:ring", {"chat_id": cid})
        assert again["ok"], again
        await ring_notice(fake, cid, 2)
        assert (await page.call("call:end", {"call_id": again["call_id"]}))["ok"]
        await page.wait_for("call:ended", lambda m: m["call_id"] == again["call_id"])
    finally:
        await page.close()


async def test_an_unanswered_ring_on_one_process_ends_once_and_telegram_hears_of_it_once(
    tmp_path: Path,
) -> None:
    ring_seconds = 5
    async with telegram_pair(tmp_path, ring_seconds) as (fake, leader, follower):
        token = await login_via_telegram(leader, fake)
        admin = await call_peer(leader.url, "admin", token)
        # The visitor rings on the process that does not hold the Telegram lease.
        visitor, visitor_token, cid = await calling_visitor(follower.url, "Çalan")
        try:
            ring = await visitor.call("call:ring", {"chat_id": cid})
            assert ring["ok"] and ring["ring_seconds"] == ring_seconds, ring
            call_id = ring["call_id"]
            await admin.wait_for("call:incoming", lambda m: m["call_id"] == call_id)
            notice = await ring_notice(fake, cid)
            assert "sizi arıyor" in (notice.text or ""), notice.text
            for side in (visitor, admin):
                ended = await side.wait_for(
                    "call:ended", lambda m: m["call_id"] == call_id, timeout=ring_seconds + 10
                )
                assert ended["reason"] == "timeout", ended
            # The ring in Telegram now says how it ended.
            await fake.wait_for_sent(
                lambda m: m is notice and "aradı: Cevapsız arama" in (m.text or ""),
                timeout=20,
            )
            late = await admin.call("call:accept", {"call_id": call_id})
            assert late["ok"] is False and late["error"] == "call_gone", late
        finally:
            await visitor.close()
        await rings_once_more(follower, visitor_token, cid, fake)
        await admin.close()
        assert [m["call_id"] for m in admin.events["call:ended"]].count(call_id) == 1
        assert len(edits_of(fake, notice)) == 1, edits_of(fake, notice)
        assert rings_of(fake, cid)[0].message_id == notice.message_id
        messages = await call_messages(leader, visitor_token, cid)
        # The first ring missed; the second, cancelled by its caller, missed as well.
        assert [m["text"] for m in messages] == ["📞 Cevapsız arama"] * 2, messages


@pytest.mark.parametrize("dies", ["follower", "leader"])
async def test_a_ringing_call_whose_process_is_killed_ends_once_on_the_survivor(
    tmp_path: Path, dies: str
) -> None:
    """SIGKILL of the process a ringing visitor is on (the Telegram leader or not): the
    operator's page on the survivor stops ringing, one "Missed call" is left, the Telegram ring
    says so once, the conversation is free again, and a call between two parties on the
    survivor carries on."""
    # The ring is long: what ends it is its caller's process stopping, not the ring's end.
    async with telegram_pair(tmp_path, 120) as (fake, leader, follower):
        doomed, survivor = (follower, leader) if dies == "follower" else (leader, follower)
        token = await login_via_telegram(survivor, fake)
        # Two operator pages on the survivor: one in a call there, the other free to ring.
        talking = await call_peer(survivor.url, "admin", token)
        free = await call_peer(survivor.url, "admin", token)
        staying, _, staying_cid = await calling_visitor(survivor.url, "Kalan")
        media: list[Media] = []
        peers: list[Peer] = [talking, free, staying]
        try:
            ring = await staying.call("call:ring", {"chat_id": staying_cid})
            assert ring["ok"], ring
            staying_call = ring["call_id"]
            await talking.wait_for("call:incoming", lambda m: m["call_id"] == staying_call)
            assert (await talking.call("call:accept", {"call_id": staying_call}))["ok"]
            await staying.wait_for("call:accepted", lambda m: m["call_id"] == staying_call)
            media = [
                Media(staying, staying_call, VISITOR_HZ, ADMIN_HZ),
                Media(talking, staying_call, ADMIN_HZ, VISITOR_HZ),
            ]
            await asyncio.gather(media[0].offer(), media[1].answer())
            await asyncio.gather(*(m.hear() for m in media))
            assert (await staying.call("call:connected", {"call_id": staying_call}))["ok"]

            caller, caller_token, cid = await calling_visitor(doomed.url, "Giden")
            peers.append(caller)
            ring = await caller.call("call:ring", {"chat_id": cid})
            assert ring["ok"], ring
            call_id = ring["call_id"]
            await free.wait_for("call:incoming", lambda m: m["call_id"] == call_id)
            notice = await ring_notice(fake, cid)
            await recorded_sent(survivor, call_id)

            doomed.stop(signal.SIGKILL)
            ended = await free.wait_for(
                "call:ended", lambda m: m["call_id"] == call_id, timeout=ABANDONED_WITHIN
            )
            assert ended["reason"] == "disconnected" and ended["by"] == "visitor", ended
            # Telegram (the survivor takes the lease if it did not hold it) hears of it.
            await fake.wait_for_sent(
                lambda m: m is notice and "aradı: Cevapsız arama" in (m.text or ""),
                timeout=LEASE * 3 + 20,
            )

            # The visitor's page went with its process: the operator's call cannot ring it.
            back = await free.call("call:ring", {"chat_id": cid})
            assert back["ok"] is False and back["error"] == "callee_offline", back

            # The call on the survivor went on throughout: still heard both ways, never ended.
            await asyncio.gather(*(m.hear() for m in media))
            for side in (staying, talking):
                assert not [m for m in side.events["call:ended"] if m["call_id"] == staying_call]
            joined = await talking.call("join", {"chat_id": staying_cid})
            assert joined["call"]["call_id"] == staying_call, joined
            assert joined["call"]["state"] == "active", joined
            assert (await talking.call("call:end", {"call_id": staying_call}))["ok"]
            hangup = await staying.wait_for("call:ended", lambda m: m["call_id"] == staying_call)
            assert hangup["reason"] == "hangup" and hangup["by"] == "admin", hangup

            await rings_once_more(survivor, caller_token, cid, fake)
        finally:
            for m in media:
                await m.close()
            for peer in peers:
                await peer.close()
        assert [m["call_id"] for m in free.events["call:ended"]].count(call_id) == 1
        assert len(edits_of(fake, notice)) == 1, edits_of(fake, notice)
        messages = await call_messages(survivor, caller_token, cid)
        assert [m["text"] for m in messages] == ["📞 Cevapsız arama"] * 2, messages


async def test_an_answered_call_whose_operator_process_is_killed_ends_once_for_the_visitor(
    tmp_path: Path,
) -> None:
    """A P2P call answered by the operator on process two; SIGKILL of two: the visitor on one
    is told the call ended (the operator left it, as when a page closes) once, and one "Call, m:ss" is left."""
    async with redis_pair(tmp_path) as (one, two):
        admin_token = await admin_login(two)
        visitor, token, cid = await calling_visitor(one.url, "Kalakalan")
        admin = await call_peer(two.url, "admin", admin_token)
        media: list[Media] = []
        try:
            ring = await visitor.call("call:ring", {"chat_id": cid})
            assert ring["ok"], ring
            call_id = ring["call_id"]
            await admin.wait_for("call:incoming", lambda m: m["call_id"] == call_id)
            assert (await admin.call("call:accept", {"call_id": call_id}))["ok"]
            await visitor.wait_for("call:accepted", lambda m: m["call_id"] == call_id)
            media = [
                Media(visitor, call_id, VISITOR_HZ, ADMIN_HZ),
                Media(admin, call_id, ADMIN_HZ, VISITOR_HZ),
            ]
            await asyncio.gather(media[0].offer(), media[1].answer())
            await asyncio.gather(*(m.hear() for m in media))
            assert (await visitor.call("call:connected", {"call_id": call_id}))["ok"]

            two.stop(signal.SIGKILL)
            ended = await visitor.wait_for(
                "call:ended", lambda m: m["call_id"] == call_id, timeout=ABANDONED_WITHIN
            )
            assert ended["reason"] == "disconnected" and ended["by"] == "admin", ended
            # The conversation is free: the visitor may ring again (nobody is there to answer).
            again = await visitor.call("call:ring", {"chat_id": cid})
            assert again["ok"] is False and again["error"] == "callee_offline", again
        finally:
            for m in media:
                await m.close()
            await visitor.close()
            await admin.close()
        assert [m["call_id"] for m in visitor.events["call:ended"]].count(call_id) == 1
        texts = [m["text"] for m in await call_messages(one, token, cid)]
        # The call, then the ring that found nobody (missed).
        assert len(texts) == 2 and texts[0].startswith("📞 Arama, "), texts
        assert texts[1] == "📞 Cevapsız arama", texts
