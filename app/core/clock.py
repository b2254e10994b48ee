"""Time for background workers, replaceable in tests that simulate minutes in milliseconds."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import Protocol

from app.timefmt import utcnow


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def wait(self, event: asyncio.Event, seconds: float) -> None:
        """Sleep up to `seconds`, or until the event is set."""


class RealClock:
    """Wall-clock time."""

    def now(self) -> datetime:
        return utcnow()

    async def wait(self, event: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), max(0.0, seconds))
