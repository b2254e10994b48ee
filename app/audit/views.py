"""The owner's audit trail page under /admin/audit: filters, pages, and the CSV export.

Every route here only reads: no route of the app edits or deletes an entry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from quart import Blueprint, Response, g, render_template, request

from app.admin.guard import owner_required as guard_owner_required
from app.audit.export import csv_lines
from app.audit.search import (
    Filters,
    action_label,
    actor_names,
    describe,
    page_of,
    parse_filters,
    surface_label,
)
from app.audit.trail import ACTIONS
from app.errors import InvalidInput
from app.i18n import current_locale, error_text
from app.timefmt import utcnow
from app.web import is_htmx, services

bp = Blueprint("audit", __name__)


def owner_required(view: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Only the owner sees the trail (the guard's role check, after the sign-in check)."""
    return guard_owner_required(view)


def _fields() -> dict[str, str]:
    """The filter form as typed (shown back as is, even when a value was refused)."""
    names = ("action", "actor", "target", "address", "since", "until")
    return {name: (request.args.get(name) or "").strip()[:100] for name in names}


@bp.get("/audit")
@owner_required
async def audit() -> tuple[str, int]:
    """The audit trail, newest first, filtered and paged (the results alone for HTMX)."""
    settings = services().settings
    error = ""
    page = None
    filters = Filters()
    try:
        filters = parse_filters(request.args)
    except InvalidInput as exc:
        error = error_text(exc.code, exc.params)
    else:
        page = await page_of(filters, settings, request.args.get("page", 1, type=int) or 1)
    context: dict[str, Any] = {
        "page": page,
        "error": error,
        "form": _fields(),
        "query": urlencode(filters.args()),
        "action_label": action_label,
        "surface_label": surface_label,
        "describe": describe,
    }
    status = 400 if error else 200
    if is_htmx():
        return await render_template("partials/admin/audit_results.html", **context), status
    page_html = await render_template(
        "admin/audit.html",
        actions=[(code, action_label(code)) for code in ACTIONS],
        actors=await actor_names(),
        csrf_token=g.admin.csrf_token,
        **context,
    )
    return page_html, status


@bp.get("/audit/export.csv")
@owner_required
async def export() -> Response | tuple[str, int]:
    """The filtered entries as a CSV file (all of them, not one page)."""
    settings = services().settings
    try:
        filters = parse_filters(request.args)
    except InvalidInput as exc:
        message = error_text(exc.code, exc.params)
        return await render_template("error.html", message=message, status=400), 400
    stamp = utcnow().astimezone(settings.zone).strftime("%Y%m%d-%H%M")
    return Response(
        csv_lines(filters, settings, current_locale()),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="sohbet-audit-{stamp}.csv"',
            "Cache-Control": "no-store",
        },
    )
