"""The panel's sign-in security page: enrol an authenticator app, recovery codes, turn it off."""

from __future__ import annotations

from quart import Blueprint, g, render_template, request

from app.admin.auth import SessionInfo
from app.admin.guard import operator_required, require_csrf
from app.audit.origin import request_origin
from app.audit.trail import record_after
from app.chat.handoff import qr_svg_data_uri
from app.errors import InvalidInput
from app.i18n import gettext as _
from app.models import Operator
from app.web import services

bp = Blueprint("security", __name__)

CHANGES = ("recovery", "move", "remove")


async def _page(status: int = 200, error: str = "", **context: object) -> tuple[str, int]:
    """The security page with the factor's state, plus what this step shows."""
    authenticator = services().auth.authenticator
    operator: Operator = g.operator
    pending = await authenticator.pending(operator.id, operator.name)
    if pending is not None and "recovery_codes" not in context:
        context.update(enrolment=pending, qr=qr_svg_data_uri(pending.uri))
    page = await render_template(
        "admin/security.html",
        factor=await authenticator.status(operator.id),
        csrf_token=g.admin.csrf_token,
        error=error or None,
        **context,
    )
    return page, status


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
    authenticator = services().auth.authenticator
    operator: Operator = g.operator
    if await authenticator.enrolled(operator.id):
        # Moving to another app is a change: it goes through `change` and its code.
        return await _page(409)
    await authenticator.start(operator.id, operator.name)
    return await _page()


@bp.post("/security/totp/confirm")
@operator_required
async def confirm_enrolment() -> tuple[str, int]:
    """Turn the app on once it shows a current code; the recovery codes are shown this once."""
    await require_csrf()
    form = await request.form
    codes = await services().auth.authenticator.confirm(g.operator.id, form.get("code"))
    if codes is None:
        error = _("That code does not match. Check the phone's clock and type the code shown now.")
        return await _page(400, error)
    await record_after("totp_enrol", by=request_origin(), target=_account())
    return await _page(recovery_codes=codes)


@bp.post("/security/change")
@operator_required
async def change() -> tuple[str, int]:
    """New recovery codes, a move to another app, or turning the app off: each needs a current
    code from the app (or a recovery code)."""
    await require_csrf()
    form = await request.form
    action = form.get("action")
    if action not in CHANGES:
        raise InvalidInput("bad_payload")
    authenticator = services().auth.authenticator
    session: SessionInfo = g.admin
    operator = session.operator
    if not await authenticator.enrolled(operator.id):
        return await _page(409)
    if not await authenticator.authorize_change(operator.id, session.token_hash, form.get("code")):
        error = _("That code is not right. Type the code your app shows now, or a recovery code.")
        return await _page(400, error)
    if action == "recovery":
        codes = await authenticator.new_recovery_codes(operator.id)
        await record_after("totp_recovery", by=request_origin(), target=_account())
        return await _page(recovery_codes=codes)
    if action == "move":
        # Recorded when the new app is confirmed (the old one stays on until then).
        await authenticator.start(operator.id, operator.name)
        return await _page()
    await authenticator.remove(operator.id)
    await record_after("totp_remove", by=request_origin(), target=_account())
    return await _page()


def _account() -> str:
    """Whose sign-in the change is about: the signed-in operator's."""
    name: str = g.operator.name
    return name
