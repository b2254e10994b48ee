"""Scheduled self-tests firing for real (APScheduler, the next minute), on PostgreSQL.

Two server processes share one database and one test time: both fire, exactly one runs the
slot and one report reaches Telegram. A third server's database is dropped before its slot:
its report still reaches Telegram, sent directly, with the Database check failed.
Both scenes share the one minute they wait for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from tests.support.clients import admin_csrf, call
from tests.support.fake_telegram import FakeTelegram, SentMessage
from tests.support.server import Server, create_pg_database, drop_pg_database, query
from tests.support.telegram import SUMMARY_OK, login_via_telegram, telegram_env

pytestmark = pytest.mark.postgres

ZONE = "Asia/Kathmandu"  # UTC+05:45: the slot's local time differs from UTC in the minutes too


@dataclass
class Scene:
    one: Server
    two: Server
    lone: Server
    shared: FakeTelegram
    alone: FakeTelegram
    slot: datetime
    hhmm: str
    schedule_id: int
    lone_db: str


async def headers_for(server: Server, fake: FakeTelegram) -> dict[str, str]:
    token = await login_via_telegram(server, fake)
    return {"Cookie": f"sohbet_admin={token}", "X-CSRF-Token": await admin_csrf(server.url, token)}


def next_slot(margin: float = 8.0) -> datetime:
    now = datetime.now(UTC)
    slot = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return slot if (slot - now).total_seconds() >= margin else slot + timedelta(minutes=1)


@pytest.fixture(scope="module")
async def scene(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scene]:
    workdir: Path = tmp_path_factory.mktemp("selftest-scale")
    shared_url, shared_db = await create_pg_database()
    lone_url, lone_db = await create_pg_database()
    async with FakeTelegram() as shared, FakeTelegram() as alone:
        one = Server(shared_url, workdir, env_extra=telegram_env(shared))
        two = Server(shared_url, workdir, env_extra=telegram_env(shared))
        lone = Server(lone_url, workdir, env_extra=telegram_env(alone))
        servers = (one, two, lone)
        try:
            await asyncio.gather(*(s.start() for s in servers))
            one_headers, lone_headers = await asyncio.gather(
                headers_for(one, shared), headers_for(lone, alone)
            )
            two_headers = one_headers  # the session is in the shared database

            slot = next_slot()
            hhmm = slot.astimezone(ZoneInfo(ZONE)).strftime("%H:%M")
            body = {"time_hhmm": hhmm, "tz": ZONE}
            status, made = await call(one, "POST", "/api/test/schedule", one_headers, body)
            assert status == 201, made
            # The other process follows the table within 30 s, or at once when asked.
            _, listed = await call(two, "GET", "/api/test/schedule", two_headers)
            assert listed["schedules"][0]["next_run"] == slot.isoformat().replace("+00:00", "Z")
            status, _ = await call(lone, "POST", "/api/test/schedule", lone_headers, body)
            assert status == 201
            await drop_pg_database(lone_db)  # WITH (FORCE): its connections are cut

            yield Scene(one, two, lone, shared, alone, slot, hhmm, made["id"], lone_db)
        finally:
            await asyncio.gather(*(asyncio.to_thread(s.stop) for s in servers))
            await drop_pg_database(shared_db)
            await drop_pg_database(lone_db)


def scheduled_report(slot: datetime) -> object:
    """The report of one slot; it names the slot in the display zone (TZ)."""
    shown = slot.astimezone(ZoneInfo("Europe/Istanbul")).strftime("%H:%M")
    return lambda m: f"Öz test raporu (zamanlanmış, {shown})" in (m.text or "")


async def wait_for_slot(scene: Scene, fake: FakeTelegram) -> SentMessage:
    wait = (scene.slot - datetime.now(UTC)).total_seconds() + 30
    return await fake.wait_for_sent(scheduled_report(scene.slot), timeout=max(wait, 1))  # type: ignore[arg-type]


async def lost_claim(servers: tuple[Server, ...], within: float) -> None:
    """Wait up to `within` seconds for a process to log that it lost the slot's claim."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if any("another process runs it" in s.log() for s in servers):
            return
        await asyncio.sleep(0.1)


async def test_two_processes_run_each_slot_once(scene: Scene) -> None:
    report = await wait_for_slot(scene, scene.shared)
    await lost_claim((scene.one, scene.two), within=3)  # the other process had its chance too
    texts = [m.text for m in scene.shared.sent() if scheduled_report(scene.slot)(m)]  # type: ignore[operator]
    assert len(texts) == 1, texts
    assert (report.text or "").splitlines()[1] == SUMMARY_OK, report.text

    slot_sql = scene.slot.strftime("%Y-%m-%d %H:%M:%S+00")
    claims = await query(
        scene.one,
        "SELECT process FROM selftest_slot WHERE schedule_id = "
        f"{scene.schedule_id} AND slot_at = '{slot_sql}'",
    )
    assert len(claims) == 1
    runs = await query(scene.one, "SELECT COUNT(*) FROM selftest_run WHERE trigger = 'schedule'")
    assert runs == [(1,)]
    # Both processes fired; the one that lost the claim said so and did nothing else.
    lost = [s for s in (scene.one, scene.two) if "another process runs it" in s.log()]
    assert len(lost) == 1, [s.log()[-2000:] for s in (scene.one, scene.two)]
    winner = scene.two if lost[0] is scene.one else scene.one
    assert "self-test (schedule)" in winner.log() and "self-test (schedule)" not in lost[0].log()


async def test_a_lost_database_is_reported_all_the_same(scene: Scene) -> None:
    report = await wait_for_slot(scene, scene.alone)
    text = report.text or ""
    assert "✅ Web, ❌ Soket, ❌ Veritabanı, ❌ Telegram, ✅ Depolama, ✅ Zamanlayıcı" in text, text
    database = next(line for line in text.splitlines() if "<b>Veritabanı</b>" in line)
    assert scene.lone_db in database and "does not exist" in database, database
    print("\n" + text)
    async with aiohttp.ClientSession() as http:
        async with http.get(scene.lone.url + "/health/ready") as r:
            assert r.status == 503
            body = await r.json()
        assert body["status"] == "unavailable" and body["reason"].startswith("database: ")
        async with http.get(scene.lone.url + "/health") as r:
            assert r.status == 200, "liveness stays cheap: the process itself is fine"
