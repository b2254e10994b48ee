"""The visitor's page: the name form, then the full-screen chat with its history."""

from __future__ import annotations

from quart import Blueprint, Response, g, redirect, render_template, request
from werkzeug.wrappers.response import Response as WerkzeugResponse

from app.chat.namespace import VISITOR_COOKIE
from app.errors import InvalidInput, NotFound
from app.i18n import error_text
from app.web import LANG_COOKIE, services

bp = Blueprint("visitor", __name__)

VISITOR_COOKIE_DAYS = 365


@bp.get("/")
async def index() -> str:
    """Show the chat for a returning visitor, or ask a new one for a name."""
    svc = services()
    conv = await svc.chat.by_token(request.cookies.get(VISITOR_COOKIE))
    if conv is None:
        return await render_template("visitor/start.html")
    await svc.chat.set_locale(conv, g.locale)
    messages, more = await svc.chat.recent(conv.id)
    operator_online = await svc.chat.presence.online("admin")
    return await render_template(
        "visitor/chat.html",
        conv=conv,
        messages=messages,
        more=more,
        operator_online=operator_online,
    )


@bp.post("/start")
async def start() -> WerkzeugResponse | tuple[str, int]:
    """Open a conversation under the given name and remember this device with a cookie."""
    svc = services()
    form = await request.form
    try:
        _, token = await svc.chat.start_conversation(form.get("name"), g.locale)
    except InvalidInput as exc:
        return (
            await render_template(
                "visitor/start.html",
                error=error_text(exc.code, exc.params),
                name=form.get("name", ""),
            ),
            400,
        )
    response = redirect("/", 303)
    response.set_cookie(
        VISITOR_COOKIE,
        token,
        max_age=VISITOR_COOKIE_DAYS * 86400,
        httponly=True,
        samesite="Lax",
        secure=svc.settings.cookie_secure,
        path="/",
    )
    return response


@bp.get("/chat/older")
async def older() -> str:
    """A page of older messages for the visitor's history (HTMX 'load earlier')."""
    svc = services()
    conv = await svc.chat.by_token(request.cookies.get(VISITOR_COOKIE))
    if conv is None:
        raise NotFound("bad_chat")
    before = request.args.get("before", type=int)
    messages, more = await svc.chat.recent(conv.id, before_seq=before)
    return await render_template(
        "partials/chat/older.html",
        conv=conv,
        messages=messages,
        more=more,
        viewer="visitor",
        older_url="/chat/older",
    )


@bp.get("/lang/<code>")
async def set_language(code: str) -> Response | WerkzeugResponse:
    """Switch the interface language and go back where the user was."""
    target = request.args.get("next", "/")
    if not target.startswith("/") or target.startswith("//"):
        target = "/"
    response = redirect(target, 303)
    if code in ("tr", "en"):
        response.set_cookie(LANG_COOKIE, code, max_age=365 * 86400, samesite="Lax", path="/")
    return response


@bp.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process serves HTTP."""
    return {"status": "ok"}
