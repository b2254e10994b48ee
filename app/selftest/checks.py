"""The checks of "Run all tests": each one exercises a real part of the running server."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
import socketio
from tortoise import Tortoise

from app.calls.probe import ProbeRefused, TurnFailed, echo_probe, turn_probe
from app.calls.service import CallService
from app.chat.namespace import visitor_cookie
from app.chat.service import ChatService
from app.config import Settings
from app.core.transactions import transaction
from app.i18n import N_
from app.i18n import gettext as _
from app.media.service import MediaService, size_text
from app.media.storage import StorageError, new_key
from app.models import Conversation, SelfTestProbe, TgOutbox
from app.selftest.registry import CheckFailed, Outcome, Registry, describe, off, passed
from app.timefmt import local_stamp, utcnow

if TYPE_CHECKING:
    from app.telegram.bridge import TelegramBridge

SYNTHETIC_NAME = "Selftest"
REQUEST_TIMEOUT = 5


class SchedulerState(Protocol):
    """What the Scheduler check reads from the scheduler."""

    @property
    def running(self) -> bool: ...

    def next_run(self) -> datetime | None: ...

    async def missing_jobs(self) -> list[int]: ...


@dataclass(frozen=True)
class Context:
    """Everything a check may use; `base_url` is this server's own address, if known."""

    settings: Settings
    chat: ChatService
    bridge: TelegramBridge | None
    scheduler: SchedulerState
    base_url: str | None
    calls: CallService | None = None
    media: MediaService | None = None


registry: Registry[Context] = Registry()


def _ms(since: float) -> int:
    return round((time.perf_counter() - since) * 1000)


def _own_url(ctx: Context) -> str:
    if not ctx.base_url:
        raise CheckFailed(_("The server's own address is not known yet: set SELFTEST_URL"))
    return ctx.base_url


@registry.check("web", N_("Web"), timeout=REQUEST_TIMEOUT + 1)
async def web(ctx: Context) -> Outcome:
    """GET the server's own /health over HTTP."""
    url = _own_url(ctx) + "/health"
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as resp:
        body = await resp.text()
    if resp.status != 200 or '"ok"' not in body:
        raise CheckFailed(_("%(url)s answered HTTP %(status)s", url=url, status=resp.status))
    return passed(_("HTTP 200 from %(url)s", url=url))


@registry.check("socket", N_("Socket"), timeout=15)
async def socket_round_trip(ctx: Context) -> Outcome:
    """Two real Socket.IO clients (two tabs of a synthetic visitor) join its conversation; a
    message one of them sends reaches the other through the server."""
    base = _own_url(ctx)
    conv, token = await ctx.chat.start_conversation(
        SYNTHETIC_NAME, ctx.settings.default_locale, synthetic=True
    )
    client_id = f"selftest-{secrets.token_hex(8)}"
    echoed: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    async def on_message(data: Any = None) -> None:
        if isinstance(data, dict) and data.get("client_id") == client_id and not echoed.done():
            echoed.set_result(data)

    try:
        # Our own HTTP session, closed here whatever happens (engine.io leaks its own on a
        # failed connect).
        async with aiohttp.ClientSession() as http:
            sender = socketio.AsyncClient(reconnection=False, http_session=http)
            listener = socketio.AsyncClient(reconnection=False, http_session=http)
            listener.on("chat:message", on_message, namespace="/chat")
            try:
                start = time.perf_counter()
                for client in (sender, listener):
                    await _join(client, base, conv.cid, f"{visitor_cookie(ctx.settings)}={token}")
                connected = _ms(start)
                start = time.perf_counter()
                ack = await sender.call(
                    "send",
                    {
                        "chat_id": conv.cid,
                        "type": "text",
                        "text": "self-test",
                        "client_id": client_id,
                    },
                    namespace="/chat",
                    timeout=REQUEST_TIMEOUT,
                )
                if not ack.get("ok"):
                    raise CheckFailed(_("send was refused: %(error)s", error=ack.get("error")))
                acked = _ms(start)
                try:
                    await asyncio.wait_for(echoed, REQUEST_TIMEOUT)
                except TimeoutError:
                    raise CheckFailed(_("The message was stored but never pushed out")) from None
                return passed(
                    _(
                        "Two sockets connected in %(connect)s ms; message acknowledged in "
                        "%(ack)s ms and pushed to the other socket in %(push)s ms",
                        connect=connected,
                        ack=acked,
                        push=_ms(start),
                    )
                )
            finally:
                for client in (sender, listener):
                    if client.connected:
                        await client.disconnect()
    finally:
        await Conversation.filter(id=conv.id).delete()


