"""Request plumbing shared by the blueprints: services, locale, errors, headers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import socketio
from quart import Quart, Response, current_app, g, render_template, request
from werkzeug.exceptions import HTTPException

from app.admin.auth import AdminAuth, SessionInfo
from app.chat.namespace import visitor_cookie
from app.chat.service import ChatService
from app.config import Settings
from app.core.clientaddr import client_ip
from app.errors import Forbidden, SohbetError
from app.i18n import error_text, negotiate, set_locale
from app.models import Conversation
from app.realtime import origin_allowed
from app.realtime.handshake import visitor_token

if TYPE_CHECKING:
    from app.admin.operators import Operators
    from app.media.service import MediaService
    from app.replies.service import SavedReplies
    from app.telegram.bridge import TelegramBridge
    from app.widget.origins import WidgetOrigins

LANG_COOKIE = "sohbet_lang"
WIDGET_HEADER = "X-Sohbet-Visitor"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors {frame_ancestors}"
)


@dataclass(frozen=True)
class Services:
    """What the factory builds once and the views share."""

    settings: Settings
    sio: socketio.AsyncServer
    chat: ChatService
    auth: AdminAuth
    media: MediaService
    telegram: TelegramBridge | None
    # WIDGET_ORIGINS as the owner last saved it in the panel (app/widget/origins.py).
    widget_origins: WidgetOrigins
    replies: SavedReplies
    operators: Operators


def services(app: Quart | None = None) -> Services:
    """The shared services of `app` (the current app by default)."""
    svc: Services = (app or current_app).extensions["sohbet"]
    return svc


async def current_operator() -> SessionInfo | None:
    """The signed-in operator's session from this request's cookie, if any (its `operator` is
    who; behind the guard's decorators `g.operator` is the same, see app/admin/guard.py)."""
    auth = services().auth
    return await auth.session_for(request.cookies.get(auth.cookie_name))


def request_visitor_token() -> str | None:
    """The visitor token this request carries: the visitor cookie, the widget's partitioned
    cookie, or the header the widget's frame sends where no cookie of it is kept."""
    svc = services()
    return visitor_token(
        dict(request.cookies),
        svc.settings,
        visitor_cookie(svc.settings),
        {"token": request.headers.get(WIDGET_HEADER)},
    )


async def current_visitor() -> Conversation | None:
    """The conversation this request's visitor cookie belongs to, if any."""
    return await services().chat.queries.by_token(request_visitor_token())


def is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def client_address() -> str:
    """The client's address (X-Forwarded-For counts only from a TRUSTED_PROXIES peer)."""
    settings: Settings = current_app.config["SOHBET"]
    return client_ip(
        request.remote_addr, request.headers.get("X-Forwarded-For"), settings.trusted_proxies
    )


def init_app(app: Quart) -> None:
    """Install locale negotiation, the error pages and the security headers."""

    @app.before_request
    async def choose_locale() -> None:
        settings: Settings = app.config["SOHBET"]
        locale = negotiate(
            request.cookies.get(LANG_COOKIE),
            request.headers.get("Accept-Language"),
            settings.default_locale,
        )
        set_locale(locale)
        g.locale = locale

    settings: Settings = app.config["SOHBET"]
    csp = CSP.format(frame_ancestors=settings.frame_ancestors)

    @app.before_request
    async def same_origin_writes() -> Response | None:
        # A browser always sends Origin on cross-site POSTs: refuse those not on the allow-list.
        origin = request.headers.get("Origin")
        if request.method == "OPTIONS" and origin is not None:
            return _preflight(origin)
        if request.method in {"GET", "HEAD", "OPTIONS"} or origin is None:
            return None
        if not origin_allowed(origin, f"{request.scheme}://{request.host}", settings):
            raise Forbidden("forbidden")
        return None

    def _preflight(origin: str) -> Response:
        response = Response("", 204)
        if origin_allowed(origin, f"{request.scheme}://{request.host}", settings):
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, DELETE"
            response.headers["Access-Control-Allow-Headers"] = (
                "Content-Type, X-CSRF-Token, HX-Request, HX-Target, HX-Current-URL, HX-Trigger"
            )
            response.headers["Access-Control-Max-Age"] = "600"
        return response

    @app.errorhandler(SohbetError)
    async def domain_error(exc: SohbetError) -> tuple[str, int]:
        message = error_text(exc.code, exc.params)
        if is_htmx():
            return await render_template("partials/alert.html", message=message), exc.status
        return await render_template("error.html", message=message, status=exc.status), exc.status

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> tuple[str, int]:
        status = exc.code or 500
        message = error_text("not_found", {}) if status == 404 else (exc.description or exc.name)
        if is_htmx():
            return await render_template("partials/alert.html", message=message), status
        return await render_template("error.html", message=message, status=status), status

    @app.after_request
    async def security_headers(response: Response) -> Response:
        # CORS: only origins on ALLOWED_ORIGINS may read answers (with their cookies).
        origin = request.headers.get("Origin")
        response.vary.add("Origin")
        if origin is not None and origin.rstrip("/") in settings.allowed_origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers.setdefault("Content-Security-Policy", csp)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if response.mimetype == "text/html":
            response.headers.setdefault("Cache-Control", "no-store")
        elif request.path.startswith("/static/"):
            versioned = "v" in request.args or "/vendor/" in request.path
            response.headers["Cache-Control"] = (
                "public, max-age=31536000, immutable" if versioned else "no-cache"
            )
        return response
