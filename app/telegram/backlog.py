"""How far behind Telegram deliveries are, and the panel's banner while they are late."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from app.core.clock import Clock
from app.models import TgOutbox

log = logging.getLogger("sohbet.telegram.backlog")

# A message that waited this long is late enough for the operator to hear about it.
LATE_AFTER = 60.0
# While late, the banner is refreshed this often (its age moves; a panel opened since gets it).
REFRESH = 15.0


@dataclass(frozen=True)
class Backlog:
    """Messages waiting for Telegram and how long the oldest has waited."""

    count: int
    age: float | None

    @property
    def late(self) -> bool:
        return self.age is not None and self.age > LATE_AFTER

    @property
    def minutes(self) -> int:
        return max(1, round((self.age or 0) / 60))


async def backlog(clock: Clock) -> Backlog:
    """Pending items and the age in seconds of the oldest (for the panel, health, the test page)."""
    pending = TgOutbox.filter(status="pending")
    count = await pending.count()
    oldest = await TgOutbox.filter(status="pending").order_by("id").first()
    age = (clock.now() - oldest.created_at).total_seconds() if oldest else None
    return Backlog(count, age)


async def late_backlog(clock: Clock) -> Backlog | None:
    """The backlog if it is late (the panel's banner shows it), else None."""
    found = await backlog(clock)
    return found if found.late else None


class BacklogWatch:
    """Tells the panel when deliveries fall behind, while they are, and when they caught up."""

    def __init__(self, clock: Clock, show: Callable[[Backlog | None], Awaitable[None]]) -> None:
        self.clock = clock
        self.show = show

    async def run(self) -> None:
        """Look every few seconds; push the banner on a change, and refresh it while late."""
        was_late = False
        while True:
            try:
                found = await late_backlog(self.clock)
                if found is not None or was_late:
                    await self.show(found)
                was_late = found is not None
            except Exception:
                log.exception("reading the Telegram backlog failed")
            await self.clock.wait(asyncio.Event(), REFRESH if was_late else REFRESH / 3)
