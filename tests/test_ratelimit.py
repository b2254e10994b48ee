"""Rate budgets against their real storages: this process's memory, and Redis or PostgreSQL,
where several processes (here: several limiters, as each process builds its own) count
together."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import time
from collections.abc import AsyncIterator

import pytest

from app.core.ratelimit import (
    SWEEP_AT,
    DatabaseBudget,
    Limiter,
    LocalBudget,
    SeededBudget,
    SharedBudget,
    SlidingWindow,
)
from tests.support.server import REDIS_URL, ROOT, create_pg_database, drop_pg_database


def test_budget_per_key() -> None:
    window = SlidingWindow(2, 60)
    assert window.hit("a") == 0 and window.hit("a") == 0
    assert 59 < window.hit("a") <= 60, "the third event in a minute waits for the first to age"
    assert window.hit("b") == 0, "another key has its own budget"


def test_keys_whose_window_passed_are_forgotten() -> None:
    """A long-running process sees a key per conversation or socket ever seen: the ones whose
    window has passed must go, or the table grows for ever. (Before, only keys with no events
    left were swept, which a key whose window passed unchecked never is; past 10,000 keys every
    event then rebuilt the table: ~490 µs per message here.)"""
    window = SlidingWindow(30, 0.05)
    for n in range(SWEEP_AT):
        window.hit(f"old-{n}")
    time.sleep(0.1)
    for n in range(SWEEP_AT):
        window.hit(f"new-{n}")
    assert len(window) <= SWEEP_AT + 1, len(window)
    assert window.hit("new-0") == 0 and len(window) <= SWEEP_AT + 1


async def test_without_redis_budgets_are_counted_in_memory() -> None:
    limiter = Limiter()
    assert not limiter.shared
    budget = limiter.budget("messages", 2, 60)
    assert isinstance(budget, LocalBudget)
    assert [await budget.hit("c1") for _ in range(2)] == [0, 0]
    wait = await budget.hit("c1")
    assert 59 < wait <= 60
    await budget.refund("c1")
    assert await budget.hit("c1") == 0, "a refunded event gives its place back"
    assert await budget.hit("c2") == 0, "another key has its own budget"
    await limiter.close()


@pytest.fixture
async def limiters() -> AsyncIterator[tuple[Limiter, Limiter]]:
    """Two limiters on one Redis, as two processes of one deployment build them."""
    prefix = f"sohbet-test-{secrets.token_hex(4)}"
    first, second = Limiter(REDIS_URL, prefix), Limiter(REDIS_URL, prefix)
    yield first, second
    await first.close()
    await second.close()


@pytest.mark.redis
async def test_processes_on_one_redis_share_a_budget(limiters: tuple[Limiter, Limiter]) -> None:
    one, two = (limiter.budget("messages", 5, 60) for limiter in limiters)
    assert isinstance(one, SharedBudget) and isinstance(two, SharedBudget)
    # Alternating processes: together they allow the budget once, not once each.
    allowed = [await (one if n % 2 else two).hit("c1") == 0 for n in range(10)]
    assert allowed == [True] * 5 + [False] * 5
    wait = await one.hit("c1")
    assert 58 < wait <= 60, "the wait is until the first event ages out of the window"
    assert await two.hit("c2") == 0, "another key has its own budget"


@pytest.mark.redis
async def test_budgets_with_other_names_or_deployments_are_apart(
    limiters: tuple[Limiter, Limiter],
) -> None:
    first, _ = limiters
    messages, uploads = first.budget("messages", 1, 60), first.budget("uploads", 1, 60)
    assert await messages.hit("c1") == 0 and await uploads.hit("c1") == 0
    other = Limiter(REDIS_URL, f"sohbet-test-{secrets.token_hex(4)}")
    try:
        assert await other.budget("messages", 1, 60).hit("c1") == 0, "another REDIS_CHANNEL"
    finally:
        await other.close()


@pytest.mark.redis
async def test_a_refund_on_one_process_frees_a_place_for_all(
    limiters: tuple[Limiter, Limiter],
) -> None:
    """A right password takes its counted try back, whichever process counted it."""
    one, two = (limiter.budget("password_tries", 3, 900) for limiter in limiters)
    assert [await one.hit("addr") for _ in range(3)] == [0, 0, 0]
    assert await two.hit("addr") > 0
    await two.refund("addr")
    assert await one.hit("addr") == 0
    assert await two.hit("addr") > 0


@pytest.mark.redis
async def test_a_short_window_frees_places_as_events_age(
    limiters: tuple[Limiter, Limiter],
) -> None:
    one, two = (limiter.budget("rings", 2, 1) for limiter in limiters)
    assert await one.hit("c1") == 0 and await two.hit("c1") == 0
    wait = await one.hit("c1")
    assert 0 < wait <= 1
    # Waiting as long as the budget says (again, if the sleep woke a little early) frees the
    # oldest place, on the other process too.
    deadline = time.monotonic() + 5
    while wait := await two.hit("c1"):
        assert wait <= 1 and time.monotonic() < deadline
        await asyncio.sleep(wait)


@pytest.mark.redis
async def test_hits_made_at_once_share_one_round_trip_and_still_count_exactly(
    limiters: tuple[Limiter, Limiter],
) -> None:
    """Many sends at one moment (one turn of the event loop), on both processes: each
    process's hits go to Redis in one pipeline, and the budget still allows exactly its
    number, whatever the mix of keys and processes."""
    one, two = (limiter.budget("messages", 5, 60) for limiter in limiters)
    assert isinstance(one, SharedBudget) and isinstance(two, SharedBudget)
    before = one.acquires.round_trips, two.acquires.round_trips
    waits = await asyncio.gather(
        *((one if n % 2 else two).hit("same" if n < 12 else f"own-{n}") for n in range(32))
    )
    assert sum(1 for w in waits[:12] if w == 0) == 5, waits[:12]
    assert all(0 < w <= 60 for w in waits[:12] if w), waits[:12]
    assert waits[12:] == [0.0] * 20, "other keys have their own budgets"
    assert one.acquires.round_trips - before[0] == 1
    assert two.acquires.round_trips - before[1] == 1
    # limits reads the same window: a refund on either process frees one place for all.
    await one.refund("same")
    assert await two.hit("same") == 0
    assert await one.hit("same") > 0


async def test_unreachable_redis_counts_in_this_process(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing listens on port 1: sends are neither all refused nor all let through."""
    limiter = Limiter("redis://127.0.0.1:1/0", "sohbet-test")
    try:
        budget = limiter.budget("messages", 2, 60)
        assert [await budget.hit("c1") > 0 for _ in range(4)] == [False, False, True, True]
        await budget.refund("c1")
        assert await budget.hit("c1") == 0
        warnings = [r for r in caplog.records if "Redis unreachable" in r.getMessage()]
        assert len(warnings) == 1, "one warning when the outage starts, not one per event"
    finally:
        await limiter.close()


