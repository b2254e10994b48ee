"""How one outbox item appears in Telegram: a text with its buttons, a photo or recording, a
reaction, each in the conversation's forum topic when topics are on."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import (
    BufferedInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    ReactionTypeEmoji,
)
from tortoise.exceptions import IntegrityError

from app.config import Settings, TelegramSettings
from app.i18n import gettext as _
from app.i18n import using_locale
from app.media import probe
from app.media.service import MediaService
from app.models import Conversation, Message, Operator, TgOutbox, TgTopic
from app.telegram import texts
from app.telegram.outbox import call_of, ring_key
from app.telegram.saved import picker as saved_replies_picker

log = logging.getLogger("sohbet.telegram.sender")

SEEN_REACTION = "👀"
# Items that change a message already in the chat instead of sending one: a notice after its
# conversation was closed or reopened (its id in `reply_to`), a call's ring once it is over,
# the notice again when the widget's visitor moved to another page of the host site.
# A saved-reply list once one of its buttons was used ("picked") says what was sent.
EDITS = ("closed", "reopened", "call_over", "page", "picked")


class Skip(Exception):
    """Nothing to send any more (deleted message or conversation)."""


class Sender:
    """Turns an outbox item into the Bot API calls that show it; returns the message id."""

    def __init__(
        self,
        bot: Bot,
        settings: Settings,
        topics: Callable[[], bool],
        media: MediaService | None = None,
    ) -> None:
        assert settings.telegram is not None
        self.bot = bot
        self.settings = settings
        self.tg: TelegramSettings = settings.telegram
        self.topics = topics
        self.media = media

    async def send(self, item: TgOutbox) -> int:
        """Send one item; raises aiogram's errors, or `Skip` when it no longer applies."""
        chat_id = self.tg.admin_chat_id
        if item.chat_id is not None:
            # A private chat (an operator's login code): plain text, nothing else applies.
            sent = await self.bot.send_message(chat_id=item.chat_id, text=item.text)
            return int(sent.message_id)
        conv = None
        if item.conversation_id is not None:
            conv = await Conversation.get_or_none(id=item.conversation_id)
            if conv is None:
                raise Skip()  # the conversation was deleted before this went out
        if item.kind == "reaction" and item.reply_to is not None:
            return await self._react(int(item.text), int(item.reply_to))
        if item.kind in EDITS and conv is not None:
            return await self._edit(item, conv)
        thread_id = item.thread_id
        if conv is not None and self.topics():
            thread_id = await self.topic_for(conv)
        if item.kind == "message" and conv is not None and self.media is not None:
            message = await Message.get_or_none(conversation_id=conv.id, seq=item.ref_seq)
            if message is not None and message.media_key and message.deleted_at is None:
                return await self._send_media(item, conv, message, thread_id)
        with using_locale(self.settings.default_locale):
            text, markup = await self._render(item, conv, in_topic=thread_id is not None)
        sent = await self.bot.send_message(
            chat_id=chat_id,
            text=text,
            message_thread_id=thread_id,
            reply_markup=markup,
            reply_to_message_id=item.reply_to,
            allow_sending_without_reply=True,
        )
        return int(sent.message_id)

    async def _send_media(
        self, item: TgOutbox, conv: Conversation, message: Message, thread_id: int | None
    ) -> int:
        """A photo as a photo, a voice message as a real voice note (OGG/Opus), audio as audio."""
        assert self.media is not None and message.media_key is not None
        try:
            data = await self.media.read(message.media_key)
        except KeyError:
            raise Skip() from None  # deleted while this waited
        with using_locale(self.settings.default_locale):
            caption = texts.media_caption(conv, message, in_topic=thread_id is not None)
        common: dict[str, Any] = dict(
            chat_id=self.tg.admin_chat_id,
            caption=caption,
            message_thread_id=thread_id,
            reply_to_message_id=item.reply_to,
            allow_sending_without_reply=True,
        )
        seconds = round(message.media_duration_ms / 1000)
        if message.kind == "voice":
            ogg = await asyncio.to_thread(probe.voice_note, data)
            sent = await self.bot.send_voice(
                voice=BufferedInputFile(ogg, "voice.ogg"), duration=seconds, **common
            )
        elif message.kind == "audio":
            name = message.media_name or message.media_key
            sent = await self.bot.send_audio(
                audio=BufferedInputFile(data, name), duration=seconds, **common
            )
        else:
            photo = BufferedInputFile(data, message.media_key)
            try:
                sent = await self.bot.send_photo(photo=photo, **common)
            except TelegramBadRequest as exc:
                if "PHOTO_INVALID_DIMENSIONS" not in exc.message:
                    raise
                # A very long or thin picture is not a Telegram photo: send the file itself.
                sent = await self.bot.send_document(document=photo, **common)
        return int(sent.message_id)

    async def _react(self, chat_id: int, message_id: int) -> int:
        try:
            await self.bot.set_message_reaction(
                chat_id=chat_id,
                message_id=message_id,
                reaction=[ReactionTypeEmoji(emoji=SEEN_REACTION)],
            )
        except TelegramBadRequest as exc:
            # The operator deleted the message, or the chat has reactions off: nothing to alert.
            log.info("seen reaction on %s/%s refused: %s", chat_id, message_id, exc.message)
            raise Skip() from exc
        return message_id

    async def _edit(self, item: TgOutbox, conv: Conversation) -> int:
        with using_locale(self.settings.default_locale):
            message_id, text, markup = await self._edited(item, conv)
        try:
            await self.bot.edit_message_text(
                chat_id=self.tg.admin_chat_id, message_id=message_id, text=text, reply_markup=markup
            )
        except TelegramBadRequest as exc:
            if "not modified" in exc.message:
                return message_id  # pressed twice: it already says so
            # The message was deleted by hand: nothing left to change, nothing to alert.
            log.info("edit of %s refused: %s", message_id, exc.message)
            raise Skip() from exc
        return message_id

    async def _edited(
        self, item: TgOutbox, conv: Conversation
    ) -> tuple[int, str, InlineKeyboardMarkup | None]:
        """Which message an edit changes, and what it then says."""
        if item.kind == "call_over":
            message = await Message.get_or_none(conversation_id=conv.id, seq=item.ref_seq)
            ring = await TgOutbox.get_or_none(dedupe_key=ring_key(call_of(message)))
            if message is None or ring is None or ring.tg_message_id is None:
                raise Skip()  # the ring never reached Telegram
            return int(ring.tg_message_id), texts.call_over(conv, message.text), None
        if item.kind == "page":
            later = TgOutbox.filter(conversation_id=conv.id, kind="page", id__gt=item.id)
            if await later.filter(status="pending").exists():
                raise Skip()  # the visitor moved on again: only the latest page is worth an edit
            notice = (
                await TgOutbox.filter(conversation_id=conv.id, kind="entered", status="sent")
                .order_by("-id")
                .first()
            )
            if notice is None or notice.tg_message_id is None:
                raise Skip()  # the notice never reached Telegram
            buttons = self._buttons(conv, closed=conv.closed_at is not None)
            return int(notice.tg_message_id), texts.entered(conv, await _assignee(conv)), buttons
        if item.reply_to is None:
            raise Skip()
        if item.kind == "picked":
            return int(item.reply_to), item.text, None
        if item.kind == "closed":
            text = texts.notice_closed(conv, item.text)
        else:
            text = texts.notice_reopened(conv, item.text)
        return int(item.reply_to), text, self._buttons(conv, closed=item.kind == "closed")

    async def _render(
        self, item: TgOutbox, conv: Conversation | None, in_topic: bool
    ) -> tuple[str, InlineKeyboardMarkup | None]:
        if item.kind == "entered" and conv is not None:
            return texts.entered(conv, await _assignee(conv)), self._buttons(conv)
        if item.kind == "ring" and conv is not None:
            return item.text, self._answer_button(conv)
        if item.kind == "replies" and conv is not None:
            return await saved_replies_picker(conv, item.text)
        if item.kind == "message" and conv is not None:
            message = await Message.get_or_none(conversation_id=conv.id, seq=item.ref_seq)
            if message is None or message.deleted_at is not None:
                raise Skip()
            return texts.forwarded(conv, message, in_topic), None
        return item.text, None

    def _answer_button(self, conv: Conversation) -> InlineKeyboardMarkup | None:
        """Opens the conversation in the panel, where the incoming call is shown to answer."""
        if not self.settings.public_url.startswith("https://"):
            return None
        url = f"{self.settings.public_url}/admin/c/{conv.cid}"
        button = InlineKeyboardButton(text=_("Answer in the panel"), url=url)
        return InlineKeyboardMarkup(inline_keyboard=[[button]])

    def _buttons(self, conv: Conversation, closed: bool = False) -> InlineKeyboardMarkup:
        row = []
        # Telegram refuses buttons that link to localhost or plain http.
        if self.settings.public_url.startswith("https://"):
            row.append(
                InlineKeyboardButton(
                    text=_("Open in panel"), url=f"{self.settings.public_url}/admin/c/{conv.cid}"
                )
            )
        if closed:
            button = InlineKeyboardButton(text=_("Reopen"), callback_data=f"reopen:{conv.cid}")
        else:
            # Taken by the operator linked to the Telegram user who presses it (buttons.py).
            row.append(InlineKeyboardButton(text=_("Take it"), callback_data=f"take:{conv.cid}"))
            button = InlineKeyboardButton(
                text=_("Close conversation"), callback_data=f"close:{conv.cid}"
            )
        row.append(button)
        return InlineKeyboardMarkup(inline_keyboard=[row])

    async def topic_for(self, conv: Conversation) -> int:
        """The conversation's forum topic, made on first use (and again if deleted by hand)."""
        topic = await TgTopic.get_or_none(conversation_id=conv.id)
        if topic is not None:
            return int(topic.thread_id)
        made = await self.bot.create_forum_topic(
            chat_id=self.tg.admin_chat_id, name=texts.topic_name(conv)
        )
        try:
            await TgTopic.create(
                conversation_id=conv.id,
                tg_chat_id=self.tg.admin_chat_id,
                thread_id=made.message_thread_id,
            )
        except IntegrityError:
            existing = await TgTopic.get(conversation_id=conv.id)
            return int(existing.thread_id)
        return int(made.message_thread_id)


async def _assignee(conv: Conversation) -> str:
    """The name of the operator the conversation is assigned to ("" when nobody)."""
    if conv.assigned_operator_id is None:
        return ""
    operator = await Operator.get_or_none(id=conv.assigned_operator_id)
    return operator.name if operator is not None else ""
