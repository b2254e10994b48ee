"""Repair: clean-up steps that are safe at any time and twice in a row, each reporting a count."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from tortoise import Tortoise
from tortoise.expressions import Q

from app.calls.service import NAMESPACE as CALLS
from app.calls.service import CallService
from app.chat.rooms import ADMINS, OPERATOR_PREFIX, conversation_of
from app.chat.service import ChatService
from app.core.clock import Clock
from app.i18n import N_, using_locale
from app.i18n import gettext as _
from app.media.orphans import ORPHAN_GRACE, remove_orphans
from app.media.service import MediaService
from app.media.storage import StorageError
from app.models import AdminSession, Conversation, LoginCode, TgOutbox
from app.selftest.registry import FAIL, CheckFailed, Outcome, Registry, Result, passed

if TYPE_CHECKING:
    from app.telegram.bridge import TelegramBridge

log = logging.getLogger("sohbet.selftest.repair")

# Login codes younger than this still count against LOGIN_CODES_PER_HOUR: keep them.
CODE_WINDOW = timedelta(hours=1)
# A synthetic conversation younger than this may belong to a Socket check still running.
SYNTHETIC_GRACE = timedelta(minutes=5)


@dataclass(frozen=True)
class RepairContext:
    chat: ChatService
    bridge: TelegramBridge | None
    clock: Clock
    stuck_attempts: int
    calls: CallService | None = None
    media: MediaService | None = None


repairs: Registry[RepairContext] = Registry()


@repairs.check("presence", N_("Stale presence"))
async def presence(ctx: RepairContext) -> Outcome:
    """Forget sockets presence still counts but Socket.IO no longer has."""
    manager = ctx.chat.fanout.sio.manager

    def live(sid: str) -> bool:
        return manager.eio_sid_from_sid(sid, "/chat") is not None

    dropped, offline = await ctx.chat.fanout.presence.prune(live)
    await announce_presence(ctx.chat, [], offline)
    return passed(_("%(n)s gone sockets dropped", n=dropped), dropped)


async def announce_presence(chat: ChatService, online: list[str], offline: list[str]) -> None:
    """Push what a connect or disconnect would have for keys that changed without one (Repair,
    a process that died, or this one coming back after being taken for dead)."""
    if any(key.startswith(OPERATOR_PREFIX) for key in online + offline):
        await chat.fanout.publish_team_presence()
    for keys, state in ((online, True), (offline, False)):
        for key in keys:
            if key == ADMINS:
                await chat.fanout.publish_operator_status(state)
            elif (conversation_id := conversation_of(key)) is not None:
                conv = await Conversation.get_or_none(id=conversation_id)
                if conv is not None:
                    await chat.fanout.publish_row(conv, online=state)


@repairs.check("calls", N_("Abandoned calls and peer connections"))
async def calls(ctx: RepairContext) -> Outcome:
    """End calls whose page is gone or whose media never came; close peer connections no call
    owns."""
    if ctx.calls is None:
        return passed(_("Calls are not set up"), 0)
    manager = ctx.chat.fanout.sio.manager

    def live(sid: str) -> bool:
        return manager.eio_sid_from_sid(sid, CALLS) is not None

    fixed = await ctx.calls.repair(live)
    hub = ctx.calls.hub
    return passed(
        _(
            "%(n)s cleaned up; %(pcs)s peer connections open, %(relayed)s relayed calls",
            n=fixed,
            pcs=hub.peer_connections,
            relayed=hub.relayed_calls,
        ),
        fixed,
    )


@repairs.check("login_codes", N_("Expired login codes"))
async def login_codes(ctx: RepairContext) -> Outcome:
    """Delete login codes older than the hourly limit's window (all long expired)."""
    deleted = await LoginCode.filter(created_at__lt=ctx.clock.now() - CODE_WINDOW).delete()
    return passed(_("%(n)s deleted", n=deleted), deleted)


@repairs.check("sessions", N_("Expired sessions"))
async def sessions(ctx: RepairContext) -> Outcome:
    """Delete operator sessions past their expiry."""
    deleted = await AdminSession.filter(expires_at__lte=ctx.clock.now()).delete()
    return passed(_("%(n)s deleted", n=deleted), deleted)


