"""The widget: `/widget.js` for the host page, and the visitor's chat in a framable page.

A third-party frame cannot count on an ordinary cookie (Chrome with third-party cookies
blocked, Safari's ITP, Firefox's Total Cookie Protection). The visitor's token is kept twice,
both per host site: in a partitioned cookie (Chrome, Firefox, Edge) and in the frame's own
storage (Safari, Firefox), which the frame sends in the form that renders the chat, in the
Socket.IO `auth` and in a header on HTMX requests and uploads (app/web.py `current_visitor`).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

from quart import Blueprint, Response, current_app, g, render_template, request

from app.chat.rooms import ADMINS
from app.errors import SohbetError
from app.i18n import error_text, gettext
from app.models import Conversation
from app.realtime.handshake import widget_cookie
from app.web import CSP, client_address, current_visitor, services
from app.widget.pages import host_page, starting_on

bp = Blueprint("widget", __name__)

COOKIE_DAYS = 365


async def frame_ancestors() -> str:
    """Who may frame the widget's pages: the origins on WIDGET_ORIGINS now, else nobody."""
    origins = await services().widget_origins.current()
    return " ".join(origins) if origins else "'none'"


async def _host_origin(value: str | None) -> str | None:
    """The host page's origin the loader names, if it is on WIDGET_ORIGINS now."""
    return await services().widget_origins.allows(value)


async def _framable(body: str, status: int = 200) -> Response:
    response = Response(body, status, mimetype="text/html")
    ancestors = await frame_ancestors()
    response.headers["Content-Security-Policy"] = CSP.format(frame_ancestors=ancestors)
    return response


async def _refused() -> Response:
    page = await render_template("error.html", message=error_text("forbidden", {}), status=403)
    return Response(page, 403, mimetype="text/html")


def frame_url() -> str:
    """The frame's URL with a hash of its script, so a new release is never a stale frame."""
    asset = current_app.jinja_env.globals["asset"]
    version = str(asset("js/widget-frame.js")).rsplit("v=", 1)[-1]  # type: ignore[operator]
    return f"/widget/frame?v={version}"


@functools.cache
def _loader_source(static_folder: str) -> str:
    """The loader without its comment lines: every byte of it is on every host page view."""
    lines = Path(static_folder, "js", "widget.js").read_text().splitlines()
    return "\n".join(line.strip() for line in lines if not line.lstrip().startswith("//")) + "\n"


@bp.get("/widget.js")
async def loader() -> Response:
    """The loader a host site pastes: its URL never changes; the frame's URL inside does.

    It is the same for every host site: whether the page's origin may show the widget, it
    asks `/widget/status` (so a change of the list in the panel counts at once, whatever
    copy of the loader a browser or a CDN keeps)."""
    if not await services().widget_origins.current():
        body = "/* The Sohbet widget is off: no site is on its list (WIDGET_ORIGINS). */\n"
        cache = "no-cache"  # turned on in the panel: the next page view gets the loader
    else:
        source = _loader_source(str(current_app.static_folder))
        config = {"frame": frame_url()}
        body = source.replace("__SOHBET__", json.dumps(config, separators=(",", ":")))
        # Cached briefly: host pages load it on every page view, and a release reaches them soon.
        cache = "public, max-age=300"
    response = Response(body, mimetype="text/javascript")
    response.headers["Cache-Control"] = cache
    return response


@bp.get("/widget/status")
async def status() -> Response:
    """What the closed launcher shows: whether an operator is online, in the visitor's
    language, and when to ask again. A page on any other origin than WIDGET_ORIGINS' (now)
    reads only `{"ok": false}`, and the loader then shows nothing: said in a readable answer,
    not a failed request, so a site that pasted the snippet before being listed gets no
    errors in its console."""
    svc = services()
    sent = request.headers.get("Origin")
    origin = await svc.widget_origins.allows(sent)
    body: dict[str, object] = {"ok": False}
    if origin is not None:
        online = await svc.chat.fanout.presence.online(ADMINS)
        body = {
            "ok": True,
            "online": online,
            "label": gettext("online") if online else gettext("offline"),
            "poll": svc.settings.widget_poll_seconds,
        }
    response = Response(json.dumps(body, ensure_ascii=False), mimetype="application/json")
    if sent:
        response.headers["Access-Control-Allow-Origin"] = sent
    response.vary.add("Origin")
    response.headers["Cache-Control"] = "no-store"
    return response


async def _chat(conv: Conversation, origin: str, token: str = "") -> Response:
    """The visitor's chat in the frame; a token given is kept in the partitioned cookie too."""
    svc = services()
    await svc.chat.set_locale(conv, g.locale)
    messages, more = await svc.chat.queries.recent(conv.id)
    page = await render_template(
        "widget/chat.html",
        conv=conv,
        messages=messages,
        more=more,
        operator_online=await svc.chat.fanout.presence.online(ADMINS),
        author=await svc.chat.queries.last_author(conv.id),
        host_origin=origin,
        new_token=token,
    )
    response = await _framable(page)
    if token:
        # Partitioned (CHIPS): kept for this host site only, and sent where third-party
        # cookies are blocked; Secure is required for it (browsers count localhost secure).
        response.set_cookie(
            widget_cookie(svc.settings),
            token,
            max_age=COOKIE_DAYS * 86400,
            httponly=True,
            secure=True,
            samesite="None",
            partitioned=True,
            path="/",
        )
    return response


async def back_to_frame() -> str | None:
    """Where a navigation of the widget's frame to the standalone page (the language switch,
    an ended conversation) should go instead: the frame again, for the same host site."""
    if request.headers.get("Sec-Fetch-Dest") != "iframe":
        return None
    referrer = urlsplit(request.headers.get("Referer", ""))
    if referrer.path != "/widget/frame":
        return None
    origin = await _host_origin(parse_qs(referrer.query).get("origin", [""])[0])
    return f"/widget/frame?{urlencode({'origin': origin})}" if origin else None


@bp.get("/widget/frame")
async def frame() -> Response:
    """The start form; the frame's script posts back a token it keeps, to show that chat."""
    origin = await _host_origin(request.args.get("origin"))
    if origin is None:
        return await _refused()
    conv = await current_visitor()
    if conv is not None:
        return await _chat(conv, origin)
    return await _framable(await render_template("widget/start.html", host_origin=origin))


@bp.post("/widget/frame")
async def frame_chat() -> Response:
    """The chat of the token the frame keeps (the same check as the visitor cookie's)."""
    form = await request.form
    origin = await _host_origin(form.get("origin"))
    if origin is None:
        return await _refused()
    token = str(form.get("token", ""))
    conv = await services().chat.queries.by_token(token)
    if conv is None:
        page = await render_template("widget/start.html", host_origin=origin, forget=True)
        return await _framable(page)
    return await _chat(conv, origin, token)


@bp.post("/widget/start")
async def start() -> Response:
    """Open a conversation from the frame; its token goes to the frame's storage, not a cookie."""
    svc = services()
    form = await request.form
    origin = await _host_origin(form.get("origin"))
    if origin is None:
        return await _refused()
    origins = await svc.widget_origins.current()
    host = host_page(form.get("host_url"), form.get("host_title"), origins)
    starting = starting_on.set(host)
    try:
        conv, token = await svc.chat.start_conversation(
            form.get("name"), g.locale, client=client_address()
        )
    except SohbetError as exc:
        page = await render_template(
            "widget/start.html",
            host_origin=origin,
            error=error_text(exc.code, exc.params),
            name=form.get("name", ""),
        )
        return await _framable(page, exc.status)
    finally:
        starting_on.reset(starting)
    return await _chat(conv, origin, token)
