"""What the operator does in Telegram: reply, write in a topic, tag a CID, edit, press buttons."""

from __future__ import annotations

import io
import logging
import re
from typing import TYPE_CHECKING

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message

from app.errors import SohbetError
from app.i18n import error_text, using_locale
from app.i18n import gettext as _
from app.media.service import size_text
from app.models import Conversation, TgLink, TgTopic
from app.telegram import texts

if TYPE_CHECKING:
    from app.telegram.bridge import TelegramBridge

log = logging.getLogger("sohbet.telegram.handlers")

# Bots can download files of at most 20 MB through the Bot API.
TELEGRAM_DOWNLOAD_LIMIT = 20 * 1024 * 1024
CID_TAG = re.compile(r"\[\s*CID\s*:\s*([^\]\s]{1,64})\s*\]", re.IGNORECASE)


def topic_of(message: Message) -> int | None:
    """The forum topic a message was written in; a plain reply in a supergroup carries a
    thread id (the replied message's) without being in a topic, and that is not one."""
    return message.message_thread_id if message.is_topic_message else None


def client_id_for(message: Message) -> str:
    return f"tg-{message.chat.id}-{message.message_id}"


async def conversation_for(message: Message, text: str) -> tuple[Conversation | None, str]:
    """Which conversation a Telegram message answers, and its text without the CID tag."""
    tag = CID_TAG.search(text)
    if tag:
        conv = await Conversation.get_or_none(cid=tag.group(1))
        if conv is not None:
            return conv, (text[: tag.start()] + text[tag.end() :]).strip()
    thread = topic_of(message)
    if thread is not None:
        topic = await TgTopic.get_or_none(tg_chat_id=message.chat.id, thread_id=thread)
        if topic is not None:
            return await Conversation.get_or_none(id=topic.conversation_id), text
    replied = message.reply_to_message
    if replied is not None:
        link = await TgLink.get_or_none(
            tg_chat_id=message.chat.id, tg_message_id=replied.message_id
        )
        if link is not None:
            return await Conversation.get_or_none(id=link.conversation_id), text
    return None, text


async def on_help(message: Message, bridge: TelegramBridge) -> None:
    """/help: how to answer from Telegram."""
    if bridge.is_admin_chat(message.chat.id):
        await bridge.say(texts.help_text(), thread_id=topic_of(message))


async def on_list(message: Message, bridge: TelegramBridge) -> None:
    """/list: open conversations with their unread counts."""
    if bridge.is_admin_chat(message.chat.id):
        convs = await bridge.chat.queries.open_conversations()
        await bridge.say(texts.conversation_list(convs), thread_id=topic_of(message))


async def on_ban(message: Message, command: CommandObject, bridge: TelegramBridge) -> None:
    """/ban and /unban: as a reply, in the conversation's topic, or with its CID."""
    if not bridge.is_admin_chat(message.chat.id):
        return
    named = (command.args or "").strip()
    conv = await Conversation.get_or_none(cid=named[:64]) if named else None
    if conv is None:
        conv, _ = await conversation_for(message, named)
    if conv is None:
        await bridge.say(
            texts.which_conversation(), reply_to=message.message_id, thread_id=topic_of(message)
        )
        return
    now_blocked = command.command == "ban"
    await bridge.chat.set_blocked(conv, now_blocked)
    with using_locale(bridge.settings.default_locale):
        await bridge.say(
            texts.blocked(conv, now_blocked),
            reply_to=message.message_id,
            thread_id=topic_of(message),
        )


async def on_text(message: Message, bridge: TelegramBridge) -> None:
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
            conv.id, role="admin", text=text, client_id=client_id_for(message), source="telegram"
        )
    except SohbetError as exc:
        with using_locale(bridge.settings.default_locale):
            await bridge.say(
                error_text(exc.code, exc.params),
                reply_to=message.message_id,
                thread_id=topic_of(message),
            )


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


async def on_media(message: Message, bridge: TelegramBridge) -> None:
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
        await _too_big(message, bridge, conv, max(size, len(data)), limit)
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
        )
    except SohbetError as exc:
        with using_locale(bridge.settings.default_locale):
            await bridge.say(
                error_text(exc.code, exc.params), reply_to=message.message_id, thread_id=thread
            )


async def _too_big(
    message: Message, bridge: TelegramBridge, conv: Conversation, size: int, limit: int
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
            name=bridge.settings.operator_name,
            limit=size_text(limit),
        )
    await bridge.chat.post_message(
        conv.id,
        role="system",
        text=text,
        client_id=client_id_for(message),
        source="telegram",
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


async def on_close(query: CallbackQuery, bridge: TelegramBridge) -> None:
    """The "close conversation" button under a notice."""
    message = query.message
    if message is None or not bridge.is_admin_chat(message.chat.id):
        await query.answer()
        return
    cid = (query.data or "").split(":", 1)[1]
    conv = await Conversation.get_or_none(cid=cid)
    if conv is None:
        with using_locale(bridge.settings.default_locale):
            await query.answer(error_text("bad_chat", {}), show_alert=True)
        return
    await bridge.chat.close_conversation(conv)
    with using_locale(bridge.settings.default_locale):
        await query.answer(texts.closed(conv).replace("<code>", "").replace("</code>", ""))


def build_router() -> Router:
    """The operator's handlers, on a router of their own (a router joins one dispatcher)."""
    router = Router(name="operator")
    router.message.register(on_help, Command("help", "start"))
    router.message.register(on_list, Command("list"))
    router.message.register(on_ban, Command("ban", "unban"))
    router.message.register(on_text, F.text)
    router.message.register(
        on_media,
        F.photo | F.voice | F.audio | F.document | F.video | F.video_note | F.animation | F.sticker,
    )
    router.edited_message.register(on_edit, F.text)
    router.callback_query.register(on_close, F.data.startswith("close:"))
    return router
