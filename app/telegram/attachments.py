"""The operator's photos, voice notes and audio in Telegram: downloaded, checked like an upload,
and stored through the chat's single write path."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import Message

from app.chat.drafts import Author
from app.errors import SohbetError
from app.i18n import error_text, using_locale
from app.i18n import gettext as _
from app.media.service import size_text
from app.models import Conversation
from app.telegram import texts
from app.telegram.routing import client_id_for, conversation_for, topic_of

if TYPE_CHECKING:
    from app.telegram.bridge import TelegramBridge

# Bots can download files of at most 20 MB through the Bot API.
TELEGRAM_DOWNLOAD_LIMIT = 20 * 1024 * 1024


def attachment_of(message: Message) -> tuple[str, str, int, str] | None:
    """(kind, file_id, size, file name) of a photo, voice note, audio or image/audio file."""
    if message.photo:
        biggest = message.photo[-1]
        return "photo", biggest.file_id, biggest.file_size or 0, ""
    if message.voice:
        return "voice", message.voice.file_id, message.voice.file_size or 0, ""
    if message.audio:
        audio = message.audio
        return "audio", audio.file_id, audio.file_size or 0, audio.file_name or ""
    doc = message.document
    if doc is not None and (doc.mime_type or "").startswith(("image/", "audio/")):
        kind = "photo" if (doc.mime_type or "").startswith("image/") else "audio"
        return kind, doc.file_id, doc.file_size or 0, doc.file_name or ""
    return None


async def on_media(message: Message, bridge: TelegramBridge, author: Author | None = None) -> None:
    """An operator's photo, voice note or audio: downloaded, checked like an upload, and stored
    through the same write path; a file too big to pass on is announced in both places."""
    if not bridge.is_admin_chat(message.chat.id) or message.from_user is None:
        return
    if message.from_user.is_bot or bridge.media is None:
        return
    conv, caption = await conversation_for(message, message.caption or "")
    thread = topic_of(message)
    if conv is None:
        await bridge.say(texts.which_conversation(), reply_to=message.message_id, thread_id=thread)
        return
    found = attachment_of(message)
    if found is None:
        with using_locale(bridge.settings.default_locale):
            await bridge.say(
                texts.unsupported_file(), reply_to=message.message_id, thread_id=thread
            )
        return
    kind, file_id, size, name = found
    limit = min(TELEGRAM_DOWNLOAD_LIMIT, bridge.media.settings.max_bytes)
    data = b""
    if size <= limit:
        try:
            tg_file = await bridge.bot.get_file(file_id)
            if tg_file.file_path:
                buffer = io.BytesIO()
                await bridge.bot.download_file(tg_file.file_path, destination=buffer)
                data = buffer.getvalue()
            else:  # Telegram gives no path for a file bots cannot download
                size = TELEGRAM_DOWNLOAD_LIMIT + 1
        except TelegramBadRequest as exc:
            if "too big" not in exc.message.lower():
                raise
            size = TELEGRAM_DOWNLOAD_LIMIT + 1
    if size > limit or len(data) > limit:
        await _too_big(message, bridge, conv, max(size, len(data)), limit, author)
        return
    try:
        await bridge.media.post(
            conv.id,
            role="admin",
            kind=kind,
            data=data,
            client_id=client_id_for(message),
            filename=name,
            caption=caption,
            source="telegram",
            author=author,
        )
    except SohbetError as exc:
        with using_locale(bridge.settings.default_locale):
            await bridge.say(
                error_text(exc.code, exc.params), reply_to=message.message_id, thread_id=thread
            )


async def _too_big(
    message: Message,
    bridge: TelegramBridge,
    conv: Conversation,
    size: int,
    limit: int,
    author: Author | None,
) -> None:
    """Tell the operator (in Telegram) and the visitor (in the chat) that a file did not come."""
    with using_locale(bridge.settings.default_locale):
        note = (
            texts.too_big()
            if size > TELEGRAM_DOWNLOAD_LIMIT
            else texts.too_big_for_chat(size_text(limit))
        )
        await bridge.say(note, reply_to=message.message_id, thread_id=topic_of(message))
    with using_locale(conv.locale):
        text = _(
            "%(name)s sent a file that is too large to show here (at most %(limit)s).",
            name=author.name if author else bridge.settings.operator_name,
            limit=size_text(limit),
        )
    await bridge.chat.post_message(
        conv.id,
        role="system",
        text=text,
        client_id=client_id_for(message),
        source="telegram",
    )


def router() -> Router:
    """Files of every kind (those that cannot be passed on get a notice), on their own router."""
    attachments = Router(name="attachments")
    attachments.message.register(
        on_media,
        F.photo | F.voice | F.audio | F.document | F.video | F.video_note | F.animation | F.sticker,
    )
    return attachments
