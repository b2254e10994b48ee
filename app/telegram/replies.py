"""The operator's answers in Telegram: a text, or an edit of one, stored through the chat's
single write path as a panel reply is."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiogram import F, Router
from aiogram.types import Message

from app.chat.drafts import Author
from app.errors import SohbetError
from app.i18n import error_text, using_locale
from app.telegram import texts
from app.telegram.routing import client_id_for, conversation_for, topic_of

if TYPE_CHECKING:
    from app.telegram.bridge import TelegramBridge

log = logging.getLogger("sohbet.telegram.handlers")


async def on_text(message: Message, bridge: TelegramBridge, author: Author | None = None) -> None:
    """An operator's text: stored through the same write path as a panel reply."""
    if not bridge.is_admin_chat(message.chat.id) or message.from_user is None:
        return
    if message.from_user.is_bot or message.forum_topic_created is not None:
        return
    conv, text = await conversation_for(message, message.text or "")
    if conv is None:
        await bridge.say(
            texts.which_conversation(),
            reply_to=message.message_id,
            thread_id=topic_of(message),
        )
        return
    try:
        await bridge.chat.post_message(
            conv.id,
            role="admin",
            text=text,
            client_id=client_id_for(message),
            source="telegram",
            author=author,
        )
    except SohbetError as exc:
        with using_locale(bridge.settings.default_locale):
            await bridge.say(
                error_text(exc.code, exc.params),
                reply_to=message.message_id,
                thread_id=topic_of(message),
            )


async def on_edit(message: Message, bridge: TelegramBridge) -> None:
    """An edit in Telegram updates the web message (marked edited)."""
    if not bridge.is_admin_chat(message.chat.id):
        return
    conv, text = await conversation_for(message, message.text or "")
    if conv is not None:
        try:
            await bridge.chat.edit_message(conv.id, client_id_for(message), text)
        except SohbetError as exc:
            log.info("edit refused: %s", exc.code)


def router() -> Router:
    """Texts and their edits, on a router of their own."""
    replies = Router(name="replies")
    replies.message.register(on_text, F.text)
    replies.edited_message.register(on_edit, F.text)
    return replies
