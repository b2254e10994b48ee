"""Running every check, keeping the history of runs, and reporting them to Telegram."""

from __future__ import annotations

import html
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from app.calls.service import CallService
from app.chat.service import ChatService
from app.core.clock import Clock
from app.i18n import gettext as _
from app.i18n import using_locale
from app.media.service import MediaService
from app.models import SelfTestRun
from app.selftest.checks import Context
from app.selftest.checks import registry as checks
from app.selftest.registry import FAIL, ICONS, Result
from app.selftest.scheduler import SelfTestScheduler
from app.timefmt import local_hhmm

if TYPE_CHECKING:
    from app.telegram.bridge import TelegramBridge

log = logging.getLogger("sohbet.selftest")

# Kept whatever SELFTEST_HISTORY says: the failure streak is read from the last three runs.
MIN_KEPT = 3


@dataclass
class Report:
    """One run of all checks."""

    trigger: str  # "page", "api" or "schedule"
    started_at: datetime
    ms: int
    results: list[Result]
    schedule_id: int | None = None
    slot_at: datetime | None = None
    id: int | None = None
    saved: bool = field(default=False, compare=False)

    @property
    def ok(self) -> bool:
        return all(r.status != FAIL for r in self.results)

    def summary(self) -> str:
        """ "✅ Web, ✅ Socket, ❌ Telegram …" with labels in the current locale."""
        return ", ".join(f"{ICONS[r.status]} {checks.label(r.name)}" for r in self.results)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ok": self.ok,
            "trigger": self.trigger,
            "schedule_id": self.schedule_id,
            "slot_at": _iso(self.slot_at) if self.slot_at else None,
            "started_at": _iso(self.started_at),
            "ms": self.ms,
            "summary": self.summary(),
            "checks": [
                {**r.as_dict(), "label": checks.label(r.name), "icon": ICONS[r.status]}
                for r in self.results
            ],
        }

    @classmethod
    def from_row(cls, row: SelfTestRun) -> Report:
        results = [Result(**item) for item in json.loads(row.results)]
        return cls(
            trigger=row.trigger,
            started_at=row.started_at,
            ms=row.duration_ms,
            results=results,
            schedule_id=row.schedule_id,
            slot_at=row.slot_at,
            id=row.id,
            saved=True,
        )


