"""Scheduled self-tests: one APScheduler cron job per enabled test time, one run per slot.

Jobs follow the table at once in the process that changed it, and within SYNC_SECONDS in every
other process. With several processes each one fires its jobs, but a run needs a claimed
(schedule, slot) row first: the unique constraint lets exactly one of them through.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from tortoise.exceptions import IntegrityError

from app.models import SelfTestSchedule, SelfTestSlot

if TYPE_CHECKING:
    from app.selftest.service import Report, SelfTests

log = logging.getLogger("sohbet.selftest.scheduler")

SYNC_SECONDS = 30
SYNC_JOB = "selftest-sync"
# A job late by up to this much still runs (a busy loop); its slot is still its own minute.
GRACE_SECONDS = 55
CLAIMS_KEPT = timedelta(days=7)


def job_id(schedule_id: int) -> str:
    return f"selftest-{schedule_id}"


class SelfTestScheduler:
    """Owns the AsyncIOScheduler and keeps its jobs equal to the enabled schedule rows."""

    def __init__(self, tests: SelfTests) -> None:
        self.tests = tests
        self.process = f"{socket.gethostname()}-{os.getpid()}"
        self._scheduler = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": GRACE_SECONDS,
            },
        )
        # What each job was made from: (HH:MM, zone). Compared at fire time and when syncing.
        self._jobs: dict[int, tuple[str, str]] = {}

    # Lifecycle -----------------------------------------------------------------------------------

    async def serve(self) -> AsyncGenerator[None, None]:
        """Run the scheduler while the app serves (after the database is up)."""
        logging.getLogger("apscheduler").setLevel(logging.WARNING)  # no line per job run
        self._scheduler.start()
        try:
            await self.reload()
        except Exception:
            log.exception("could not load the test times; retrying every %ss", SYNC_SECONDS)
        self._scheduler.add_job(self._sync, "interval", seconds=SYNC_SECONDS, id=SYNC_JOB)
        try:
            yield
        finally:
            self._scheduler.shutdown(wait=False)
            await asyncio.sleep(0)  # AsyncIOScheduler shuts down on the loop's next turn

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)

    # Keeping jobs equal to rows ----------------------------------------------------------------

    def apply(self, row: SelfTestSchedule) -> None:
        """Add, move or remove the job of one schedule row (called after every change)."""
        if not row.enabled:
            self.drop(row.id)
            return
        spec = (row.time_hhmm, row.tz)
        if self._jobs.get(row.id) == spec and self._scheduler.get_job(job_id(row.id)):
            return
        hour, minute = (int(part) for part in row.time_hhmm.split(":"))
        self._scheduler.add_job(
            self._on_time,
            CronTrigger(hour=hour, minute=minute, timezone=ZoneInfo(row.tz)),
            id=job_id(row.id),
            args=[row.id],
            replace_existing=True,
        )
        self._jobs[row.id] = spec
        log.info("test time #%s set to %s %s", row.id, row.time_hhmm, row.tz)

    def drop(self, schedule_id: int) -> None:
        """Remove a schedule's job, if it has one."""
        if self._jobs.pop(schedule_id, None) is not None and self._scheduler.get_job(
            job_id(schedule_id)
        ):
            self._scheduler.remove_job(job_id(schedule_id))
            log.info("test time #%s removed", schedule_id)

    async def reload(self) -> None:
        """Make the jobs match the table (changes made by other processes arrive this way)."""
        rows = await SelfTestSchedule.all()
        for row in rows:
            self.apply(row)
        for gone in set(self._jobs) - {row.id for row in rows}:
            self.drop(gone)

    async def _sync(self) -> None:
        try:
            await self.reload()
        except Exception as exc:
            log.warning("could not reload the test times: %s", exc)

    def next_run(self) -> datetime | None:
        """The next scheduled self-test, in UTC."""
        times = [
            job.next_run_time
            for job in self._scheduler.get_jobs()
            if job.id != SYNC_JOB and job.next_run_time is not None
        ]
        return min(times).astimezone(UTC) if times else None

    def next_run_of(self, schedule_id: int) -> datetime | None:
        """When one schedule runs next (None while disabled), in UTC."""
        job = self._scheduler.get_job(job_id(schedule_id))
        if job is None or job.next_run_time is None:
            return None
        moment: datetime = job.next_run_time.astimezone(UTC)
        return moment

    async def missing_jobs(self) -> list[int]:
        """Enabled rows that have no job in this process (the Scheduler check fails on these)."""
        enabled = await SelfTestSchedule.filter(enabled=True).only("id")
        return sorted(row.id for row in enabled if not self._scheduler.get_job(job_id(row.id)))

    # Firing ------------------------------------------------------------------------------------

    async def _on_time(self, schedule_id: int) -> None:
        # Every process computes the same slot: the minute the cron trigger fired for.
        slot = datetime.now(UTC).replace(second=0, microsecond=0)
        try:
            await self.fire(schedule_id, slot)
        except Exception:
            log.exception("scheduled self-test #%s at %s failed to run", schedule_id, slot)

    async def fire(self, schedule_id: int, slot: datetime) -> Report | None:
        """Run the tests for one slot of one schedule, unless another process claimed it."""
        spec = self._jobs.get(schedule_id)
        try:
            row = await SelfTestSchedule.get_or_none(id=schedule_id)
        except Exception as exc:
            # The database is down: that is worth a report more than ever; trust the job.
            log.warning(
                "test time #%s: cannot read it (%s); running as scheduled", schedule_id, exc
            )
        else:
            if row is None or not row.enabled:
                return None
            spec = (row.time_hhmm, row.tz)
        if spec is None or slot.astimezone(ZoneInfo(spec[1])).strftime("%H:%M") != spec[0]:
            log.info("test time #%s changed before %s; not running", schedule_id, slot)
            return None
        if not await self._claim(schedule_id, slot):
            return None
        return await self.tests.run("schedule", schedule_id=schedule_id, slot_at=slot)

    async def _claim(self, schedule_id: int, slot: datetime) -> bool:
        """Insert the (schedule, slot) row; only one process in all of them succeeds."""
        now = self.tests.clock.now()
        try:
            await SelfTestSlot.create(
                schedule_id=schedule_id, slot_at=slot, claimed_at=now, process=self.process
            )
        except IntegrityError:
            log.info("test time #%s at %s: another process runs it", schedule_id, slot)
            return False
        except Exception as exc:
            # No database, no coordination: a duplicate report beats a silent outage.
            log.warning("test time #%s: could not claim the slot (%s); running", schedule_id, exc)
            return True
        try:
            await SelfTestSlot.filter(slot_at__lt=now - CLAIMS_KEPT).delete()
        except Exception:
            log.exception("could not prune old slot claims")
        return True
