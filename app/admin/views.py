"""The operator's panel: login with a one-time code, the live list and a conversation pane."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

from quart import Blueprint, Response, g, redirect, render_template, request
from werkzeug.wrappers.response import Response as WerkzeugResponse

from app.admin.auth import SessionInfo
from app.admin.transcript import Line, render_pdf, render_text
from app.chat.rooms import visitor_room
from app.errors import InvalidInput, SohbetError
from app.i18n import error_text
from app.i18n import gettext as _
from app.models import Conversation, Message, TgOutbox
from app.timefmt import local_stamp, utcnow
from app.web import check_csrf, client_address, current_operator, is_htmx, services

bp = Blueprint("admin", __name__, url_prefix="/admin")

R = TypeVar("R")
LOGIN_COOKIE_SECONDS = 5 * 60
TRANSCRIPT_LIMIT = 20_000


def operator_required(view: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[Any]]:
    """Let only a signed-in operator through; others go to the login page (HTMX: full reload)."""

    @wraps(view)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        session = await current_operator()
        if session is None:
            if is_htmx():
                return "", 401, {"HX-Redirect": "/admin"}
            return redirect("/admin", 303)
        g.admin = session
        return await view(*args, **kwargs)

    return wrapper


def _csrf(form: dict[str, Any] | None = None) -> None:
    session: SessionInfo = g.admin
    check_csrf(session.csrf_token, form)


async def _panel(cid: str | None = None) -> str:
    svc = services()
    conversations = await svc.chat.queries.operator_list()
    online = await svc.chat.fanout.presence.online_many([visitor_room(c.id) for c in conversations])
    pane = await _pane_context(cid) if cid else None
    failed = await TgOutbox.filter(status="failed").order_by("-id").limit(1)
    return await render_template(
        "admin/panel.html",
        telegram_failed=await TgOutbox.filter(status="failed").count() if failed else 0,
        telegram_error=failed[0].last_error if failed else "",
        conversations=conversations,
        online=online,
        pane=pane,
        csrf_token=g.admin.csrf_token,
    )


async def _pane_context(cid: str) -> dict[str, Any]:
    svc = services()
    conv = await svc.chat.queries.by_cid(cid)
    messages, more = await svc.chat.queries.recent(conv.id)
    await svc.chat.mark_read(conv)
    return {
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
        return await render_template("admin/login.html", step="password")
    g.admin = session
    return await _panel()


@bp.post("/login")
async def login() -> tuple[str, int] | WerkzeugResponse:
    """Check the password and send a one-time code; the browser gets a challenge cookie."""
    svc = services()
    form = await request.form
    try:
        challenge = await svc.auth.request_code(form.get("password"), client_address())
    except SohbetError as exc:
        page = await render_template(
            "admin/login.html", step="password", error=error_text(exc.code, exc.params)
        )
        return page, exc.status
    response = redirect("/admin/code", 303)
    response.set_cookie(
        svc.auth.challenge_cookie,
        challenge,
        max_age=LOGIN_COOKIE_SECONDS,
        httponly=True,
        samesite="Strict",
        secure=svc.settings.cookie_secure,
        path="/",
    )
    return response


@bp.get("/code")
async def code_form() -> str | WerkzeugResponse:
    """The second step: type the code the bot (or the server log) shows."""
    svc = services()
    if not request.cookies.get(svc.auth.challenge_cookie):
        return redirect("/admin", 303)
    return await render_template("admin/login.html", step="code")


@bp.post("/verify")
async def verify() -> tuple[str, int] | WerkzeugResponse:
    """Redeem the code for a fresh session cookie."""
    svc = services()
    form = await request.form
    try:
        token = await svc.auth.redeem_code(
            request.cookies.get(svc.auth.challenge_cookie), form.get("code"), client_address()
        )
    except SohbetError as exc:
        page = await render_template(
            "admin/login.html", step="code", error=error_text(exc.code, exc.params)
        )
        return page, exc.status
    # Renewed at login: any session this browser had before is ended.
    await svc.auth.end_session(request.cookies.get(svc.auth.cookie_name))
    response = redirect("/admin", 303)
    response.delete_cookie(svc.auth.challenge_cookie, path="/", secure=svc.settings.cookie_secure)
    response.set_cookie(
        svc.auth.cookie_name,
        token,
        max_age=svc.settings.admin_session_hours * 3600,
        httponly=True,
        samesite="Lax",
        secure=svc.settings.cookie_secure,
        path="/",
    )
    return response


@bp.post("/logout")
@operator_required
async def logout() -> WerkzeugResponse:
    """End the session on the server and drop the cookie."""
    svc = services()
    _csrf(dict(await request.form))
    await svc.auth.end_session(request.cookies.get(svc.auth.cookie_name))
    response = redirect("/admin", 303)
    response.delete_cookie(svc.auth.cookie_name, path="/", secure=svc.settings.cookie_secure)
    return response


@bp.get("/conversations")
@operator_required
async def conversation_list() -> str:
    """The conversation list partial (waiting first, oldest wait first)."""
    svc = services()
    conversations = await svc.chat.queries.operator_list()
    online = await svc.chat.fanout.presence.online_many([visitor_room(c.id) for c in conversations])
    return await render_template(
        "partials/admin/conversation_list.html", conversations=conversations, online=online
    )


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


@bp.post("/c/<cid>/messages/delete")
@operator_required
async def delete_messages(cid: str) -> str:
    """Delete one or several selected messages; both pages drop them live."""
    svc = services()
    form = await request.form
    _csrf(dict(form))
    conv = await svc.chat.queries.by_cid(cid)
    try:
        seqs = sorted({int(s) for s in form.getlist("seq")})
    except ValueError as exc:
        raise InvalidInput("bad_payload") from exc
    await svc.chat.delete_messages(conv, seqs)
    context = await _pane_context(cid)
    return await render_template("partials/admin/conversation.html", **context)


@bp.post("/c/<cid>/delete")
@operator_required
async def delete_conversation(cid: str) -> tuple[str, int, dict[str, str]]:
    """Delete the whole conversation (the page asked for confirmation first)."""
    svc = services()
    _csrf(dict(await request.form))
    conv = await svc.chat.queries.by_cid(cid)
    await svc.chat.delete_conversation(conv)
    page = await render_template("partials/admin/empty_pane.html")
    return page, 200, {"HX-Push-Url": "/admin"}


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


@bp.post("/c/<cid>/close")
@operator_required
async def close(cid: str) -> str:
    """Close a conversation: off the waiting list until the visitor writes again."""
    return await _change_conversation(cid, services().chat.close_conversation)


@bp.post("/c/<cid>/reopen")
@operator_required
async def reopen(cid: str) -> str:
    """Reopen a closed conversation."""
    return await _change_conversation(cid, services().chat.reopen_conversation)


async def _transcript(cid: str) -> tuple[Conversation, str, str]:
    svc = services()
    settings = svc.settings
    conv = await svc.chat.queries.by_cid(cid)
    messages = (
        await Message.filter(conversation_id=conv.id, deleted_at__isnull=True)
        .order_by("seq")
        .limit(TRANSCRIPT_LIMIT)
    )
    authors = {"visitor": conv.visitor_name, "admin": settings.operator_name, "system": "—"}
    title = _("Conversation with %(name)s (%(cid)s)", name=conv.visitor_name, cid=conv.cid)
    header = [
        _("Started: %(when)s", when=local_stamp(conv.created_at, settings.zone)),
        _("Exported: %(when)s", when=local_stamp(utcnow(), settings.zone)),
        _("Times are in %(zone)s.", zone=str(settings.zone)),
    ]
    lines = [Line(m.created_at, authors.get(m.role, m.role), _transcript_body(m)) for m in messages]
    return conv, title, render_text(title, header, lines, settings.zone)


def _transcript_body(message: Message) -> str:
    """A message's text, with what it carried named in brackets (a photo, a voice message...)."""
    if not message.media_key:
        return message.text
    labels = {"photo": _("Photo"), "voice": _("Voice message")}
    label = labels.get(message.kind) or message.media_name or _("Audio")
    return f"[{label}] {message.text}".rstrip()


