"""Site-wide routes: liveness, readiness, the language switch, the manifest, the service worker."""

from __future__ import annotations

import asyncio
import json

from quart import Blueprint, Response, current_app, g, redirect, request, send_from_directory
from tortoise import Tortoise
from werkzeug.wrappers.response import Response as WerkzeugResponse

from app.i18n import gettext as _
from app.selftest.registry import describe
from app.web import LANG_COOKIE, services

bp = Blueprint("site", __name__)

READY_TIMEOUT = 3.0


@bp.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process serves HTTP."""
    return {"status": "ok"}


@bp.get("/health/ready")
async def ready() -> tuple[dict[str, str], int]:
    """Readiness: the process serves HTTP and its database answers."""
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await Tortoise.get_connection("default").execute_query("SELECT 1")
    except Exception as exc:
        return {"status": "unavailable", "reason": f"database: {describe(exc)}"}, 503
    return {"status": "ok", "database": "ok"}, 200


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


@bp.get("/manifest.webmanifest")
async def manifest() -> Response:
    """The web app manifest: the visitor page installs on a phone's home screen."""
    svc = services()
    icons = [
        {
            "src": f"/static/img/icon-{kind}{size}.png",
            "sizes": f"{size}x{size}",
            "type": "image/png",
            "purpose": purpose,
        }
        for size in (192, 512)
        for kind, purpose in (("", "any"), ("maskable-", "maskable"))
    ]
    body = {
        "name": _("Chat with %(name)s", name=svc.settings.operator_name),
        "short_name": svc.settings.operator_name[:12],
        "description": _("Live support"),
        "lang": g.locale,
        "start_url": "/",
        "scope": "/",
        "display": "standalone",
        "background_color": "#eef1f8",
        "theme_color": "#4338ca",
        "icons": icons,
    }
    response = Response(json.dumps(body, ensure_ascii=False), mimetype="application/manifest+json")
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/sw.js")
async def service_worker() -> Response:
    """The service worker, from the site root so its scope is the whole visitor page."""
    response = await send_from_directory(str(current_app.static_folder), "sw.js")
    response.mimetype = "text/javascript"
    response.headers["Cache-Control"] = "no-cache"
    return response
