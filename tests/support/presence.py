"""The team's presence over real sockets: operators made through the owner's invitation and
signed in with the code in the server log, and waiting for events that came after a moment."""

from __future__ import annotations

from typing import Any

from tests.support.clients import Peer
from tests.support.server import Server
from tests.support.team import accept_invite, create_invite, sign_in_log

PASSWORD = "sifre-1234-uzun"


async def new_operator(
    server: Server, owner: str, name: str, sign_in_on: Server | None = None
) -> str:
    """The owner invites `name`, who accepts and signs in (on `sign_in_on`); her session."""
    status, setup, page = await accept_invite(await create_invite(server, owner), name, PASSWORD)
    assert status == 303 and setup, page
    return await sign_in_log(sign_in_on or server, name, PASSWORD)


def online_names(payload: dict[str, Any]) -> set[str]:
    """The names in a panel's `presence:operator`."""
    return {op["name"] for op in payload.get("operators", ())}


async def wait_after(
    peer: Peer, name: str, seen: int, predicate: Any, timeout: float = 10
) -> dict[str, Any]:
    """The first `name` event matching `predicate` among those after the first `seen`."""

    def fresh(item: Any) -> bool:
        later = peer.events[name][seen:]
        return any(item is e for e in later) and bool(predicate(item))

    found: dict[str, Any] = await peer.wait_for(name, fresh, timeout=timeout)
    return found
