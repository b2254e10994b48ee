"""Socket.IO room names on `/chat` and `/call`, which are also the presence keys.

A socket joins the room of what it shows, and presence counts the same name, so "is the
visitor of conversation 12 on the page" and "push to that page" use one spelling.
"""

from __future__ import annotations

# Every operator socket (panels and single-chat pages, on `/chat` and `/call`).
ADMINS = "admins"
# The sockets that show the conversation list (panels, not single-chat sockets).
LIST_WATCHERS = "list"
# Visitor pages, by locale (`visitors:tr`): what the operator's online state is pushed to.
VISITORS = "visitors"

_VISITOR_PREFIX = "v:"
# One operator's sockets; closing such a room disconnects them (app/realtime/manager.py).
OPERATOR_PREFIX = "operator:"


def visitor_room(conversation_id: int) -> str:
    """The visitor's sockets of one conversation."""
    return f"{_VISITOR_PREFIX}{conversation_id}"


def admin_room(conversation_id: int) -> str:
    """The operator sockets that have one conversation open."""
    return f"a:{conversation_id}"


def operator_room(operator_id: int) -> str:
    """Every socket of one operator (all their tabs, on `/chat` and `/call`)."""
    return f"{OPERATOR_PREFIX}{operator_id}"


def visitors_room(locale: str) -> str:
    """Visitor pages shown in one locale."""
    return f"{VISITORS}:{locale}"


def conversation_of(room: str) -> int | None:
    """The conversation id of a visitor room, or None for any other name."""
    if not room.startswith(_VISITOR_PREFIX):
        return None
    rest = room[len(_VISITOR_PREFIX) :]
    return int(rest) if rest.isdigit() and visitor_room(int(rest)) == room else None
