"""Times are stored in UTC and shown in the configured zone."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


# Renders of one message (one per viewer) and of a group-committed batch share a timestamp.
@lru_cache(maxsize=1024)
def local_hhmm(moment: datetime, zone: ZoneInfo) -> str:
    """HH:MM of a stored time in the display zone."""
    return moment.astimezone(zone).strftime("%H:%M")


@lru_cache(maxsize=1024)
def local_stamp(moment: datetime, zone: ZoneInfo) -> str:
    """Date and time of a stored time in the display zone, for tooltips and lists."""
    return moment.astimezone(zone).strftime("%d.%m.%Y %H:%M")
