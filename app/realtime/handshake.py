"""What a Socket.IO handshake is checked against: its origin and its cookies."""

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