async def _join(client: socketio.AsyncClient, base: str, cid: str, cookie: str) -> None:
    """Connect as the synthetic visitor and join its conversation."""
    try:
        await client.connect(
            base,
            namespaces=["/chat"],
            headers={"Cookie": cookie},
            auth={"as": "visitor"},
            transports=["websocket"],
            wait_timeout=REQUEST_TIMEOUT,
        )
    except socketio.exceptions.ConnectionError as exc:
        raise CheckFailed(
            _("Could not connect to %(url)s: %(error)s", url=base, error=exc)
        ) from exc
    joined = await client.call("join", {"chat_id": cid}, namespace="/chat", timeout=REQUEST_TIMEOUT)
    if not joined.get("ok"):
        raise CheckFailed(_("join was refused: %(error)s", error=joined.get("error")))


@registry.check("database", N_("Database"), timeout=REQUEST_TIMEOUT)
async def database(ctx: Context) -> Outcome:
    """Write, read and delete a row in one transaction."""
    token = secrets.token_hex(16)
    async with transaction() as tx:
        probe = await SelfTestProbe.create(using_db=tx, token=token, created_at=utcnow())
        read = await SelfTestProbe.filter(id=probe.id).using_db(tx).first()
        if read is None or read.token != token:
            raise CheckFailed(_("A row just written could not be read back"))
        await SelfTestProbe.filter(id=probe.id).using_db(tx).delete()
    if await SelfTestProbe.filter(id=probe.id).exists():
        raise CheckFailed(_("A deleted row is still there after the commit"))
    dialect = Tortoise.get_connection("default").capabilities.dialect
    return passed(_("%(db)s: write, read and delete in one transaction", db=dialect))


@registry.check("telegram", N_("Telegram"), timeout=3 * REQUEST_TIMEOUT)
async def telegram(ctx: Context) -> Outcome:
    """getMe, the webhook or polling state, and the outbox backlog."""
    bridge = ctx.bridge
    if bridge is None:
        return off(_("Not configured (TELEGRAM_BOT_TOKEN is empty)"))
    try:
        me = await bridge.bot.get_me(request_timeout=REQUEST_TIMEOUT)
        hook = await bridge.bot.get_webhook_info(request_timeout=REQUEST_TIMEOUT)
    except Exception as exc:
        raise CheckFailed(
            _("The Bot API did not answer: %(error)s", error=_bot_error(exc))
        ) from exc
    if bridge.tg.mode == "webhook":
        if hook.url != bridge.tg.webhook_url:
            raise CheckFailed(_("The webhook is not registered with Telegram"))
        mode = _("webhook, %(n)s updates waiting", n=hook.pending_update_count)
        if hook.last_error_message:
            mode += "; " + _("last error: %(error)s", error=hook.last_error_message)
    elif hook.url:
        raise CheckFailed(_("A webhook is set, so polling gets no updates"))
    else:
        mode = _("polling")
    count, age = await bridge.worker.backlog()
    failed = await TgOutbox.filter(status="failed").count()
    backlog = _(
        "outbox: %(count)s waiting (oldest %(age)s s), %(failed)s failed",
        count=count,
        age=round(age or 0),
        failed=failed,
    )
    line = f"@{me.username}, {mode}; {backlog}"
    if age is not None and age > ctx.settings.selftest_outbox_max_age:
        raise CheckFailed(_("Messages to Telegram are stuck: %(line)s", line=line))
    return passed(line)


def _bot_error(exc: Exception) -> str:
    from aiogram.exceptions import ClientDecodeError  # only with a bot (see app.telegram)

    if isinstance(exc, ClientDecodeError):
        # A proxy's HTML error page: its words say more than the JSON decoder's complaint.
        words = " ".join(re.sub(r"<[^>]*>", " ", str(exc.data)).split())[:80]
        return _("the answer is not JSON: %(words)s", words=words)
    return describe(exc)


# Below this much free space the media disk is reported as failing (uploads would soon fail).
LOW_DISK_BYTES = 100 * 1024 * 1024


