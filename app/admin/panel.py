"""The operator's panel: the live conversation list, one conversation's pane, and its buttons."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from quart import Blueprint, g, render_template, request
from werkzeug.wrappers.response import Response as WerkzeugResponse

from app.admin.assign import (
    TABS,
    assignment_context,
    in_tab,
    tab_counts,
    unread_for,
)
from app.admin.guard import enter, operator_required, require_csrf
from app.admin.login import login_page
from app.audit.origin import request_origin
from app.chat.assignment import mark_read_by
from app.chat.rooms import visitor_room
from app.errors import Conflict, InvalidInput
from app.i18n import error_text
from app.models import Conversation, Operator, TgOutbox
from app.web import current_operator, is_htmx, services

bp = Blueprint("panel", __name__)


async def _list_context(tab: str = "all") -> dict[str, Any]:
    """The list as this operator sees it: one tab's rows, their own unread counts, the tabs."""
    svc = services()
    if tab not in TABS:
        tab = "all"
    every = await svc.chat.queries.operator_list()
    me: int = g.operator.id
    unread = await unread_for(me, every)
    conversations = [c for c in every if in_tab(c, tab, me)]
    online = await svc.chat.fanout.presence.online_many([visitor_room(c.id) for c in conversations])
    return {
        "conversations": conversations,
        "online": online,
        "unread": unread,
        "tab": tab,
        "counts": await tab_counts(me, every, unread),
        "assignees": {op.id: op for op in await Operator.all()},
    }


async def _panel(cid: str | None = None) -> str:
    pane = await _pane_context(cid) if cid else None
    listing = await _list_context()
    failed = await TgOutbox.filter(status="failed").order_by("-id").limit(1)
    return await render_template(
        "admin/panel.html",
        telegram_failed=await TgOutbox.filter(status="failed").count() if failed else 0,
        telegram_error=failed[0].last_error if failed else "",
        **listing,
        pane=pane,
        team=await services().chat.fanout.team_presence(),
        csrf_token=g.admin.csrf_token,
    )


async def _pane_context(cid: str) -> dict[str, Any]:
    svc = services()
    conv = await svc.chat.queries.by_cid(cid)
    messages, more = await svc.chat.queries.recent(conv.id)
    await svc.chat.mark_read(conv)
    await mark_read_by(g.operator.id, conv.id, conv.last_seq)
    return {
        **await assignment_context(conv),
        "conv": conv,
        "messages": messages,
        "more": more,
        "online": await svc.chat.fanout.presence.online(visitor_room(conv.id)),
    }


@bp.get("")
async def panel() -> str | WerkzeugResponse:
    """The panel for a signed-in operator, else the login page."""
    session = await current_operator()
    if session is None:
        auth = services().auth
        refused = await auth.refusal(request.cookies.get(auth.cookie_name))
        return await login_page(error=error_text(refused, {}) if refused else "")
    enter(session)
    return await _panel()


@bp.get("/conversations")
@operator_required
async def conversation_list() -> str:
    """The conversation list partial (waiting first, oldest wait first), with its tabs."""
    context = await _list_context(request.args.get("tab", "all"))
    return await render_template("partials/admin/conversation_list.html", **context)


@bp.get("/conversations/tabs")
@operator_required
async def tabs() -> str:
    """The tabs with this operator's counts (refreshed by the list as rows change live)."""
    context = await _list_context(request.args.get("tab", "all"))
    return await render_template("partials/admin/conv_tabs.html", **context, oob=False)


@bp.get("/conversations/rows")
@operator_required
async def tab_rows() -> str:
    """One tab's rows (Mine, Unassigned, All), swapped into the list, and the tabs' counts."""
    context = await _list_context(request.args.get("tab", "all"))
    return await render_template("partials/admin/tab_rows.html", **context)


@bp.get("/c/<cid>")
@operator_required
async def conversation(cid: str) -> str:
    """One conversation: the pane alone for HTMX, the whole panel otherwise."""
    if is_htmx():
        context = await _pane_context(cid)
        return await render_template("partials/admin/conversation.html", **context)
    return await _panel(cid)


@bp.get("/c/<cid>/older")
@operator_required
async def older(cid: str) -> str:
    """A page of older messages for the pane (HTMX 'load earlier')."""
    svc = services()
    conv = await svc.chat.queries.by_cid(cid)
    messages, more = await svc.chat.queries.recent(
        conv.id, before_seq=request.args.get("before", type=int)
    )
    return await render_template(
        "partials/chat/older.html",
        conv=conv,
        messages=messages,
        more=more,
        viewer="admin",
        older_url=f"/admin/c/{conv.cid}/older",
    )


