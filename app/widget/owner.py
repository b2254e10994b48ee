"""The operator's widget page: the snippet to paste on the business's site, and the sites it may
be shown on (WIDGET_ORIGINS), which the owner adds and removes here."""

from __future__ import annotations

from quart import Response, g, redirect, render_template, request
from werkzeug.wrappers.response import Response as WerkzeugResponse

from app.admin.guard import owner_required, require_csrf
from app.audit.origin import request_origin
from app.config import MAX_ORIGIN
from app.errors import SohbetError
from app.i18n import error_text
from app.web import services
from app.widget.views import bp


async def _page(status: int = 200, error: str = "", draft: str = "") -> tuple[str, int]:
    svc = services()
    base = svc.settings.public_url or request.host_url.rstrip("/")
    snippet = (
        f'<script src="{base}/widget.js" data-greeting="" data-color="#4338ca" '
        'data-position="right" async></script>'
    )
    page = await render_template(
        "widget/owner.html",
        snippet=snippet,
        origins=await svc.widget_origins.current(),
        identity=bool(svc.settings.widget_identity_secret),
        csrf_token=g.admin.csrf_token,
        error=error,
        draft=draft,
    )
    return page, status


@bp.get("/admin/widget")
@owner_required
async def owner_page() -> tuple[str, int]:
    """Show the loader snippet and the sites allowed to show it, with the forms to change them."""
    return await _page()


@bp.post("/admin/widget/origins")
@owner_required
async def add_origin() -> tuple[str, int] | Response | WerkzeugResponse:
    """Allow one more site; a refused address comes back in the form with why, nothing saved."""
    await require_csrf()
    typed = str((await request.form).get("origin", ""))
    try:
        await services().widget_origins.add(typed, by=request_origin())
    except SohbetError as exc:
        return await _page(exc.status, error_text(exc.code, exc.params), typed[:MAX_ORIGIN])
    return redirect("/admin/widget", 303)


@bp.post("/admin/widget/origins/remove")
@owner_required
async def remove_origin() -> tuple[str, int] | Response | WerkzeugResponse:
    """Stop a site from showing the widget (its pages lose it on their next request)."""
    await require_csrf()
    try:
        await services().widget_origins.remove(
            (await request.form).get("origin", ""), by=request_origin()
        )
    except SohbetError as exc:
        return await _page(exc.status, error_text(exc.code, exc.params))
    return redirect("/admin/widget", 303)
