"""The audit trail as CSV: every entry the filters select, streamed in batches, newest first.

A spreadsheet runs a cell that starts with = + - @ (or a tab or carriage return) as a formula,
and visitor names and Telegram names are typed by strangers: such a cell gets a leading
apostrophe, which spreadsheets show as text (OWASP's advice for CSV injection).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator

from app.audit.search import Filters, action_label, describe, matching, surface_label
from app.config import Settings
from app.i18n import gettext as _
from app.i18n import using_locale
from app.models import AuditEntry

BATCH = 500
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutral(cell: object) -> str:
    """A cell a spreadsheet shows as text, never runs as a formula."""
    text = "" if cell is None else str(cell)
    return "'" + text if text.startswith(FORMULA_START) else text


def _line(row: list[object]) -> str:
    out = io.StringIO()
    csv.writer(out).writerow([neutral(cell) for cell in row])
    return out.getvalue()


def header() -> list[object]:
    return [
        _("Time"),
        _("Operator"),
        _("Operator id"),
        _("Action code"),
        _("Action"),
        _("Target"),
        _("Details"),
        _("Surface"),
        _("Address (keyed hash)"),
    ]


def row(entry: AuditEntry, settings: Settings) -> list[object]:
    return [
        entry.at.astimezone(settings.zone).isoformat(timespec="seconds"),
        entry.actor_name,
        "" if entry.actor_id is None else entry.actor_id,
        entry.action,
        action_label(entry.action),
        entry.target,
        describe(entry),
        surface_label(entry.surface),
        entry.address,
    ]


async def csv_lines(filters: Filters, settings: Settings, locale: str) -> AsyncIterator[bytes]:
    """The CSV's bytes: a UTF-8 byte order mark (so Excel reads Turkish letters), the header,
    then the entries, read by id in batches so a long trail is never held in memory at once."""
    with using_locale(locale):
        yield ("\ufeff" + _line(header())).encode()
    before: int | None = None
    while True:
        found = matching(filters, settings)
        if before is not None:
            found = found.filter(id__lt=before)
        batch = await found.order_by("-id").limit(BATCH)
        if not batch:
            return
        with using_locale(locale):
            yield "".join(_line(row(entry, settings)) for entry in batch).encode()
        before = batch[-1].id
