"""A message on its way to the database: the validated draft, its media, the stored result,
the listeners that act in the same transaction, and how a draft advances its conversation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from tortoise.backends.base.client import BaseDBAsyncClient

from app.chat.previews import media_label, preview
from app.models import Conversation, Message


@dataclass(frozen=True)
class Attachment:
    """A media object already stored under `key`, to be referenced by its message's row."""

    key: str
    content_type: str
    size: int
    width: int = 0
    height: int = 0
    duration_ms: int = 0
    name: str = ""


@dataclass(frozen=True)
class Draft:
    """A validated message waiting to be stored."""

    conversation_id: int
    role: str
    kind: str
    body: str
    client_id: str
    source: str
    # The socket that sent it gets the message in its ack; the push skips it.
    origin_sid: str | None = None
    media: Attachment | None = None
    # The operator who wrote it (an admin message), and their name now.
    author: Author | None = None


@dataclass(frozen=True)
class Author:
    """An operator message's author: their id and the name the message keeps."""

    operator_id: int
    name: str


def session_author(session: Mapping[str, Any]) -> Author | None:
    """The author of what an operator's socket sends (None for a visitor's socket)."""
    operator_id = session.get("operator_id")
    if session.get("role") != "admin" or operator_id is None:
        return None
    return Author(int(operator_id), str(session.get("operator_name", "")))


@dataclass(frozen=True)
class Posted:
    """The stored message, its conversation after the write, and whether this call created it."""

    message: Message
    conversation: Conversation
    created: bool
    # Fragments already rendered for the fan-out, by viewer, reused for the sender's ack.
    rendered: dict[str, str] = field(default_factory=dict)
    origin_sid: str | None = None


class ChatListener(Protocol):
    """Something that must happen with stored messages, in the same transaction.

    The Telegram bridge writes its outbox rows here, so a committed message is never left
    without its forward, and a rolled-back one never gets one.
    """

    async def conversation_started(self, tx: BaseDBAsyncClient, conv: Conversation) -> None: ...

    async def messages_stored(
        self, tx: BaseDBAsyncClient, stored: Sequence[tuple[Conversation, Message]]
    ) -> None: ...

    def committed(self) -> None:
        """Called after the commit (wake a worker)."""


def apply(conv: Conversation, draft: Draft, now: datetime) -> Message:
    """Advance a conversation by one message and build that message's row (not saved)."""
    conv.last_seq += 1
    conv.last_message_at = now
    media = draft.media
    label = media_label(draft.kind, media.duration_ms, media.name) if media else ""
    conv.last_preview = preview(" ".join(filter(None, [label, draft.body])))
    conv.last_role = draft.role
    if draft.role == "visitor":
        conv.unread_admin += 1
        conv.waiting_since = conv.waiting_since or now
        conv.closed_at = None
    elif draft.role == "admin":
        conv.unread_admin = 0
        conv.waiting_since = None
    return Message(
        conversation_id=conv.id,
        seq=conv.last_seq,
        client_id=draft.client_id,
        role=draft.role,
        kind=draft.kind,
        text=draft.body,
        source=draft.source,
        created_at=now,
        operator_id=draft.author.operator_id if draft.author else None,
        author_name=draft.author.name if draft.author else "",
        **(_media_fields(media) if media else {}),
    )


def _media_fields(media: Attachment) -> dict[str, object]:
    return {
        "media_key": media.key,
        "media_type": media.content_type,
        "media_size": media.size,
        "media_width": media.width,
        "media_height": media.height,
        "media_duration_ms": media.duration_ms,
        "media_name": media.name,
    }
