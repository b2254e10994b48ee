"""The panel's sign-in security page: enrol an authenticator app, recovery codes, turn it off."""

from __future__ import annotations

from quart import Blueprint, g, render_template, request

from app.admin.guard import operator_required, require_csrf
from app.chat.handoff import qr_svg_data_uri
from app.i18n import gettext as _
from app.web import services

bp = Blueprint("security", __name__)


async def _page(status: int = 200, **context: object) -> tuple[str, int]:
    """The security page with the factor's state, plus what this step shows."""
    authenticator = services().auth.authenticator
    page = await render_template(
        "admin/security.html",
        factor=await authenticator.status(),
        csrf_token=g.admin.csrf_token,
        **context,
    )
    return page, status


async def _enrolment_page(status: int = 200, error: str = "") -> tuple[str, int]:
    pending = await services().auth.authenticator.pending()
    if pending is None:
        return await _page(status, error=error or None)
    qr = qr_svg_data_uri(pending.uri)
    return await _page(status, enrolment=pending, qr=qr, error=error or None)


@bp.get("/security")
@operator_required
async def security() -> tuple[str, int]:
    """Whether an authenticator app is set up, with the buttons to set it up or change it."""
    return await _page()


@bp.post("/security/totp")
@operator_required
async def start_enrolment() -> tuple[str, int]:
    """A new secret for the authenticator app, as a QR code and an otpauth:// link."""
    await require_csrf()
    await services().auth.authenticator.start()
    return await _enrolment_page()


@bp.post("/security/totp/confirm")
@operator_required
async def confirm_enrolment() -> tuple[str, int]:
    """Turn the app on once it shows a current code; the recovery codes are shown this once."""
    await require_csrf()
    form = await request.form
    codes = await services().auth.authenticator.confirm(form.get("code"))
    if codes is None:
        error = _("That code does not match. Check the phone's clock and type the code shown now.")
        return await _enrolment_page(400, error)
    return await _page(recovery_codes=codes)


@bp.post("/security/recovery")
@operator_required
async def new_recovery_codes() -> tuple[str, int]:
    """Ten new recovery codes; the old ones stop working."""
    await require_csrf()
    authenticator = services().auth.authenticator
    if not await authenticator.enrolled():
        return await _page(400)
    return await _page(recovery_codes=await authenticator.new_recovery_codes())


@bp.post("/security/totp/remove")
@operator_required
async def remove() -> tuple[str, int]:
    """Turn the authenticator app off: sign-in codes come from Telegram only again."""
    await require_csrf()
    await services().auth.authenticator.remove()
    return await _page()
