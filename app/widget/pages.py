"""The host page a widget conversation starts on, stored in the transaction that creates it.

So the first notice of the conversation (Telegram's "entered") already names the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from urllib.parse import urlsplit

from tortoise.backends.base.client import BaseDBAsyncClient

from app.models import Conversation, Message

MAX_URL = 1024
MAX_TITLE = 200

# Set by the widget's start view for the conversation it is about to create (this task only).
starting_on: ContextVar[tuple[str, str] | None] = ContextVar("starting_on", default=None)


def host_page(url: object, title: object, origins: Sequence[str]) -> tuple[str, str] | None:
    """A host page's URL and title, if the URL is on one of the widget's origins."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        return None
    parts = urlsplit(url.strip())
    if f"{parts.scheme}://{parts.netloc}" not in origins:
        return None
    return url.strip(), title.strip()[:MAX_TITLE] if isinstance(title, str) else ""


class StartPage:
    """A chat listener that records the host page on a conversation the widget starts."""

    async def conversation_started(self, tx: BaseDBAsyncClient, conv: Conversation) -> None:
        page = starting_on.get()
        if page is None:
            return
        conv.host_url, conv.host_title = page
        await conv.save(using_db=tx, update_fields=["host_url", "host_title"])

    async def messages_stored(
        self, tx: BaseDBAsyncClient, stored: Sequence[tuple[Conversation, Message]]
    ) -> None:
        return None

    def committed(self) -> None:
        return None
