"""Who may use an operator route: the page and API decorators, and the CSRF check on writes.

Behind either decorator, `g.admin` is the session (SessionInfo) and `g.operator` the signed-in
operator (app.models.Operator): what attribution, assignment and the audit trail record.
`signed_in()` returns that operator; `owner_required` lets only the owner through.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

from quart import Response, g, jsonify, redirect, request

from app.admin.auth import SessionInfo
from app.core.security import constant_time_equal
from app.errors import Forbidden
from app.i18n import error_text
from app.models import Operator
from app.web import current_operator, is_htmx, services

R = TypeVar("R")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def check_csrf(session: SessionInfo, form: Any = None) -> None:
    """Every operator state change carries the session's CSRF token (header from HTMX, or field)."""
    sent = request.headers.get("X-CSRF-Token") or (form or {}).get("csrf_token") or ""
    if not constant_time_equal(str(sent), session.csrf_token):
        raise Forbidden("csrf")


async def require_csrf() -> None:
    """The CSRF check for the signed-in operator of this request (after a decorator below)."""
    check_csrf(g.admin, await request.form)


def signed_in() -> Operator:
    """The operator of this request (in a view behind `operator_required` or `api_operator`)."""
    operator: Operator = g.operator
    return operator


def enter(session: SessionInfo) -> None:
    """Make a session this request's: `g.admin` and `g.operator`."""
    g.admin = session
    g.operator = session.operator


def operator_required(view: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[Any]]:
    """Let only a signed-in operator through; others go to the login page (HTMX: full reload)."""

    @wraps(view)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        session = await current_operator()
        if session is None:
            if is_htmx():
                return "", 401, {"HX-Redirect": "/admin"}
            return redirect("/admin", 303)
        enter(session)
        return await view(*args, **kwargs)

    return wrapper


def owner_required(view: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[Any]]:
    """`operator_required`, and the operator must be the owner (403 with a message otherwise)."""

    @operator_required
    @wraps(view)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not signed_in().is_owner:
            raise Forbidden("owner_only")
        return await view(*args, **kwargs)

    return wrapper


def api_operator(view: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[Any]]:
    """A signed-in operator only (401 JSON otherwise); a write also needs the CSRF header."""

    @wraps(view)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        session = await current_operator()
        if session is None:
            return await _unauthorized()
        enter(session)
        if request.method not in SAFE_METHODS:
            check_csrf(session)
        return await view(*args, **kwargs)

    return wrapper


async def _unauthorized() -> tuple[Response, int]:
    auth = services().auth
    code = await auth.refusal(request.cookies.get(auth.cookie_name)) or "unauthorized"
    body = {"error": code, "message": error_text(code, {})}
    return jsonify(body), 401