class SelfTests:
    """Runs the checks, stores each run, sends its report, and alerts on repeated failure."""

    def __init__(
        self,
        chat: ChatService,
        bridge: TelegramBridge | None,
        clock: Clock,
        *,
        calls: CallService,
        media: MediaService,
    ) -> None:
        self.settings = chat.settings
        self.chat = chat
        self.bridge = bridge
        self.clock = clock
        self.calls = calls
        self.media = media
        # Runs these tests at the operator's test times.
        self.scheduler = SelfTestScheduler(self)
        self.learnt_url: str | None = None

    def learn(self, scope: Mapping[str, Any]) -> None:
        """Remember this process's own address from a request it serves (for scheduled runs)."""
        server = scope.get("server")
        if not server or server[1] is None:
            return
        host, port = server
        host = f"[{host}]" if ":" in host else host
        self.learnt_url = f"{scope.get('scheme', 'http')}://{host}:{port}"

    def own_url(self, scope: Mapping[str, Any] | None = None) -> str | None:
        """SELFTEST_URL if set, else the address this request (or an earlier one) came to."""
        if self.settings.selftest_url:
            return self.settings.selftest_url
        if scope is not None:
            self.learn(scope)
        return self.learnt_url

    async def run(
        self,
        trigger: str,
        *,
        scope: Mapping[str, Any] | None = None,
        schedule_id: int | None = None,
        slot_at: datetime | None = None,
    ) -> Report:
        """Run every check, keep the report in the history and send it to Telegram."""
        context = Context(
            settings=self.settings,
            chat=self.chat,
            bridge=self.bridge,
            scheduler=self.scheduler,
            base_url=self.own_url(scope),
            calls=self.calls,
            media=self.media,
        )
        started_at = self.clock.now()
        start = time.perf_counter()
        # Details are stored, and sent to Telegram, in the operator's language.
        with using_locale(self.settings.default_locale):
            results = await checks.run(context, self.settings.selftest_skip)
        report = Report(
            trigger=trigger,
            started_at=started_at,
            ms=round((time.perf_counter() - start) * 1000),
            results=results,
            schedule_id=schedule_id,
            slot_at=slot_at,
        )
        log.info("self-test (%s) in %d ms: %s", trigger, report.ms, _plain(results))
        try:
            await self._save(report)
        except Exception:
            log.exception("could not store the self-test run")
        await self._send(report)
        if trigger == "schedule" and report.saved:
            await self._alert_on_streak()
        return report

    async def history(self, limit: int | None = None) -> list[Report]:
        """The latest runs, newest first."""
        rows = (
            await SelfTestRun.all().order_by("-id").limit(limit or self.settings.selftest_history)
        )
        return [Report.from_row(row) for row in rows]

    async def _save(self, report: Report) -> None:
        row = await SelfTestRun.create(
            trigger=report.trigger,
            schedule_id=report.schedule_id,
            slot_at=report.slot_at,
            started_at=report.started_at,
            duration_ms=report.ms,
            ok=report.ok,
            results=json.dumps([r.as_dict() for r in report.results], ensure_ascii=False),
        )
        report.id, report.saved = row.id, True
        keep = max(self.settings.selftest_history, MIN_KEPT)
        oldest_kept = await SelfTestRun.all().order_by("-id").offset(keep - 1).first()
        if oldest_kept is not None:
            await SelfTestRun.filter(id__lt=oldest_kept.id).delete()

    def report_text(self, report: Report) -> str:
        """The Telegram message: the one-line summary, then a line per failed check."""
        with using_locale(self.settings.default_locale):
            if report.slot_at is not None:
                when = local_hhmm(report.slot_at, self.settings.zone)
                head = _("Self-test report (scheduled, %(time)s)", time=when)
            else:
                head = _("Self-test report (run by hand)")
            lines = [f"🩺 <b>{html.escape(head)}</b>", html.escape(report.summary())]
            for r in report.results:
                if r.status == FAIL:
                    label = html.escape(checks.label(r.name))
                    lines.append(f"{ICONS[FAIL]} <b>{label}</b>: {html.escape(r.detail)}")
            lines.append(_("Total %(ms)s ms", ms=report.ms))
        return "\n".join(lines)

    async def _send(self, report: Report) -> None:
        """Queue the report in the Telegram outbox; if the database is down, send it directly."""
        if self.bridge is None:
            return
        text = self.report_text(report)
        try:
            await self.bridge.say(text)
            return
        except Exception as exc:
            log.warning("could not queue the self-test report (%s); sending it directly", exc)
        try:
            await self.bridge.bot.send_message(
                chat_id=self.bridge.tg.admin_chat_id, text=text, request_timeout=10
            )
        except Exception:
            log.exception("could not send the self-test report to Telegram")

    async def _alert_on_streak(self) -> None:
        """One alert when scheduled runs fail twice in a row, none for the third and later."""
        last = await SelfTestRun.filter(trigger="schedule").order_by("-id").limit(3)
        if len(last) < 2 or last[0].ok or last[1].ok or (len(last) == 3 and not last[2].ok):
            return
        log.warning("scheduled self-tests failed twice in a row")
        if self.bridge is None:
            return
        failing = Report.from_row(last[0])
        with using_locale(self.settings.default_locale):
            names = ", ".join(checks.label(r.name) for r in failing.results if r.status == FAIL)
            text = "⚠️ <b>{}</b>\n{}".format(
                html.escape(_("Scheduled self-tests failed twice in a row")),
                html.escape(_("Failing: %(names)s", names=names)),
            )
        # Keyed by the streak's first run: however many processes notice it, one alert goes out.
        await self.bridge.outbox.add(None, key=f"selftest-alert:{last[1].id}", text=text)


def _plain(results: list[Result]) -> str:
    return ", ".join(f"{r.name} {r.status} {r.ms}ms" for r in results)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
