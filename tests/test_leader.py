"""Two server processes on one PostgreSQL database and one Redis: one Telegram leader.

Every process accepts visitors and writes outbox rows; only the lease holder delivers the
outbox, handles updates and polls getUpdates. When the leader is killed, the other process
takes the lease over once it expires and carries on: every message reaches Telegram exactly
once, and the operator's Telegram replies reach visitors on either process.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.clients import client_id
from tests.support.fake_telegram import FakeTelegram
from tests.support.server import REDIS_URL, Server, create_pg_database, drop_pg_database, query
from tests.support.telegram import telegram_env, visitor_with_chat, with_text

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(600)]
LEASE = 3
LEADS = "telegram bridge leading"


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[FakeTelegram, Server, Server]]:
    url, name = await create_pg_database()
    async with FakeTelegram() as fake:
        env = telegram_env(
            fake,
            LEADER_LEASE_SECONDS=str(LEASE),
            REDIS_URL=REDIS_URL,
            REDIS_CHANNEL=f"sohbet-leader-{secrets.token_hex(4)}",
        )
        one = Server(url, tmp_path, env_extra=env)
        two = Server(url, tmp_path, env_extra=env)
        try:
            await asyncio.gather(one.start(), two.start())
            yield fake, one, two
        finally:
            one.stop()
            two.stop()
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


async def wait_for_log(server: Server, text: str, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while text not in server.log():
        assert loop.time() < deadline, f"{text!r} not logged in {timeout}s"
        await asyncio.sleep(0.2)


async def test_one_leader_delivers_everything_once_and_a_successor_takes_over(
    pair: tuple[FakeTelegram, Server, Server],
) -> None:
    fake, one, two = pair
    leader = await leader_of(one, two)
    follower = two if leader is one else one
    on_leader, cid_l = await visitor_with_chat(leader, "Lider")
    on_follower, cid_f = await visitor_with_chat(follower, "Takipci")
    try:
        for n in range(10):
            for peer, cid, who in ((on_leader, cid_l, "L"), (on_follower, cid_f, "F")):
                ack = await peer.call(
                    "send", {"chat_id": cid, "text": f"{who}-{n}", "client_id": client_id()}
                )
                assert ack["ok"], ack
        for who in "LF":
            await fake.wait_for_sent(with_text(f"{who}-9"), timeout=30)
        # The operator answers the follower's visitor from Telegram: the leader handles the
        # update and the reply reaches the other process's socket through Redis.
        forwarded = await fake.wait_for_sent(with_text("F-0"))
        await fake.admin_text("cevap", reply_to=forwarded)
        got = await on_follower.wait_for("chat:message", lambda m: m["text"] == "cevap", 30)
        assert got["role"] == "admin"
        # Only the leader ever polled.
        assert LEADS not in follower.log()
        polls_before = len(fake.calls("getUpdates"))
        assert polls_before > 0
    finally:
        await on_leader.close()

    first_holder = await query(follower, "SELECT holder FROM lease WHERE name = 'telegram'")
    # The leader dies without a word; the follower waits out the lease and takes over.
    leader.stop(signal.SIGKILL)
    for n in range(10, 15):
        ack = await on_follower.call(
            "send", {"chat_id": cid_f, "text": f"F-{n}", "client_id": client_id()}
        )
        assert ack["ok"], ack
    await wait_for_log(follower, LEADS, timeout=LEASE * 5)
    await fake.wait_for_sent(with_text("F-14"), timeout=30)
    await fake.admin_text("ikinci cevap", reply_to=forwarded)
    await on_follower.wait_for("chat:message", lambda m: m["text"] == "ikinci cevap", 30)
    await on_follower.close()

    await asyncio.sleep(2)  # anything sent twice would have gone out by now
    texts = [m.text or "" for m in fake.sent()]
    for who, count in (("L", 10), ("F", 15)):
        for n in range(count):
            sent = [t for t in texts if t.endswith(f"\n{who}-{n}")]
            assert len(sent) == 1, (who, n, sent)
    pending = await query(follower, "SELECT COUNT(*) FROM tg_outbox WHERE status <> 'sent'")
    assert pending == [(0,)]
    holders = await query(follower, "SELECT holder FROM lease WHERE name = 'telegram'")
    assert len(holders) == 1 and holders != first_holder, (first_holder, holders)
