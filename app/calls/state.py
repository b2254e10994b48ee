"""What a call is: its parties, state and mode, the `/call` rooms, and the refusal error."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from app.chat.rooms import ADMINS, visitor_room

NAMESPACE = "/call"
RINGING, ACTIVE, ENDED = "ringing", "active", "ended"
# What the parties are told while an answered call's server media has not connected both ways.
CONNECTING = "connecting"
P2P, RELAY, ECHO = "p2p", "relay", "echo"
ROLES = ("visitor", "admin")
SIDES_OF_RELAY = frozenset(("a", "b"))


def call_room(role: str, conversation_id: int) -> str:
    """The `/call` room of one side of a conversation: every operator page, or its visitor."""
    return ADMINS if role == "admin" else visitor_room(conversation_id)


@dataclass
class Call:
    """One call between a conversation's visitor and the operator (or one side and the echo)."""

    id: str
    conversation_id: int
    cid: str
    caller: str
    video: bool = False
    mode: str = P2P
    state: str = RINGING
    created_at: float = field(default_factory=time.monotonic)
    answered_at: float | None = None
    # When the server's media for the call began (relay slot taken, echo started), and when it
    # carried media both ways (both relay legs connected, or the echo leg).
    media_from: float | None = None
    connected_at: float | None = None
    sids: dict[str, str] = field(default_factory=dict)
    # The process each party's socket is on: when one stops beating, its party is gone.
    processes: dict[str, str] = field(default_factory=dict)
    # The process whose media hub carries the call's relay or echo legs (empty: none yet).
    relay_process: str = ""
    timer: asyncio.Task[None] | None = None
    synthetic: bool = False

    @property
    def echo(self) -> bool:
        return self.mode == ECHO

    def role_of(self, sid: str) -> str | None:
        for role, owner in self.sids.items():
            if owner == sid:
                return role
        return None

    def side_of(self, role: str) -> str:
        """The relay leg a participant uses: the caller is "a"."""
        return "a" if role == self.caller else "b"

    @property
    def public_state(self) -> str:
        """The state the parties see: an answered call is "active" only once its media flows
        both ways (both relay legs or the echo leg connected, or a page's P2P connection)."""
        if self.state == ACTIVE and self.connected_at is None:
            return CONNECTING
        return self.state

    def summary(self) -> dict[str, Any]:
        return {
            "call_id": self.id,
            "chat_id": self.cid,
            "state": self.public_state,
            "mode": self.mode,
            "from": self.caller,
            "video": self.video,
        }


class CallError(Exception):
    """A call action refused; `code` keys the translated message (app.calls.namespace)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code