@registry.check("storage", N_("Storage"), timeout=3 * REQUEST_TIMEOUT)
async def storage(ctx: Context) -> Outcome:
    """Write, read back and delete a media object through the configured backend; free space."""
    media = ctx.media
    if media is None:
        raise CheckFailed(_("Media storage is not set up"))
    store = media.store
    where = store.name if store.name != "local" else f"local ({media.settings.dir})"
    key = new_key("bin")
    probe = secrets.token_bytes(4096)
    start = time.perf_counter()
    try:
        await store.put(key, probe, "application/octet-stream")
        try:
            if await store.get(key) != probe:
                raise CheckFailed(_("%(where)s: the object read back differs", where=where))
        finally:
            await store.delete(key)
        try:
            await store.get(key)
        except KeyError:
            pass
        else:
            raise CheckFailed(_("%(where)s: a deleted object is still there", where=where))
        free = await store.free_bytes()
    except StorageError as exc:
        raise CheckFailed(_("%(where)s: %(error)s", where=where, error=str(exc))) from exc
    except OSError as exc:
        raise CheckFailed(_("%(where)s: %(error)s", where=where, error=describe(exc))) from exc
    line = _("%(where)s: write, read and delete in %(ms)s ms", where=where, ms=_ms(start))
    if free is None:
        return passed(line)
    space = _("%(free)s free", free=size_text(free))
    if free < LOW_DISK_BYTES:
        raise CheckFailed(_("%(line)s; only %(space)s", line=line, space=space))
    return passed(f"{line}; {space}")


@registry.check("scheduler", N_("Scheduler"), timeout=REQUEST_TIMEOUT)
async def scheduler(ctx: Context) -> Outcome:
    """The scheduler runs, has a job for every enabled test time, and knows the next run."""
    if not ctx.scheduler.running:
        raise CheckFailed(_("The scheduler is not running"))
    note = ""
    try:
        missing = await ctx.scheduler.missing_jobs()
    except Exception as exc:
        # The jobs it has still run (and report the database's failure themselves).
        missing, note = [], "; " + _("test times unreadable: %(error)s", error=describe(exc))
    if missing:
        ids = ", ".join(f"#{n}" for n in missing)
        raise CheckFailed(_("Enabled test times without a job: %(ids)s", ids=ids))
    upcoming = ctx.scheduler.next_run()
    if upcoming is None:
        return passed(_("Running; no test time is enabled") + note)
    when = local_stamp(upcoming, ctx.settings.zone)
    return passed(_("Running; next run %(when)s (%(tz)s)", when=when, tz=ctx.settings.tz) + note)


@registry.check("calls", N_("Calls"), timeout=3 * REQUEST_TIMEOUT)
async def calls(ctx: Context) -> Outcome:
    """An aiortc client (a synthetic visitor) calls the echo peer over `/call` and hears its own
    tone come back; meanwhile each configured TURN server gives a real allocation."""
    if ctx.calls is None:
        return off(_("Calls are not set up"))
    base = _own_url(ctx)
    conv, token = await ctx.chat.start_conversation(
        SYNTHETIC_NAME, ctx.settings.default_locale, synthetic=True
    )
    turn = asyncio.get_running_loop().create_task(turn_probe(ctx.calls.conf, REQUEST_TIMEOUT))
    try:
        result = await echo_probe(
            base, f"{visitor_cookie(ctx.settings)}={token}", conv.cid, wait=2 * REQUEST_TIMEOUT
        )
    except BaseException as exc:
        # The echo failed: its failure is the news; the allocation is not waited for.
        turn.cancel()
        if isinstance(exc, ProbeRefused):
            raise CheckFailed(_("The echo call failed: %(error)s", error=exc)) from exc
        if isinstance(exc, TimeoutError):
            raise CheckFailed(_("The echo peer's audio never came back")) from None
        raise
    finally:
        await Conversation.filter(id=conv.id).delete()
    echo = _(
        "Heard our own tone back from the echo peer; call set up in %(ms)s ms "
        "(server answered in %(answer)s ms)",
        ms=result.setup_ms,
        answer=result.answer_ms,
    )
    try:
        allocations = await turn
    except TurnFailed as exc:
        raise CheckFailed(echo + "; " + _("TURN allocation failed: %(error)s", error=exc)) from exc
    if not allocations:
        return passed(echo)
    done = ", ".join(f"{a.url} ({a.relayed}, {a.ms} ms)" for a in allocations)
    return passed(echo + "; " + _("TURN allocation works: %(servers)s", servers=done))
