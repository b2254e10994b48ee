"""Reading the audit trail back: the owner's filters, a page of entries, and what each says."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import date, datetime, time, timedelta
from ipaddress import ip_address
from zoneinfo import ZoneInfo

from tortoise.expressions import Q
from tortoise.queryset import QuerySet

from app.audit.origin import address_hash
from app.audit.trail import ACTIONS, SURFACE_LABELS
from app.config import Settings
from app.errors import InvalidInput
from app.i18n import gettext as _
from app.i18n import ngettext
from app.models import AuditEntry

PAGE_SIZE = 50
MAX_TEXT = 100


@dataclass(frozen=True)
class Filters:
    """What the owner narrowed the trail to; every field empty: everything."""

    action: str = ""
    actor: str = ""
    target: str = ""
    address: str = ""
    since: date | None = None
    until: date | None = None

    def args(self) -> dict[str, str]:
        """The filters as query arguments (for the page links and the CSV link)."""
        out = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if value:
                out[item.name] = value.isoformat() if isinstance(value, date) else str(value)
        return out


def _date(raw: str) -> date | None:
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError as exc:
        raise InvalidInput("audit_bad_date") from exc


def parse_filters(args: Mapping[str, str]) -> Filters:
    """The filters from a request's arguments; a bad one raises InvalidInput with its reason."""

    def text(name: str) -> str:
        return (args.get(name) or "").strip()[:MAX_TEXT]

    action = text("action")
    if action and action not in ACTIONS:
        raise InvalidInput("audit_bad_action")
    address = text("address")
    if address:
        try:
            address = str(ip_address(address))  # one spelling per address (IPv6 compressed)
        except ValueError as exc:
            raise InvalidInput("audit_bad_address") from exc
    since, until = _date(text("since")), _date(text("until"))
    if since and until and since > until:
        raise InvalidInput("audit_bad_range")
    return Filters(action, text("actor"), text("target"), address, since, until)


def _start_of(day: date, zone: ZoneInfo) -> datetime:
    """Midnight of a day in the display zone, in UTC (SQLite compares UTC bounds correctly)."""
    return datetime.combine(day, time(), zone).astimezone(ZoneInfo("UTC"))


def matching(filters: Filters, settings: Settings) -> QuerySet[AuditEntry]:
    """The entries the filters select (dates are whole days in the display zone)."""
    found = AuditEntry.all()
    if filters.action:
        found = found.filter(action=filters.action)
    if filters.actor:
        found = found.filter(actor_name=filters.actor)
    if filters.target:
        # The target (a CID, an account) or the particulars (the visitor's name, a Telegram user).
        text = filters.target
        found = found.filter(Q(target__icontains=text) | Q(detail__icontains=text))
    if filters.address:
        found = found.filter(address=address_hash(settings, filters.address))
    if filters.since:
        found = found.filter(at__gte=_start_of(filters.since, settings.zone))
    if filters.until:
        found = found.filter(at__lt=_start_of(filters.until + timedelta(days=1), settings.zone))
    return found


@dataclass(frozen=True)
class Page:
    """One page of entries, newest first, with where it sits in the whole."""

    entries: list[AuditEntry]
    number: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // PAGE_SIZE))

    @property
    def first(self) -> int:
        return (self.number - 1) * PAGE_SIZE + 1 if self.entries else 0

    @property
    def last(self) -> int:
        return (self.number - 1) * PAGE_SIZE + len(self.entries)


async def page_of(filters: Filters, settings: Settings, number: int) -> Page:
    """Page `number` (from 1; past the end: the last page) of the entries, newest first."""
    found = matching(filters, settings)
    total = await found.count()
    pages = max(1, -(-total // PAGE_SIZE))
    number = min(max(1, number), pages)
    entries = await found.order_by("-id").offset((number - 1) * PAGE_SIZE).limit(PAGE_SIZE)
    return Page(entries, number, total)


async def actor_names() -> list[str]:
    """Every actor name in the trail, for the actor filter."""
    names = await AuditEntry.exclude(actor_name="").distinct().values_list("actor_name", flat=True)
    return sorted({str(name) for name in names}, key=str.casefold)


def action_label(action: str) -> str:
    """What the page calls an action (its code if it is not one of ours)."""
    return _(ACTIONS[action]) if action in ACTIONS else action


def surface_label(surface: str) -> str:
    return _(SURFACE_LABELS[surface]) if surface in SURFACE_LABELS else surface


def _reason(code: str) -> str:
    reasons = {
        "wrong_password": _("wrong password"),
        "code_invalid": _("wrong or expired code"),
        "code_tries": _("too many wrong codes"),
    }
    return reasons.get(code, code)


def _method(code: str) -> str:
    methods = {"telegram": _("code from Telegram"), "app": _("authenticator app or recovery code")}
    return methods.get(code, code)


def describe(entry: AuditEntry) -> str:
    """An entry's particulars as a line of text in the current language."""
    try:
        detail = json.loads(entry.detail) if entry.detail else {}
    except ValueError:
        return entry.detail
    if not isinstance(detail, dict):
        return entry.detail
    parts: list[str] = []
    if "visitor" in detail:
        parts.append(_("Visitor: %(name)s", name=detail.pop("visitor")))
    if isinstance(seqs := detail.pop("seqs", None), list):
        listed = ", ".join(f"#{seq}" for seq in seqs)
        parts.append(ngettext("message %(list)s", "messages %(list)s", len(seqs), list=listed))
    if isinstance(count := detail.pop("messages", None), int):
        parts.append(ngettext("%(num)d message", "%(num)d messages", count))
    if "method" in detail:
        parts.append(_("with %(method)s", method=_method(str(detail.pop("method")))))
    if "reason" in detail:
        step = detail.pop("step", "")
        what = _("password") if step == "password" else _("code")
        parts.append(f"{what}: {_reason(str(detail.pop('reason')))}")
    if "telegram_user" in detail:
        who = str(detail.pop("telegram_user"))
        if "telegram_id" in detail:
            who = f"{who} ({detail.pop('telegram_id')})"
        parts.append(_("Telegram user: %(who)s", who=who))
    parts.extend(f"{key}: {value}" for key, value in detail.items())
    return " · ".join(parts)
