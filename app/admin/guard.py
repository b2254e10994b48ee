"""Who may use an operator route: the page and API decorators, and the CSRF check on writes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

from quart import Response, g, jsonify, redirect, request

from app.admin.auth import SessionInfo
from app.core.security import constant_time_equal
from app.errors import Forbidden
from app.i18n import error_text
from app.web import current_operator, is_htmx

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


def operator_required(view: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[Any]]:
    """Let only a signed-in operator through; others go to the login page (HTMX: full reload)."""

    @wraps(view)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        session = await current_operator()
        if session is None:
            if is_htmx():
                return "", 401, {"HX-Redirect": "/admin"}
            return redirect("/admin", 303)
        g.admin = session
        return await view(*args, **kwargs)

    return wrapper


def api_operator(view: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[Any]]:
    """A signed-in operator only (401 JSON otherwise); a write also needs the CSRF header."""

    @wraps(view)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        session = await current_operator()
        if session is None:
            return _unauthorized()
        g.admin = session
        if request.method not in SAFE_METHODS:
            check_csrf(session)
        return await view(*args, **kwargs)

    return wrapper


def _unauthorized() -> tuple[Response, int]:
    body = {"error": "unauthorized", "message": error_text("unauthorized", {})}
    return jsonify(body), 401
