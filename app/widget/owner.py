"""The operator's widget page: the snippet to paste on the business's site, and where it works."""

from __future__ import annotations

from quart import render_template, request

from app.admin.guard import operator_required
from app.web import services
from app.widget.views import bp


@bp.get("/admin/widget")
@operator_required
async def owner_page() -> str:
    """Show the loader snippet and the origins on WIDGET_ORIGINS (set in the environment)."""
    settings = services().settings
    base = settings.public_url or request.host_url.rstrip("/")
    snippet = (
        f'<script src="{base}/widget.js" data-greeting="" data-color="#4338ca" '
        'data-position="right" async></script>'
    )
    return await render_template(
        "widget/owner.html",
        snippet=snippet,
        origins=settings.widget_origins,
        identity=bool(settings.widget_identity_secret),
    )
