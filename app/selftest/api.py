"""The JSON API of Test & Repair (operator only; writes need the X-CSRF-Token header)."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, jsonify, request

from app.admin.guard import api_operator
from app.errors import SohbetError
from app.i18n import error_text
from app.selftest import selftest
from app.selftest.repair import run_repair
from app.selftest.schedules import ScheduleError

bp = Blueprint("selftest_api", __name__)


def _error(code: str, message: str, status: int) -> tuple[Response, int]:
    return jsonify({"error": code, "message": message}), status


@bp.errorhandler(ScheduleError)
async def schedule_error(exc: ScheduleError) -> tuple[Response, int]:
    return jsonify(exc.as_dict()), exc.status


@bp.errorhandler(SohbetError)
async def domain_error(exc: SohbetError) -> tuple[Response, int]:
    return _error(exc.code, error_text(exc.code, exc.params), exc.status)


async def _body() -> object:
    return await request.get_json(force=True, silent=True)


@bp.post("/api/test/run")
@api_operator
async def run_tests() -> dict[str, Any]:
    """Run every check now; the report is also kept in the history and sent to Telegram."""
    report = await selftest().tests.run("api", scope=request.scope)
    return report.as_dict()


@bp.get("/api/test/runs")
@api_operator
async def runs() -> dict[str, Any]:
    """The history of runs, newest first."""
    return {"runs": [r.as_dict() for r in await selftest().tests.history()]}


@bp.post("/api/repair/run")
@api_operator
async def repair() -> dict[str, Any]:
    """Run every repair step; the answer counts what each one cleaned up."""
    svc = selftest()
    return await run_repair(svc.repair, svc.tests.settings.default_locale)


@bp.get("/api/test/schedule")
@api_operator
async def list_schedules() -> dict[str, Any]:
    """Every test time with its next run (this process's jobs are synced to the table first)."""
    svc = selftest()
    await svc.scheduler.reload()
    schedules = svc.schedules
    return {"schedules": [schedules.as_dict(row) for row in await schedules.all()]}


@bp.post("/api/test/schedule")
@api_operator
async def create_schedule() -> tuple[dict[str, Any], int]:
    """Add a test time: `{time_hhmm, tz?, enabled?}` (tz defaults to TZ, enabled to true)."""
    schedules = selftest().schedules
    row = await schedules.create(await _body())
    return schedules.as_dict(row), 201


@bp.put("/api/test/schedule/<int:schedule_id>")
@api_operator
async def update_schedule(schedule_id: int) -> dict[str, Any]:
    """Change any of a test time's `time_hhmm`, `tz` and `enabled`."""
    schedules = selftest().schedules
    row = await schedules.update(schedule_id, await _body())
    return schedules.as_dict(row)


@bp.delete("/api/test/schedule/<int:schedule_id>")
@api_operator
async def delete_schedule(schedule_id: int) -> tuple[str, int]:
    """Delete a test time."""
    await selftest().schedules.delete(schedule_id)
    return "", 204
