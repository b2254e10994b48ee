"""Operator sign-in and sign-out: the password, the one-time code, the session cookie."""

from __future__ import annotations

from quart import Blueprint, g, redirect, render_template, request
from werkzeug.wrappers.response import Response as WerkzeugResponse

from app.admin.auth import Method
from app.admin.guard import operator_required, require_csrf
from app.audit.origin import request_origin
from app.audit.trail import record_after
from app.errors import SohbetError
from app.i18n import error_text
from app.models import Operator
from app.web import client_address, services

bp = Blueprint("login", __name__)

LOGIN_COOKIE_SECONDS = 5 * 60


async def login_page(
    step: str = "password", error: str = "", method: str = "telegram", name: str = ""
) -> str:
    """The login page at one of its steps (the code step offers what this operator can use)."""
    if step != "code":
        # With one operator the password is all (the quick start); with a team, who signs in.
        names = (
            await Operator.filter(active=True).order_by("name_key").values_list("name", flat=True)
        )
        team = await Operator.all().count() > 1
        return await render_template(
            "admin/login.html",
            step=step,
            error=error or None,
            names=names if team else [],
            name=name,
        )
    return await render_template(
        "admin/login.html",
        step=step,
        error=error or None,
        method=method,
        **await _code_context(),
    )


async def _code_context() -> dict[str, object]:
    """How the challenge's code is getting on, and whether the authenticator app is an option."""
    auth = services().auth
    challenge = request.cookies.get(auth.challenge_cookie)
    operator = await auth.challenge_operator(challenge)
    return {
        "state": await auth.delivery_state(challenge),
        "enrolled": operator is not None and await auth.authenticator.enrolled(operator.id),
        "operator": operator,
    }


@bp.post("/login")
async def login() -> tuple[str, int] | WerkzeugResponse:
    """Check the password and send a one-time code; the browser gets a challenge cookie."""
    svc = services()
    form = await request.form
    try:
        challenge = await svc.auth.request_code(
            form.get("password"), client_address(), form.get("name", "")
        )
    except SohbetError as exc:
        if exc.code == "wrong_password":
            # Only a counted try is recorded: past the address's budget, the refusal is not
            # (an attacker could otherwise fill the table from one address).
            await _failed_signin("password", exc.code, form.get("name", ""))
        name = str(form.get("name", ""))[:40]
        return await login_page("password", error_text(exc.code, exc.params), name=name), (
            exc.status
        )
    response = redirect("/admin/code", 303)
    _set_cookie(response, svc.auth.challenge_cookie, challenge, LOGIN_COOKIE_SECONDS, "Strict")
    return response


@bp.get("/code")
async def code_form() -> str | WerkzeugResponse:
    """The second step: type the code the bot (or the server log) shows."""
    svc = services()
    if not request.cookies.get(svc.auth.challenge_cookie):
        return redirect("/admin", 303)
    return await login_page("code")


@bp.get("/code/status")
async def code_status() -> str:
    """The code step's line about delivery, polled while the code is on its way to Telegram."""
    return await render_template("partials/admin/code_status.html", **await _code_context())


@bp.post("/verify")
async def verify() -> tuple[str, int] | WerkzeugResponse:
    """Redeem the Telegram code, or an authenticator or recovery code, for a session cookie."""
    svc = services()
    form = await request.form
    method: Method = "app" if form.get("method") == "app" else "telegram"
    challenge = request.cookies.get(svc.auth.challenge_cookie)
    # Recorded only when this try counts against a live challenge's tries: a made-up or used
    # challenge, or one out of tries, writes nothing (the table cannot be flooded through it).
    counted = await svc.auth.challenge_open(challenge)
    try:
        token = await svc.auth.redeem_code(challenge, form.get("code"), client_address(), method)
    except SohbetError as exc:
        if counted:
            operator = await svc.auth.challenge_operator(challenge)
            await _failed_signin(method, exc.code, operator.name if operator else "")
        return await login_page("code", error_text(exc.code, exc.params), method), exc.status
    session = await svc.auth.session_for(token)
    await record_after(
        "signin",
        by=request_origin(session),
        target=session.operator.name if session else "",
        detail={"method": method},
    )
    return await start_session(token)


async def _failed_signin(step: str, reason: str, account: object = "") -> None:
    """A wrong password or code: the account tried (the name typed, or the challenge's
    operator; the owner when no name was needed), the step, why."""
    name = str(account or "")[:40] or await _sole_operator_name()
    await record_after(
        "signin_failed",
        by=request_origin(),
        target=name,
        detail={"step": step, "reason": reason},
    )


async def _sole_operator_name() -> str:
    """The one operator's name, when a sign-in needs no name."""
    everyone = await Operator.all().limit(2)
    return everyone[0].name if len(everyone) == 1 else ""


async def start_session(token: str) -> WerkzeugResponse:
    """The answer to a passed second factor: the session cookie, the challenge cookie gone."""
    svc = services()
    # Renewed at login: any session this browser had before is ended.
    await svc.auth.end_session(request.cookies.get(svc.auth.cookie_name))
    response = redirect("/admin", 303)
    response.delete_cookie(svc.auth.challenge_cookie, path="/", secure=svc.settings.cookie_secure)
    hours = svc.settings.admin_session_hours
    _set_cookie(response, svc.auth.cookie_name, token, hours * 3600, "Lax")
    return response


def _set_cookie(
    response: WerkzeugResponse, name: str, value: str, max_age: int, samesite: str
) -> None:
    """An operator cookie: HttpOnly, for the whole site, Secure where the settings say so."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite=samesite,
        secure=services().settings.cookie_secure,
        path="/",
    )


@bp.post("/logout")
@operator_required
async def logout() -> WerkzeugResponse:
    """End the session on the server and drop the cookie."""
    svc = services()
    await require_csrf()
    by = request_origin()
    await svc.auth.end_session(request.cookies.get(svc.auth.cookie_name))
    await record_after("signout", by=by, target=g.operator.name)
    response = redirect("/admin", 303)
    response.delete_cookie(svc.auth.cookie_name, path="/", secure=svc.settings.cookie_secure)
    return response
