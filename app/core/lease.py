"""Leader election by a lease row: among all processes on one database, one holds it at a time.

The holder renews the lease every third of its time to live; a process that dies stops
renewing, and another takes the lease over once it has expired. Each step is one atomic
statement (an UPDATE guarded by holder or expiry, or an INSERT guarded by the primary key), so
it works the same on SQLite and PostgreSQL and needs no long-lived connection, unlike a
PostgreSQL advisory lock, which belongs to one pooled connection. A holder that cannot renew
(the database is away) steps down before its lease runs out, so two leaders never overlap as
long as the processes' clocks agree to within the lease time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

from tortoise.exceptions import IntegrityError

from app.models import Lease
from app.timefmt import utcnow

log = logging.getLogger("sohbet.lease")


def process_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class LeaderLease:
    """Holds (or waits for) one named lease and runs `lead()` only while holding it."""

    def __init__(
        self, name: str, seconds: float, lead: Callable[[], Coroutine[Any, Any, None]]
    ) -> None:
        self.name = name
        self.ttl = timedelta(seconds=seconds)
        self.lead = lead
        self.holder = process_name()
        self.leading = False
        self._task: asyncio.Task[None] | None = None

    async def acquire(self) -> bool:
        """Renew the lease if held, else take it if free or expired; True when held."""
        now = utcnow()
        until = now + self.ttl
        if await Lease.filter(name=self.name, holder=self.holder).update(expires_at=until):
            return True
        if await Lease.filter(name=self.name, expires_at__lt=now).update(
            holder=self.holder, expires_at=until
        ):
            return True
        try:
            await Lease.create(name=self.name, holder=self.holder, expires_at=until)
        except IntegrityError:
            return False
        return True

    async def release(self) -> None:
        """Give the lease up at once (shutdown), so another process need not wait it out."""
        await Lease.filter(name=self.name, holder=self.holder).delete()

    async def run(self) -> None:
        """Campaign forever: lead while the lease is ours, stand by while it is not."""
        renew = self.ttl.total_seconds() / 3
        held_until = utcnow()
        try:
            while True:
                try:
                    if await self.acquire():
                        held_until = utcnow() + self.ttl
                    else:
                        held_until = utcnow()
                        if self.leading:
                            log.warning("lease %s: taken over by another process", self.name)
                            await self._step_down()
                except Exception as exc:
                    log.warning("lease %s: cannot reach the database (%s)", self.name, exc)
                # Step down before the lease can expire unrenewed: no overlap with a successor.
                if self.leading and utcnow() + timedelta(seconds=renew) >= held_until:
                    log.warning("lease %s: could not renew; standing down", self.name)
                    await self._step_down()
                elif not self.leading and utcnow() < held_until:
                    self._start()
                await asyncio.sleep(renew)
        finally:
            await self._step_down()
            with contextlib.suppress(Exception):
                await self.release()

    def _start(self) -> None:
        log.info("lease %s: this process (%s) leads", self.name, self.holder)
        self.leading = True
        self._task = asyncio.create_task(self.lead(), name=f"lead-{self.name}")

    async def _step_down(self) -> None:
        self.leading = False
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