@bp.get("/search")
@operator_required
async def search() -> str:
    """The list's rows filtered by visitor name, CID or message text (swapped into the list)."""
    svc = services()
    query = (request.args.get("q") or "").strip()[:100]
    conversations = await svc.chat.queries.search(query)
    online = await svc.chat.fanout.presence.online_many([visitor_room(c.id) for c in conversations])
    return await render_template(
        "partials/admin/conversation_rows.html",
        conversations=conversations,
        online=online,
        query=query,
    )


@bp.post("/c/<cid>/messages/delete")
@operator_required
async def delete_messages(cid: str) -> str:
    """Delete one or several selected messages; both pages drop them live."""
    svc = services()
    await require_csrf()
    form = await request.form
    conv = await svc.chat.queries.by_cid(cid)
    try:
        seqs = sorted({int(s) for s in form.getlist("seq")})
    except ValueError as exc:
        raise InvalidInput("bad_payload") from exc
    await svc.chat.delete_messages(conv, seqs, by=request_origin())
    context = await _pane_context(cid)
    return await render_template("partials/admin/conversation.html", **context)


@bp.post("/c/<cid>/delete")
@operator_required
async def delete_conversation(cid: str) -> tuple[str, int, dict[str, str]]:
    """Delete the whole conversation (the page asked for confirmation first)."""
    svc = services()
    await require_csrf()
    conv = await svc.chat.queries.by_cid(cid)
    await svc.chat.delete_conversation(conv, by=request_origin())
    page = await render_template("partials/admin/empty_pane.html")
    return page, 200, {"HX-Push-Url": "/admin"}


@bp.post("/c/<cid>/close")
@operator_required
async def close(cid: str) -> str:
    """Close a conversation: off the waiting list until the visitor writes again."""
    return await _change_conversation(
        cid, lambda conv: services().chat.close_conversation(conv, by=request_origin())
    )


@bp.post("/c/<cid>/reopen")
@operator_required
async def reopen(cid: str) -> str:
    """Reopen a closed conversation."""
    return await _change_conversation(
        cid, lambda conv: services().chat.reopen_conversation(conv, by=request_origin())
    )


@bp.post("/c/<cid>/block")
@operator_required
async def block(cid: str) -> str:
    """Block the visitor: no more messages from them, no new conversation from their address."""
    return await _change_conversation(
        cid, lambda conv: services().chat.set_blocked(conv, True, by=request_origin())
    )


@bp.post("/c/<cid>/unblock")
@operator_required
async def unblock(cid: str) -> str:
    """Lift a block."""
    return await _change_conversation(
        cid, lambda conv: services().chat.set_blocked(conv, False, by=request_origin())
    )


async def _change_conversation(
    cid: str, change: Callable[[Conversation], Awaitable[object]]
) -> str:
    """A panel button's change to one conversation (CSRF-checked), answered with its pane."""
    await require_csrf()
    await change(await services().chat.queries.by_cid(cid))
    context = await _pane_context(cid)
    return await render_template("partials/admin/conversation.html", **context)


async def _assign_change(
    cid: str, change: Callable[[Conversation], Awaitable[object]]
) -> tuple[str, int]:
    """An assignment button: its pane, with the reason on top when the change was refused (the
    other operator was quicker, a deactivated operator...) and nothing changed."""
    await require_csrf()
    conv = await services().chat.queries.by_cid(cid)
    error, status = "", 200
    try:
        await change(conv)
    except (Conflict, InvalidInput) as exc:
        error, status = error_text(exc.code, exc.params), exc.status
    context = await _pane_context(cid)
    page = await render_template("partials/admin/conversation.html", **context, assign_error=error)
    return page, status


@bp.post("/c/<cid>/take")
@operator_required
async def take(cid: str) -> tuple[str, int]:
    """ "Take it": the conversation becomes this operator's, unless another was quicker."""
    return await _assign_change(
        cid,
        lambda conv: services().chat.assignment.take(conv, g.operator, by=request_origin()),
    )


@bp.post("/c/<cid>/release")
@operator_required
async def release(cid: str) -> tuple[str, int]:
    """Release: the conversation is unassigned again."""
    return await _assign_change(
        cid,
        lambda conv: services().chat.assignment.release(conv, g.operator, by=request_origin()),
    )


@bp.post("/c/<cid>/transfer")
@operator_required
async def transfer(cid: str) -> tuple[str, int]:
    """Give the conversation to another active operator, with a note for them."""
    form = await request.form
    return await _assign_change(
        cid,
        lambda conv: services().chat.assignment.transfer(
            conv, g.operator, form.get("operator"), form.get("note"), by=request_origin()
        ),
    )
