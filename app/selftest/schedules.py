"""Test times: validation and the one write path for adding, changing and deleting them."""

from __future__ import annotations

import functools
import re
import zoneinfo
from collections.abc import Mapping
from typing import Any

from app.core.clock import Clock
from app.i18n import N_
from app.i18n import gettext as _
from app.models import SelfTestSchedule
from app.selftest.scheduler import SelfTestScheduler

HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
FIELDS = ("time_hhmm", "tz", "enabled")
MAX_SCHEDULES = 48
_MAX_ID = 2**63 - 1

MESSAGES = {
    "bad_json": N_("The body must be a JSON object."),
    "unknown_field": N_("Unknown field: %(field)s."),
    "missing": N_("%(field)s is required."),
    "empty": N_("Send at least one of time_hhmm, tz and enabled."),
    "bad_time": N_("The time must be from 00:00 to 23:59, written as HH:MM."),
    "bad_tz": N_("The time zone must be an IANA name such as Europe/Istanbul."),
    "bad_enabled": N_("enabled must be true or false."),
    "too_many": N_("At most %(n)s test times."),
    "not_found": N_("No such test time."),
}


class ScheduleError(Exception):
    """A test time request was refused; `code` keys the message, `field` names the input."""

    def __init__(self, code: str, field: str | None = None, status: int = 400) -> None:
        super().__init__(code)
        self.code = code
        self.field = field
        self.status = status

    @property
    def message(self) -> str:
        return _(MESSAGES[self.code], field=self.field or "", n=MAX_SCHEDULES)

    def as_dict(self) -> dict[str, Any]:
        return {"error": self.code, "field": self.field, "message": self.message}


@functools.cache
def zones() -> tuple[str, ...]:
    """Every IANA zone name this server knows, sorted (the page offers them as suggestions)."""
    return tuple(sorted(zoneinfo.available_timezones()))


def validate(data: object, *, partial: bool, default_tz: str) -> dict[str, Any]:
    """Check a `{time_hhmm, tz, enabled}` body; return the clean fields (all unless partial)."""
    if not isinstance(data, Mapping):
        raise ScheduleError("bad_json")
    for key in data:
        if key not in FIELDS:
            raise ScheduleError("unknown_field", str(key)[:40])
    clean: dict[str, Any] = {}
    if "time_hhmm" in data:
        value = data["time_hhmm"]
        if not isinstance(value, str) or not HHMM.match(value):
            raise ScheduleError("bad_time", "time_hhmm")
        clean["time_hhmm"] = value
    elif not partial:
        raise ScheduleError("missing", "time_hhmm")
    if "tz" in data:
        value = data["tz"]
        if not isinstance(value, str) or value not in zones():
            raise ScheduleError("bad_tz", "tz")
        clean["tz"] = value
    elif not partial:
        clean["tz"] = default_tz
    if "enabled" in data:
        if not isinstance(data["enabled"], bool):
            raise ScheduleError("bad_enabled", "enabled")
        clean["enabled"] = data["enabled"]
    elif not partial:
        clean["enabled"] = True
    if partial and not clean:
        raise ScheduleError("empty")
    return clean


class Schedules:
    """Adds, changes and deletes test times; the scheduler follows every change at once."""

    def __init__(self, scheduler: SelfTestScheduler, clock: Clock, default_tz: str) -> None:
        self.scheduler = scheduler
        self.clock = clock
        self.default_tz = default_tz

    async def all(self) -> list[SelfTestSchedule]:
        return await SelfTestSchedule.all().order_by("time_hhmm", "id")

    async def get(self, schedule_id: int) -> SelfTestSchedule:
        row = None
        if 0 < schedule_id <= _MAX_ID:
            row = await SelfTestSchedule.get_or_none(id=schedule_id)
        if row is None:
            raise ScheduleError("not_found", status=404)
        return row

    async def create(self, data: object) -> SelfTestSchedule:
        """Add a test time from a `{time_hhmm, tz?, enabled?}` body."""
        clean = validate(data, partial=False, default_tz=self.default_tz)
        if await SelfTestSchedule.all().count() >= MAX_SCHEDULES:
            raise ScheduleError("too_many")
        now = self.clock.now()
        row = await SelfTestSchedule.create(created_at=now, updated_at=now, **clean)
        self.scheduler.apply(row)
        return row

    async def update(self, schedule_id: int, data: object) -> SelfTestSchedule:
        """Change some of a test time's fields."""
        row = await self.get(schedule_id)
        clean = validate(data, partial=True, default_tz=self.default_tz)
        for key, value in clean.items():
            setattr(row, key, value)
        row.updated_at = self.clock.now()
        await row.save()
        self.scheduler.apply(row)
        return row

    async def delete(self, schedule_id: int) -> None:
        """Delete a test time and its job."""
        row = await self.get(schedule_id)
        await row.delete()
        self.scheduler.drop(schedule_id)

    def as_dict(self, row: SelfTestSchedule) -> dict[str, Any]:
        upcoming = self.scheduler.next_run_of(row.id)
        return {
            "id": row.id,
            "time_hhmm": row.time_hhmm,
            "tz": row.tz,
            "enabled": row.enabled,
            "next_run": upcoming.isoformat().replace("+00:00", "Z") if upcoming else None,
        }
