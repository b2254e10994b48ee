"""ICE servers for a call's participants, with short-lived TURN REST credentials.

The TURN REST scheme (coturn's `use-auth-secret`): the username is "<expiry unix time>:<id>",
the password base64(HMAC-SHA1(secret, username)). The server never stores them: coturn checks
the signature with the same secret, and they stop working at the expiry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from app.config import CallSettings


def turn_credentials(secret: str, user: str, ttl: int, now: float | None = None) -> tuple[str, str]:
    """(username, credential) valid for `ttl` seconds from now."""
    expiry = int((time.time() if now is None else now) + ttl)
    username = f"{expiry}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers_for(calls: CallSettings, user: str) -> list[dict[str, Any]]:
    """The `iceServers` a participant's RTCPeerConnection gets (TURN only with a secret)."""
    servers: list[dict[str, Any]] = [{"urls": list(urls)} for urls in calls.ice_servers]
    if calls.turn_secret and calls.turn_urls:
        username, credential = turn_credentials(calls.turn_secret, user, calls.turn_ttl)
        servers.append(
            {"urls": list(calls.turn_urls), "username": username, "credential": credential}
        )
    return servers