@repairs.check("outbox", N_("Stuck Telegram messages"))
async def outbox(ctx: RepairContext) -> Outcome:
    """Send failed and long-retried Telegram messages again, from the first attempt."""
    if ctx.bridge is None:
        return passed(_("Telegram is not configured"), 0)
    stuck = Q(status="failed") | Q(status="pending", attempts__gte=ctx.stuck_attempts)
    redriven = await TgOutbox.filter(stuck).update(
        status="pending", attempts=0, next_attempt_at=ctx.clock.now(), last_error=""
    )
    if redriven:
        ctx.bridge.outbox.wake.set()
    return passed(_("%(n)s sent again", n=redriven), redriven)


@repairs.check("synthetic", N_("Self-test conversations"))
async def synthetic(ctx: RepairContext) -> Outcome:
    """Delete synthetic conversations a Socket check left behind (a crash mid-check)."""
    cutoff = ctx.clock.now() - SYNTHETIC_GRACE
    deleted = await Conversation.filter(synthetic=True, created_at__lt=cutoff).delete()
    return passed(_("%(n)s deleted", n=deleted), deleted)


@repairs.check("orphan_media", N_("Orphan media files"), timeout=120)
async def orphan_media(ctx: RepairContext) -> Outcome:
    """Delete stored files no message refers to (an upload that died before its commit, a
    deletion whose file removal failed); files younger than a few minutes may be an upload
    still committing and are kept."""
    if ctx.media is None:
        return passed(_("Media storage is not set up"), 0)
    try:
        found = await remove_orphans(ctx.media.store, ctx.clock.now() - ORPHAN_GRACE)
    except StorageError as exc:
        raise CheckFailed(str(exc)) from exc
    return passed(
        _("%(n)s of %(seen)s files removed", n=found.removed, seen=found.seen), found.removed
    )


@repairs.check("integrity", N_("Database integrity"), timeout=60)
async def integrity(ctx: RepairContext) -> Outcome:
    """SQLite's integrity check, and on both databases the invariants the chat relies on."""
    conn = Tortoise.get_connection("default")
    problems: list[str] = []
    if conn.capabilities.dialect == "sqlite":
        rows = await conn.execute_query_dict("PRAGMA integrity_check")
        found = [str(next(iter(row.values()))) for row in rows]
        if found != ["ok"]:
            problems.extend(found)
    orphans = await _count(
        'SELECT COUNT(*) AS n FROM "message" m WHERE NOT EXISTS '
        '(SELECT 1 FROM "conversation" c WHERE c."id" = m."conversation_id")'
    )
    if orphans:
        problems.append(_("%(n)s messages without a conversation", n=orphans))
    behind = await _count(
        'SELECT COUNT(*) AS n FROM "conversation" c WHERE c."last_seq" < '
        '(SELECT COALESCE(MAX(m."seq"), 0) FROM "message" m WHERE m."conversation_id" = c."id")'
    )
    if behind:
        problems.append(_("%(n)s conversations whose sequence is behind", n=behind))
    if problems:
        raise CheckFailed("; ".join(problems)[:300], len(problems))
    return passed(_("%(db)s: no problems found", db=conn.capabilities.dialect), 0)


async def _count(sql: str) -> int:
    rows = await Tortoise.get_connection("default").execute_query_dict(sql)
    return int(rows[0]["n"])


async def run_repair(ctx: RepairContext, locale: str) -> dict[str, Any]:
    """Run every step; the JSON answer of /api/repair/run."""
    start = time.perf_counter()
    with using_locale(locale):
        results = await repairs.run(ctx)
    ms = round((time.perf_counter() - start) * 1000)
    log.info("repair in %d ms: %s", ms, {r.name: r.count for r in results})
    return repair_payload(results, ms)


def repair_payload(results: list[Result], ms: int) -> dict[str, Any]:
    return {
        "ok": all(r.status != FAIL for r in results),
        "ms": ms,
        "counts": {r.name: r.count or 0 for r in results},
        "steps": [{**r.as_dict(), "label": repairs.label(r.name)} for r in results],
    }
