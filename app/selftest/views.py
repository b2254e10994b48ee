"""The /test page: run the checks, repair, read the history, and edit test times with HTMX."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, g, render_template, request

from app.admin.guard import check_csrf, operator_required
from app.selftest import selftest
from app.selftest.checks import registry as checks
from app.selftest.registry import ICONS
from app.selftest.repair import repairs, run_repair
from app.selftest.schedules import ScheduleError, zones

bp = Blueprint("selftest", __name__)


async def _render(name: str, **context: Any) -> str:
    """Render a page or partial with what every Test & Repair template uses."""
    return await render_template(
        name,
        label=checks.label,
        repair_label=repairs.label,
        icons=ICONS,
        next_run_of=selftest().scheduler.next_run_of,
        **context,
    )


def _form_fields(form: Any) -> dict[str, Any]:
    """The schedule form as the JSON API's fields (an unticked checkbox is not sent)."""
    return {
        "time_hhmm": str(form.get("time_hhmm", "")).strip(),
        "tz": str(form.get("tz", "")).strip(),
        "enabled": "enabled" in form,
    }


@bp.get("/test")
@operator_required
async def page() -> str:
    """The Test & Repair page with the latest report, the history and the test times."""
    svc = selftest()
    await svc.scheduler.reload()  # show what this process will really run
    history = await svc.tests.history()
    return await _render(
        "test/page.html",
        csrf_token=g.admin.csrf_token,
        report=history[0] if history else None,
        history=history,
        schedules=await svc.schedules.all(),
        zones=zones(),
        draft={},
    )


@bp.post("/test/run")
@operator_required
async def run() -> str:
    """Run every check; the report replaces the last one and the history is updated."""
    check_csrf(g.admin)
    svc = selftest()
    report = await svc.tests.run("page", scope=request.scope)
    history = await svc.tests.history()
    return await _render("partials/test/report.html", report=report) + await _render(
        "partials/test/history.html", history=history, oob=True
    )


@bp.post("/test/repair")
@operator_required
async def repair() -> str:
    """Run every repair step and show what each one cleaned up."""
    check_csrf(g.admin)
    svc = selftest()
    result = await run_repair(svc.repair, svc.tests.settings.default_locale)
    return await _render("partials/test/repair.html", repair=result)


@bp.post("/test/schedule")
@operator_required
async def add_schedule() -> tuple[str, int]:
    """Add a test time from the form; the list comes back with it (or the form with an error)."""
    check_csrf(g.admin)
    svc = selftest()
    fields = _form_fields(await request.form)
    error, status = None, 200
    try:
        await svc.schedules.create(fields)
        fields = {}
    except ScheduleError as exc:
        error, status = exc.message, exc.status
    page = await _render(
        "partials/test/schedule.html",
        schedules=await svc.schedules.all(),
        draft=fields,
        error=error,
    )
    return page, status


@bp.put("/test/schedule/<int:schedule_id>")
@operator_required
async def change_schedule(schedule_id: int) -> tuple[str, int]:
    """Save one test time's row; the row comes back (with an error when refused)."""
    check_csrf(g.admin)
    schedules = selftest().schedules
    fields = _form_fields(await request.form)
    try:
        row = await schedules.update(schedule_id, fields)
    except ScheduleError as exc:
        if exc.status == 404:
            return "", 200  # deleted meanwhile (another tab): the row goes away
        row = await schedules.get(schedule_id)
        return await _render(
            "partials/test/schedule_row.html", row=row, draft=fields, error=exc.message
        ), exc.status
    return await _render("partials/test/schedule_row.html", row=row, draft={}), 200


@bp.delete("/test/schedule/<int:schedule_id>")
@operator_required
async def delete_schedule(schedule_id: int) -> tuple[str, int]:
    """Delete a test time; the empty answer removes its row."""
    check_csrf(g.admin)
    try:
        await selftest().schedules.delete(schedule_id)
    except ScheduleError as exc:
        if exc.status != 404:
            raise
    return "", 200