def test_budgets_are_counted_where_the_deployment_shares_them() -> None:
    """Redis when there is one; else PostgreSQL; else (SQLite: one process) memory. The
    per-message budget never costs a database round trip."""
    assert Limiter("", "p", "sqlite://data/sohbet.db").where == "memory"
    assert isinstance(
        Limiter("", "p", "sqlite://x.db").budget("password_tries", 10, 900), LocalBudget
    )
    postgres = Limiter("", "p", "postgres://u@127.0.0.1:5432/db")
    assert postgres.where == "database" and postgres.shared
    assert isinstance(postgres.budget("password_tries", 10, 900), DatabaseBudget)
    assert isinstance(postgres.budget("messages", 30, 60, hot=True), LocalBudget)
    assert Limiter("", "p", "postgresql://u@127.0.0.1/db").where == "database"
    assert Limiter(REDIS_URL, "p", "postgres://u@127.0.0.1:5432/db").where == "redis"


@pytest.mark.postgres
async def test_processes_on_one_postgresql_share_a_budget() -> None:
    """Two limiters on one PostgreSQL database (no Redis), in a fresh interpreter: what the
    Redis tests above show, in the database's moving windows."""
    url, name = await create_pg_database()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.support.db_budgets",
            url,
            # Nothing listens on port 1.
            "postgres://postgres@127.0.0.1:1/none",
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        await drop_pg_database(name)
    assert proc.returncode == 0, err.decode()
    seen = json.loads(out.decode().strip().splitlines()[-1])
    assert seen["where"] == ["database", "database"]
    assert seen["types"] == ["DatabaseBudget", "DatabaseBudget"] and seen["hot"] == "LocalBudget"
    assert seen["alternating"] == [True] * 5 + [False] * 5, "together once, not once each"
    assert 58 < seen["wait"] <= 60, "the wait is until the first event ages out of the window"
    assert seen["other_key"] == 0 and seen["other_name"] == 0
    refund = seen["refund"]
    assert refund[:3] == [0, 0, 0] and refund[3] > 0, refund
    assert refund[4] == 0 and refund[5] > 0, "a refund on one process frees a place for all"
    assert seen["parallel_allowed"] == 20
    short = seen["short"]
    assert short[:2] == [0, 0] and 0 < short[2] <= 1, short
    assert seen["short_slept"] and all(0 < w <= 1 for w in seen["short_slept"]), seen
    assert seen["swept"], "rows whose window has passed are deleted"
    assert seen["stored_keys"] and all(
        "addr" not in key and len(key) == len("password_tries:") + 40 for key in seen["stored_keys"]
    ), "keys (addresses, session tokens) are stored hashed"
    unreachable = seen["unreachable"]
    assert unreachable["refused"] == [False, False, True, True], unreachable
    assert unreachable["after_refund"] == 0 and unreachable["warnings"] == 1, unreachable


async def test_a_seeded_budget_starts_from_the_events_already_counted() -> None:
    """Without Redis the per-message budget is in memory, learnt once per key from what is
    stored (the visitor's messages of the last minute): the first check of a key asks, the
    following ones do not."""
    asked: list[str] = []

    async def stored(key: str) -> list[float]:
        asked.append(key)
        return {"busy": [50.0, 20.0, 1.0], "old": [61.0, 90.0]}.get(key, [])

    budget = Limiter("", "p", "postgres://u@127.0.0.1/db").budget(
        "messages", 4, 60, hot=True, seed=stored
    )
    assert isinstance(budget, SeededBudget)
    assert await budget.hit("busy") == 0, "three of four used: one left"
    wait = await budget.hit("busy")
    assert 9 < wait <= 10, "free when the event 50 s ago leaves the window"
    assert [await budget.hit("old") for _ in range(4)] == [0, 0, 0, 0], "aged out: all four"
    assert await budget.hit("new") == 0
    assert asked == ["busy", "old", "new"], "one question per key, not per event"


def test_a_key_whose_events_were_all_refunded_survives_a_sweep() -> None:
    window = SlidingWindow(2, 60)
    window.hit("refunded")
    window.refund("refunded")
    for n in range(SWEEP_AT + 1):
        window.hit(f"k{n}")
    assert window.hit("refunded") == 0