def _download(conv: Conversation, body: str | bytes, ext: str, mimetype: str) -> Response:
    """A transcript as a file to save, named after the conversation, never cached."""
    safe = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_") else "_" for ch in conv.cid)
    return Response(
        body,
        mimetype=mimetype,
        headers={
            "Content-Disposition": f'attachment; filename="sohbet-{safe}.{ext}"',
            "Cache-Control": "no-store",
        },
    )


@bp.get("/c/<cid>/transcript.txt")
@operator_required
async def transcript_text(cid: str) -> Response:
    """The whole conversation as a UTF-8 text file."""
    conv, _title, text = await _transcript(cid)
    return _download(conv, text, "txt", "text/plain")


@bp.get("/c/<cid>/transcript.pdf")
@operator_required
async def transcript_pdf(cid: str) -> Response:
    """The whole conversation as a PDF."""
    conv, title, text = await _transcript(cid)
    return _download(conv, render_pdf(title, text), "pdf", "application/pdf")


@bp.post("/c/<cid>/block")
@operator_required
async def block(cid: str) -> str:
    """Block the visitor: no more messages from them, no new conversation from their address."""
    return await _change_conversation(cid, lambda conv: services().chat.set_blocked(conv, True))


@bp.post("/c/<cid>/unblock")
@operator_required
async def unblock(cid: str) -> str:
    """Lift a block."""
    return await _change_conversation(cid, lambda conv: services().chat.set_blocked(conv, False))


async def _change_conversation(
    cid: str, change: Callable[[Conversation], Awaitable[object]]
) -> str:
    """A panel button's change to one conversation (CSRF-checked), answered with its pane."""
    _csrf(dict(await request.form))
    await change(await services().chat.queries.by_cid(cid))
    context = await _pane_context(cid)
    return await render_template("partials/admin/conversation.html", **context)
