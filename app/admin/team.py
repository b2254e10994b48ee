"""The team: the owner's page (operators, invitations, deactivation), the invitee's pages
(accept an invitation, link Telegram), and linking Telegram from a signed-in panel."""

from __future__ import annotations

from quart import Blueprint, g, redirect, render_template, request
from werkzeug.wrappers.response import Response as WerkzeugResponse

from app.admin.guard import operator_required, owner_required, require_csrf, signed_in
from app.admin.operators import INVITE_TTL, LINK_TTL, PASSWORD_MIN, SETUP_TTL, Operators
from app.audit.origin import address_hash, request_origin
from app.audit.trail import Actor, Origin, record_after
from app.chat.handoff import qr_svg_data_uri
from app.errors import SohbetError
from app.i18n import error_text
from app.models import Conversation, Operator
from app.web import client_address, is_htmx, services

bp = Blueprint("team", __name__)

SETUP_COOKIE = "sohbet_setup"
SETUP_SECONDS = int(SETUP_TTL.total_seconds())
LINK_STATUS = "/admin/telegram/link/status"
SETUP_STATUS = "/admin/invite/setup/status"


def _operators() -> Operators:
    return services().operators


def _base_url() -> str:
    return services().settings.public_url or request.host_url.rstrip("/")


async def _team_page(status: int = 200, error: str = "", **context: object) -> tuple[str, int]:
    """The team page: everyone, the open invitations, and what this step shows."""
    operators = _operators()
    page = await render_template(
        "admin/team.html",
        team=await operators.team(),
        invites=await operators.pending_invites(),
        me=signed_in(),
        csrf_token=g.admin.csrf_token,
        error=error or None,
        invite_hours=int(INVITE_TTL.total_seconds() // 3600),
        auto_assign=await services().chat.assignment.auto_enabled(),
        **context,
    )
    return page, status


@bp.get("/team")
@owner_required
async def team() -> tuple[str, int]:
    """The owner's team page: operators with their state, and the button to invite one."""
    return await _team_page()


@bp.post("/team/auto-assign")
@owner_required
async def auto_assign() -> tuple[str, int]:
    """The owner's switch: new conversations go round-robin to the operators online."""
    await require_csrf()
    form = await request.form
    enabled = form.get("enabled") == "1"
    await services().chat.assignment.set_auto(enabled, by=request_origin())
    if not is_htmx():
        return await _team_page()
    page = await render_template(
        "partials/admin/auto_assign.html", auto_assign=enabled, csrf_token=g.admin.csrf_token
    )
    return page, 200


@bp.post("/team/invite")
@owner_required
async def invite() -> tuple[str, int]:
    """A new one-time invitation link, shown as a link and a QR code."""
    await require_csrf()
    token, row = await _operators().invite(signed_in())
    await record_after("operator_invite", by=request_origin(), target=row.token_hash[:12])
    link = f"{_base_url()}/admin/invite/{token}"
    context = {"link": link, "qr": qr_svg_data_uri(link), "expires_at": row.expires_at}
    if is_htmx():
        return await render_template("partials/admin/invite.html", **context), 200
    return await _team_page(invite=context)


@bp.post("/team/invites/<digest>/revoke")
@owner_required
async def revoke(digest: str) -> tuple[str, int]:
    """End an invitation nobody has used yet: its link then says it has expired."""
    await require_csrf()
    await _operators().revoke_invite(signed_in(), digest)
    await record_after("invite_revoke", by=request_origin(), target=digest[:12])
    return await _team_page()


@bp.post("/team/<int:operator_id>/active")
@owner_required
async def set_active(operator_id: int) -> tuple[str, int]:
    """Deactivate (their sessions and sockets end at once) or reactivate an operator."""
    await require_csrf()
    form = await request.form
    active = form.get("active") == "1"
    try:
        before = await _operators().get(operator_id)
        theirs = await Conversation.filter(assigned_operator_id=operator_id).values_list(
            "id", flat=True
        )
        operator = await _operators().set_active(signed_in(), operator_id, active)
    except SohbetError as exc:
        if is_htmx():
            message = error_text(exc.code, exc.params)
            return await render_template("partials/alert.html", message=message), exc.status
        return await _team_page(exc.status, error_text(exc.code, exc.params))
    if before.active != operator.active:
        action = "operator_reactivate" if active else "operator_deactivate"
        await record_after(action, by=request_origin(), target=operator.name)
        if not active:
            for conversation_id in theirs:  # their rows now show them unassigned
                services().chat.fanout.schedule_row_of(int(str(conversation_id)))
    if is_htmx():
        row = await render_template(
            "partials/admin/operator_row.html",
            person=operator,
            me=signed_in(),
            csrf_token=g.admin.csrf_token,
        )
        return row, 200
    return await _team_page()


@bp.post("/telegram/link")
@operator_required
async def link_code() -> tuple[str, int]:
    """A code for the signed-in operator to send the bot, linking their own Telegram."""
    await require_csrf()
    code = await _operators().new_link_code(signed_in())
    context = await _link_context(code)
    page = await render_template("partials/admin/telegram_link.html", **context)
    state = await render_template(
        "partials/admin/telegram_linked.html", person=signed_in(), poll_url=LINK_STATUS
    )
    return page + state, 200


@bp.get("/telegram/link/status")
@operator_required
async def link_status() -> str:
    """Whether the signed-in operator's Telegram is linked now (polled by the link partial)."""
    operator = await _operators().get(signed_in().id)
    return await render_template(
        "partials/admin/telegram_linked.html", person=operator, poll_url=LINK_STATUS
    )


async def _link_context(code: str) -> dict[str, object]:
    """What the link step shows: the code, as a command and as a t.me link when the bot's
    username is known."""
    bridge = services().telegram
    username = await bridge.username() if bridge is not None else None
    deep = f"https://t.me/{username}?start={code}" if username else None
    return {
        "code": code,
        "deep_link": deep,
        "qr": qr_svg_data_uri(deep) if deep else None,
        "telegram": bridge is not None,
        "minutes": int(LINK_TTL.total_seconds() // 60),
    }


# The invitee ------------------------------------------------------------------------------------


async def _invite_page(
    token: str, status: int = 200, error: str = "", name: str = ""
) -> tuple[str, int]:
    page = await render_template(
        "admin/invite.html",
        token=token,
        error=error or None,
        name=name,
        password_min=PASSWORD_MIN,
    )
    return page, status


@bp.get("/invite/<token>")
async def invitation(token: str) -> tuple[str, int]:
    """The invitee's form: a display name and a password (an expired or used link says so)."""
    try:
        await _operators().open_invite(token)
    except SohbetError as exc:
        page = await render_template(
            "error.html", message=error_text(exc.code, exc.params), status=exc.status
        )
        return page, exc.status
    return await _invite_page(token)


@bp.post("/invite/<token>")
async def accept(token: str) -> tuple[str, int] | WerkzeugResponse:
    """Create the invited operator; their browser goes on to link Telegram."""
    form = await request.form
    name = str(form.get("name", ""))[:80]
    try:
        operator, setup_token = await _operators().accept(
            token, name, form.get("password"), form.get("password2")
        )
    except SohbetError as exc:
        if exc.code in {"invite_invalid", "invite_expired", "invite_used"}:
            message = error_text(exc.code, exc.params)
            page = await render_template("error.html", message=message, status=exc.status)
            return page, exc.status
        return await _invite_page(token, exc.status, error_text(exc.code, exc.params), name)
    # The new operator acts for themselves here (no session yet).
    settings = services().settings
    joined = Origin(
        Actor(operator.id, operator.name), "panel", address_hash(settings, client_address())
    )
    await record_after("operator_join", by=joined, target=operator.name)
    response = redirect("/admin/invite/setup", 303)
    # Only this browser may show the new operator's link code, for a short while.
    response.set_cookie(
        SETUP_COOKIE,
        setup_token,
        max_age=SETUP_SECONDS,
        httponly=True,
        samesite="Strict",
        secure=services().settings.cookie_secure,
        path="/admin/invite",
    )
    return response


@bp.get("/invite/setup")
async def setup() -> tuple[str, int] | WerkzeugResponse:
    """After accepting: the code to send the bot, so sign-in codes reach this operator."""
    operator = await _operators().setting_up(request.cookies.get(SETUP_COOKIE))
    if operator is None:
        return redirect("/admin", 303)
    code = await _operators().new_link_code(operator)
    page = await render_template(
        "admin/invite_setup.html", person=operator, **await _link_context(code)
    )
    return page, 200


@bp.get("/invite/setup/status")
async def setup_status() -> tuple[str, int]:
    """Whether the new operator's Telegram is linked yet (polled by the setup page)."""
    operator = await _operators().setting_up(request.cookies.get(SETUP_COOKIE))
    if operator is None:
        return "", 204
    fresh: Operator = await _operators().get(operator.id)
    return await render_template(
        "partials/admin/telegram_linked.html", person=fresh, poll_url=SETUP_STATUS
    ), 200
