"""Times are stored in UTC and shown in the configured zone."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def local_hhmm(moment: datetime, zone: ZoneInfo) -> str:
    """HH:MM of a stored time in the display zone."""
    return moment.astimezone(zone).strftime("%H:%M")


def local_stamp(moment: datetime, zone: ZoneInfo) -> str:
    """Date and time of a stored time in the display zone, for tooltips and lists."""
    return moment.astimezone(zone).strftime("%d.%m.%Y %H:%M")
