"""Receipts: how far each side has received ("delivered") and seen the other side's messages.

Each conversation keeps two watermarks per reader, which only move forward; every move is
pushed to both sides, so the author's ticks change live.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import socketio

from app.chat.rooms import admin_room, visitor_room
from app.errors import InvalidInput
from app.models import Conversation, Message

READERS = ("visitor", "admin")


class SeenListener(Protocol):
    """Something to do when the visitor has seen operator messages (Telegram's 👀 reaction)."""

    async def seen_by_visitor(self, conv: Conversation, messages: list[Message]) -> None: ...


def other_role(role: str) -> str:
    return "admin" if role == "visitor" else "visitor"


def receipt_state(conv: Conversation, message: Message) -> str:
    """Where the author's message is: "sent", "delivered" (reached the other side) or "seen"."""
    reader = other_role(message.role)
    if getattr(conv, f"{reader}_seen_seq", 0) >= message.seq:
        return "seen"
    if getattr(conv, f"{reader}_delivered_seq", 0) >= message.seq:
        return "delivered"
    return "sent"


def receipt_payload(conv: Conversation, reader: str) -> dict[str, Any]:
    """The `chat:receipt` shape: how far `reader` has received and seen the other side."""
    return {
        "chat_id": conv.cid,
        "reader": reader,
        "delivered": getattr(conv, f"{reader}_delivered_seq"),
        "seen": getattr(conv, f"{reader}_seen_seq"),
    }


class Receipts:
    """Moves the watermarks, tells both sides, and tells the seen listeners."""

    def __init__(self, sio: socketio.AsyncServer, seen_listeners: Sequence[SeenListener]) -> None:
        self.sio = sio
        self.seen_listeners = tuple(seen_listeners)

    async def record(
        self,
        conv: Conversation,
        reader: str,
        *,
        delivered: int = 0,
        seen: int = 0,
        by: dict[str, Any] | None = None,
    ) -> None:
        """`reader` has received (delivered) or seen the other side's messages up to a seq;
        `by`, the operator who saw them, rides on the receipt (`by`: id, name, avatar) when
        the seen mark moved."""
        if reader not in READERS:
            raise InvalidInput("bad_payload")
        seen = min(seen, conv.last_seq)
        delivered = min(max(delivered, seen), conv.last_seq)
        d_field, s_field = f"{reader}_delivered_seq", f"{reader}_seen_seq"
        moved = 0
        if delivered:
            moved += await Conversation.filter(id=conv.id, **{f"{d_field}__lt": delivered}).update(
                **{d_field: delivered}
            )
        old_seen: int = getattr(conv, s_field)
        seen_moved = 0
        if seen:
            seen_moved = await Conversation.filter(id=conv.id, **{f"{s_field}__lt": seen}).update(
                **{s_field: seen}
            )
        if not (moved or seen_moved):
            return
        fresh = await Conversation.get_or_none(id=conv.id)
        if fresh is None:
            return
        for name in (d_field, s_field):
            setattr(conv, name, getattr(fresh, name))
        payload = receipt_payload(fresh, reader)
        if by is not None and seen_moved:
            payload["by"] = by
        for room in (visitor_room(conv.id), admin_room(conv.id)):
            await self.sio.emit("chat:receipt", payload, room=room, namespace="/chat")
        if reader == "visitor" and seen_moved and self.seen_listeners:
            replies = await Message.filter(
                conversation_id=conv.id,
                role="admin",
                source="telegram",
                deleted_at__isnull=True,
                seq__gt=old_seen,
                seq__lte=fresh.visitor_seen_seq,
            ).order_by("seq")
            if replies:
                for listener in self.seen_listeners:
                    await listener.seen_by_visitor(fresh, list(replies))
