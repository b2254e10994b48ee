"""The visitor's page: the name form, then the full-screen chat with its history."""

from __future__ import annotations

from quart import (
    Blueprint,
    Response,
    g,
    make_response,
    redirect,
    render_template,
    request,
)
from werkzeug.wrappers.response import Response as WerkzeugResponse

from app.chat import gone
from app.chat.handoff import (
    HandoffExpired,
    check_handoff,
    create_handoff,
    qr_svg_data_uri,
    redeem_handoff,
)
from app.chat.namespace import visitor_cookie
from app.chat.rooms import ADMINS
from app.errors import NotFound, SohbetError
from app.i18n import error_text
from app.i18n import gettext as _
from app.web import client_address, current_visitor, request_visitor_token, services
from app.widget import context as _context  # noqa: F401  (its routes join the widget's)
from app.widget import owner as _owner  # noqa: F401
from app.widget.views import back_to_frame
from app.widget.views import bp as widget_bp

bp = Blueprint("visitor", __name__)
# The widget's frame is the same visitor page, framable on the host sites' origins.
bp.register_blueprint(widget_bp)

VISITOR_COOKIE_DAYS = 365


@bp.get("/")
async def index() -> str | Response | WerkzeugResponse:
    """Show the chat for a returning visitor, or ask a new one for a name."""
    back = await back_to_frame()
    if back is not None:
        return redirect(back, 303)
    svc = services()
    conv = await current_visitor()
    if conv is None:
        return await _start_page()
    await svc.chat.set_locale(conv, g.locale)
    messages, more = await svc.chat.queries.recent(conv.id)
    operator_online = await svc.chat.fanout.presence.online(ADMINS)
    return await render_template(
        "visitor/chat.html",
        conv=conv,
        messages=messages,
        more=more,
        operator_online=operator_online,
        author=await svc.chat.queries.last_author(conv.id),
    )


async def _start_page() -> Response | WerkzeugResponse:
    """The name form; where this browser's conversation went, when it just went (`?moved=1`,
    `?ended=1` from a live page) or while the page was away (its cookie names a gone token)."""
    settings = services().settings
    stale = request.cookies.get(visitor_cookie(settings))
    why = (
        "moved"
        if request.args.get("moved") == "1"
        else "ended"
        if request.args.get("ended") == "1"
        else await gone.reason_for(request_visitor_token())
    )
    notice = None
    if why == "moved":
        notice = _("This conversation continues on your other device.")
    elif why == "ended":
        notice = _(
            "%(name)s ended this conversation and removed it. You can start a new one.",
            name=settings.operator_name,
        )
    response = await make_response(await render_template("visitor/start.html", notice=notice))
    if stale:
        # Said once: the next visit is a plain start page.
        response.delete_cookie(visitor_cookie(settings), path="/")
    return response


@bp.post("/start")
async def start() -> WerkzeugResponse | tuple[str, int]:
    """Open a conversation under the given name and remember this device with a cookie."""
    svc = services()
    form = await request.form
    try:
        _, token = await svc.chat.start_conversation(
            form.get("name"), g.locale, client=client_address()
        )
    except SohbetError as exc:
        return (
            await render_template(
                "visitor/start.html",
                error=error_text(exc.code, exc.params),
                name=form.get("name", ""),
            ),
            exc.status,
        )
    return _with_visitor_cookie(redirect("/", 303), token)


def _with_visitor_cookie(response: WerkzeugResponse, token: str) -> WerkzeugResponse:
    response.set_cookie(
        visitor_cookie(services().settings),
        token,
        max_age=VISITOR_COOKIE_DAYS * 86400,
        httponly=True,
        samesite="Lax",
        secure=services().settings.cookie_secure,
        path="/",
    )
    return response


@bp.post("/handoff")
async def handoff() -> str:
    """A one-time link and QR code that moves this conversation to another device."""
    svc = services()
    conv = await current_visitor()
    if conv is None:
        raise NotFound("bad_chat")
    token, minutes = await create_handoff(conv)
    base = svc.settings.public_url or request.host_url.rstrip("/")
    link = f"{base}/continue/{token}"
    return await render_template(
        "partials/chat/handoff.html", link=link, qr=qr_svg_data_uri(link), minutes=minutes
    )


@bp.get("/continue/<token>")
async def continue_page(token: str) -> str | tuple[str, int]:
    """Ask before taking the conversation over: link previews and scanners only GET, and must
    not use up (or capture) the one-time link."""
    try:
        await check_handoff(token)
    except HandoffExpired as exc:
        return await _handoff_refused(exc)
    return await render_template("visitor/continue.html", token=token)


@bp.post("/continue/<token>")
async def continue_here(token: str) -> WerkzeugResponse | tuple[str, int]:
    """Redeem a handoff link: this device takes the conversation over (once, before expiry)."""
    svc = services()
    try:
        _, cookie = await redeem_handoff(svc.chat, token)
    except HandoffExpired as exc:
        return await _handoff_refused(exc)
    return _with_visitor_cookie(redirect("/", 303), cookie)


async def _handoff_refused(exc: HandoffExpired) -> tuple[str, int]:
    """The start page with why the link no longer works (used, expired or unknown)."""
    page = await render_template("visitor/start.html", error=error_text(exc.code, exc.params))
    return page, exc.status


@bp.get("/chat/older")
async def older() -> str:
    """A page of older messages for the visitor's history (HTMX 'load earlier')."""
    svc = services()
    conv = await current_visitor()
    if conv is None:
        raise NotFound("bad_chat")
    before = request.args.get("before", type=int)
    messages, more = await svc.chat.queries.recent(conv.id, before_seq=before)
    return await render_template(
        "partials/chat/older.html",
        conv=conv,
        messages=messages,
        more=more,
        viewer="visitor",
        older_url="/chat/older",
    )
