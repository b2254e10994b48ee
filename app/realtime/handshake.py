"""What a Socket.IO handshake is checked against: its origin, its cookies and its auth token."""

from __future__ import annotations

from http.cookies import CookieError, SimpleCookie
from typing import Any

from app.config import Settings


def origin_allowed(origin: str, own: str, settings: Settings) -> bool:
    """Same origin as the request, or on ALLOWED_ORIGINS."""
    origin = origin.rstrip("/")
    return origin == own or origin in settings.allowed_origins


def cookies_of(environ: dict[str, Any]) -> dict[str, str]:
    """The cookies sent with a Socket.IO handshake."""
    jar = SimpleCookie()
    try:
        jar.load(environ.get("HTTP_COOKIE", ""))
    except CookieError:
        return {}
    return {key: morsel.value for key, morsel in jar.items()}


WIDGET_COOKIE = "sohbet_widget"


def widget_cookie(settings: Settings) -> str:
    """The widget frame's partitioned cookie (CHIPS): kept per host site where a third-party
    frame may keep no other cookie."""
    return f"__Host-{WIDGET_COOKIE}" if settings.cookie_secure else WIDGET_COOKIE


def visitor_token(
    cookies: dict[str, str], settings: Settings, cookie_name: str, auth: object
) -> str | None:
    """The visitor's token: the visitor cookie, the widget's partitioned cookie, else
    `auth.token` (the widget's frame, from its own storage where no cookie is kept)."""
    token = cookies.get(cookie_name) or cookies.get(widget_cookie(settings))
    if token:
        return token
    if isinstance(auth, dict) and isinstance(auth.get("token"), str):
        value: str = auth["token"]
        return value
    return None
