"""Test & Repair on the real app served in this process, where a test can reach inside it.

Scheduled slots are fired directly (what APScheduler calls at the time; the real firing is in
test_selftest_scaleout.py), to play several days of failures in a second: two failed runs in a
row raise one alert, not one per run. Repair drops presence entries of sockets that are gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from app.chat.rooms import ADMINS, visitor_room
from tests.support.clients import admin_csrf, call, start_visitor, visitor_peer
from tests.support.fake_telegram import FakeTelegram
from tests.support.inprocess import InProcessServer, ManualClock
from tests.support.server import free_port
from tests.support.telegram import login_via_telegram, telegram_env

ALERT = "Zamanlanmış öz testler üst üste iki kez başarısız oldu"


@pytest.fixture(scope="module")
async def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="module")
async def app_server(
    fake: FakeTelegram, clock: ManualClock, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[InProcessServer]:
    workdir: Path = tmp_path_factory.mktemp("selftest-inproc")
    server = await InProcessServer(workdir, telegram_env(fake), clock).start()
    yield server
    await server.stop()


@pytest.fixture(scope="module")
async def headers(app_server: InProcessServer, fake: FakeTelegram) -> dict[str, str]:
    token = await login_via_telegram(app_server, fake)
    return {
        "Cookie": f"sohbet_admin={token}",
        "X-CSRF-Token": await admin_csrf(app_server.url, token),
    }


def slot(day: int) -> datetime:
    """03:00 in Istanbul on a day of January 2030, in UTC."""
    return datetime(2030, 1, day, 0, 0, tzinfo=UTC)


async def drain(fake: FakeTelegram, clock: ManualClock, done: Any) -> None:
    """Let the outbox worker's backoff run out on the manual clock until `done()`."""
    for _ in range(400):
        if done():
            return
        clock.advance(5)
        await asyncio.sleep(0.02)
    raise AssertionError([m.text for m in fake.sent()])


# First in the module: tortoise allows one app per process, and the module's server below
# lives until the module ends.
async def test_web_socket_and_scheduler_checks_fail_with_a_clear_detail(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    server = await InProcessServer(tmp_path, {"SELFTEST_URL": dead}).start()
    try:
        svc = server.app.extensions["selftest"]
        await svc.schedules.create({"time_hhmm": "12:00", "tz": "UTC"})
        svc.scheduler._scheduler.remove_all_jobs()  # the scheduler lost its jobs
        report = await svc.tests.run("api")
        results = {r.name: r for r in report.results}
        assert results["web"].status == "fail"
        assert results["web"].detail.startswith("ClientConnectorError: Cannot connect to host")
        assert results["socket"].status == "fail"
        assert results["socket"].detail.startswith(f"{dead} adresine bağlanılamadı")
        assert results["database"].status == "pass"
        assert results["telegram"].status == "off"
        assert results["scheduler"].status == "fail"
        assert results["scheduler"].detail == "Görevi olmayan etkin test saatleri: #1"
        assert not report.ok
        from app.models import Conversation

        assert await Conversation.filter(synthetic=True).count() == 0, "cleaned up on failure too"
    finally:
        await server.stop()


async def test_two_failed_runs_in_a_row_raise_one_alert(
    app_server: InProcessServer, fake: FakeTelegram, clock: ManualClock, headers: dict[str, str]
) -> None:
    svc = app_server.app.extensions["selftest"]
    status, made = await call(
        app_server, "POST", "/api/test/schedule", headers,  # type: ignore[arg-type]
        {"time_hhmm": "03:00", "tz": "Europe/Istanbul"},
    )  # fmt: skip
    assert status == 201
    sid = made["id"]

    def reports() -> list[str]:
        return [m.text or "" for m in fake.sent() if "zamanlanmış, 03:00" in (m.text or "")]

    def alerts() -> list[str]:
        return [m.text or "" for m in fake.sent() if ALERT in (m.text or "")]

    fake.outage(True)
    try:
        for day in (1, 2, 3):
            report = await svc.scheduler.fire(sid, slot(day))
            assert report is not None and not report.ok
            assert [r.name for r in report.results if r.status == "fail"] == ["telegram"]
        assert await svc.scheduler.fire(sid, slot(3)) is None, "a slot runs once"
        assert await svc.scheduler.fire(sid, slot(4).replace(minute=1)) is None, "not its time"
    finally:
        fake.outage(False)
    await drain(fake, clock, lambda: len(reports()) == 3 and alerts())
    await asyncio.sleep(0.3)
    assert len(alerts()) == 1, alerts()
    assert "Başarısız: Telegram" in alerts()[0]
    assert all("❌ Telegram" in text for text in reports())

    report = await svc.scheduler.fire(sid, slot(4))
    assert report is not None and report.ok, report
    fake.outage(True)
    try:
        for day in (5, 6):
            report = await svc.scheduler.fire(sid, slot(day))
            assert report is not None and not report.ok
    finally:
        fake.outage(False)
    await drain(fake, clock, lambda: len(reports()) == 6 and len(alerts()) == 2)
    assert len(alerts()) == 2, "a new streak, a new alert"

    status, history = await call(app_server, "GET", "/api/test/runs", headers)  # type: ignore[arg-type]
    scheduled = [r for r in history["runs"] if r["trigger"] == "schedule"]
    assert [r["slot_at"] for r in scheduled] == [
        f"2030-01-0{day}T00:00:00Z" for day in (6, 5, 4, 3, 2, 1)
    ]


async def test_repair_drops_presence_of_gone_sockets(
    app_server: InProcessServer, headers: dict[str, str]
) -> None:
    chat = app_server.app.extensions["sohbet"].chat
    token, cid = await start_visitor(app_server.url, "Canlı")
    visitor = await visitor_peer(app_server.url, token)
    try:
        live_key = visitor_room(await chat.queries.id_for_cid(cid))
        assert await chat.fanout.presence.online(live_key)
        # Sockets whose disconnect was never handled (a crashed handler) stay "online".
        await chat.fanout.presence.add(ADMINS, "gone-sid-1")
        await chat.fanout.presence.add(visitor_room(987654), "gone-sid-2")
        assert await chat.fanout.presence.online(ADMINS)

        status, first = await call(app_server, "POST", "/api/repair/run", headers)  # type: ignore[arg-type]
        assert status == 200 and first["counts"]["presence"] == 2, first
        assert not await chat.fanout.presence.online(ADMINS)
        assert not await chat.fanout.presence.online(visitor_room(987654))
        assert await chat.fanout.presence.online(live_key), "a live socket is kept"
        # The visitor is told the operator is not there after all.
        await visitor.wait_for("presence:operator", lambda p: p["online"] is False)

        status, second = await call(app_server, "POST", "/api/repair/run", headers)  # type: ignore[arg-type]
        assert second["counts"]["presence"] == 0, second
    finally:
        await visitor.close()
