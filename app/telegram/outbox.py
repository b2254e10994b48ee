"""The durable Telegram outbox: rows written with what caused them, delivered by one worker.

Per lane (a conversation, or "system") items go out in order; a 429 stops all sends until its
`retry_after` has passed; network errors, 5xx and undecodable replies are retried with
exponential backoff and jitter; permanent refusals (403, 400) stop the item and raise an alert
in the panel. The visitor's chat never waits for any of this.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

from aiogram import Bot
from aiogram.exceptions import (
    AiogramError,
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import (
    BufferedInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    ReactionTypeEmoji,
)
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError

from app.config import Settings, TelegramSettings
from app.core.clock import Clock
from app.core.transactions import transaction
from app.i18n import gettext as _
from app.i18n import using_locale
from app.media import probe
from app.media.service import MediaService, StorageUnavailable
from app.models import Conversation, Message, TgLink, TgOutbox, TgTopic
from app.telegram import texts

log = logging.getLogger("sohbet.telegram.outbox")

SYSTEM_LANE = "system"
SEEN_REACTION = "👀"
SCAN = 200
# Rows written by other processes wake nobody here: a scan this often picks them up.
IDLE_WAIT = 1.0
Alert = Callable[[TgOutbox, str], Awaitable[None]]


def lane_of(conversation_id: int) -> str:
    return f"c:{conversation_id}"


class Outbox:
    """Writes outbox rows (inside the caller's transaction) and wakes the worker after commit."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.wake = asyncio.Event()

    async def add(
        self,
        tx: BaseDBAsyncClient | None,
        *,
        key: str,
        lane: str = SYSTEM_LANE,
        kind: str = "text",
        text: str = "",
        conversation_id: int | None = None,
        ref_seq: int | None = None,
        thread_id: int | None = None,
        reply_to: int | None = None,
    ) -> None:
        """Queue one send; the dedupe key makes a repeated enqueue a no-op."""
        now = self.clock.now()
        fields: dict[str, Any] = dict(
            lane=lane,
            kind=kind,
            text=text,
            conversation_id=conversation_id,
            ref_seq=ref_seq,
            thread_id=thread_id,
            reply_to=reply_to,
            next_attempt_at=now,
            created_at=now,
        )
        if tx is None:
            try:
                async with transaction() as own:
                    await TgOutbox.create(using_db=own, dedupe_key=key, **fields)
            except IntegrityError:
                return
            self.wake.set()
            return
        # Inside someone else's transaction: a savepoint, so a duplicate does not abort it.
        try:
            async with transaction(tx.connection_name) as savepoint:
                await TgOutbox.create(using_db=savepoint, dedupe_key=key, **fields)
        except IntegrityError:
            return

    # ChatListener: forward what visitors write (and what the panel answers) --------------------

    async def conversation_started(self, tx: BaseDBAsyncClient, conv: Conversation) -> None:
        await self.add(
            tx,
            key=f"start:{conv.id}",
            lane=lane_of(conv.id),
            kind="entered",
            conversation_id=conv.id,
        )

    async def messages_stored(
        self, tx: BaseDBAsyncClient, stored: Sequence[tuple[Conversation, Message]]
    ) -> None:
        now = self.clock.now()
        rows = [
            TgOutbox(
                lane=lane_of(conv.id),
                kind="message",
                conversation_id=conv.id,
                ref_seq=message.seq,
                dedupe_key=f"msg:{conv.id}:{message.seq}",
                next_attempt_at=now,
                created_at=now,
            )
            for conv, message in stored
            # What the operator wrote in Telegram is already there.
            if message.source != "telegram" and message.role in ("visitor", "admin")
        ]
        if rows:
            await TgOutbox.bulk_create(rows, using_db=tx)

    def committed(self) -> None:
        self.wake.set()

    # SeenListener: the visitor has seen replies written in Telegram: 👀 on them there ----------

    async def seen_by_visitor(self, conv: Conversation, messages: list[Message]) -> None:
        for message in messages:
            target = telegram_message_of(message.client_id)
            if target is None:
                continue
            await self.add(
                None,
                key=f"seen:{conv.id}:{message.seq}",
                lane=lane_of(conv.id),
                kind="reaction",
                conversation_id=conv.id,
                ref_seq=message.seq,
                text=str(target[0]),
                reply_to=target[1],
            )


def telegram_message_of(client_id: str) -> tuple[int, int] | None:
    """The (chat, message) ids of an operator message written in Telegram (client id tg-C-M)."""
    if not client_id.startswith("tg-"):
        return None
    chat, _, message = client_id[3:].rpartition("-")
    try:
        return int(chat), int(message)
    except ValueError:
        return None


class OutboxWorker:
    """Delivers the outbox to the admin chat, one item at a time."""

    def __init__(
        self,
        bot: Bot,
        settings: Settings,
        outbox: Outbox,
        alert: Alert,
        topics: Callable[[], bool],
        media: MediaService | None = None,
        on_sent: Callable[[TgOutbox], Awaitable[None]] | None = None,
    ) -> None:
        assert settings.telegram is not None
        self.media = media
        self.bot = bot
        self.settings = settings
        self.tg: TelegramSettings = settings.telegram
        self.outbox = outbox
        self.clock = outbox.clock
        self.alert = alert
        self.topics = topics
        self.paused_until = self.clock.now()
        self.delivered = 0
        # Called after an item went out (e.g. the visitor's ✓✓: their message reached Telegram).
        self.on_sent = on_sent

    async def run(self) -> None:
        """Deliver forever; every error is handled per item, so the loop never dies."""
        while True:
            self.outbox.wake.clear()
            try:
                item, wait = await self._next_due()
            except Exception:
                log.exception("outbox scan failed")
                item, wait = None, IDLE_WAIT
            if item is None:
                await self.clock.wait(self.outbox.wake, wait)
                continue
            await self.deliver(item)

    async def _next_due(self) -> tuple[TgOutbox | None, float]:
        """The oldest pending item of some lane whose turn has come, or how long to wait."""
        now = self.clock.now()
        if self.paused_until > now:
            return None, (self.paused_until - now).total_seconds()
        pending = await TgOutbox.filter(status="pending").order_by("id").limit(SCAN)
        seen: set[str] = set()
        soonest = IDLE_WAIT
        for item in pending:
            if item.lane in seen:
                continue  # an older item of this lane is still waiting: keep the order
            seen.add(item.lane)
            if item.next_attempt_at <= now:
                return item, 0.0
            soonest = min(soonest, (item.next_attempt_at - now).total_seconds())
        return None, soonest

    def backoff(self, attempts: int) -> float:
        base = min(self.tg.max_backoff, 2.0 ** min(attempts, 20))
        return base * random.uniform(0.5, 1.0)  # noqa: S311 (jitter, not a secret)

    async def deliver(self, item: TgOutbox) -> None:
        """Send one item and record the outcome."""
        item.attempts += 1
        try:
            sent_id = await self._send(item)
        except TelegramRetryAfter as exc:
            # Telegram said when: nothing is sent before then, by this worker at all.
            self.paused_until = self.clock.now() + timedelta(seconds=exc.retry_after)
            await self._retry_at(item, exc.retry_after, f"429 retry after {exc.retry_after}s")
        except TelegramBadRequest as exc:
            if "thread not found" in exc.message.lower() and item.conversation_id is not None:
                # The operator deleted the topic: forget it, a new one is made on the retry.
                await TgTopic.filter(conversation_id=item.conversation_id).delete()
                await self._retry_at(item, 0, exc.message)
            else:
                await self._fail(item, exc.message)
        except (
            TelegramNetworkError,
            TelegramServerError,
            ClientDecodeError,
            OSError,
            TimeoutError,
            StorageUnavailable,  # the photo or recording could not be read from storage yet
        ) as exc:
            await self._retry_at(item, self.backoff(item.attempts), _describe(exc))
        except TelegramAPIError as exc:  # 401, 403, 404, migrate-to-chat: a person must act
            await self._fail(item, exc.message)
        except AiogramError as exc:
            await self._retry_at(item, self.backoff(item.attempts), _describe(exc))
        except _Skip:
            item.status = "skipped"
            await item.save(update_fields=["status", "attempts"])
        else:
            item.status = "sent"
            item.sent_at = self.clock.now()
            item.tg_message_id = sent_id
            item.last_error = ""
            await item.save(
                update_fields=["status", "sent_at", "tg_message_id", "attempts", "last_error"]
            )
            self.delivered += 1
            if item.conversation_id is not None:
                await TgLink.get_or_create(
                    tg_chat_id=self.tg.admin_chat_id,
                    tg_message_id=sent_id,
                    defaults={"conversation_id": item.conversation_id},
                )
            if self.on_sent is not None:
                try:
                    await self.on_sent(item)
                except Exception:
                    log.exception("after-send hook failed for outbox item %s", item.id)

    async def _retry_at(self, item: TgOutbox, seconds: float, error: str) -> None:
        item.next_attempt_at = self.clock.now() + timedelta(seconds=seconds)
        item.last_error = error[:500]
        await item.save(update_fields=["next_attempt_at", "last_error", "attempts"])
        log.warning("telegram send %s will be retried in %.1fs: %s", item.id, seconds, error)

    async def _fail(self, item: TgOutbox, error: str) -> None:
        item.status = "failed"
        item.last_error = error[:500]
        await item.save(update_fields=["status", "last_error", "attempts"])
        log.error("telegram send %s failed for good: %s", item.id, error)
        await self.alert(item, error)

    async def _send(self, item: TgOutbox) -> int:
        chat_id = self.tg.admin_chat_id
        conv = None
        if item.conversation_id is not None:
            conv = await Conversation.get_or_none(id=item.conversation_id)
            if conv is None:
                raise _Skip()  # the conversation was deleted before this went out
        if item.kind == "reaction" and item.reply_to is not None:
            return await self._react(int(item.text), int(item.reply_to))
        thread_id = item.thread_id
        if conv is not None and self.topics():
            thread_id = await self._topic_for(conv)
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
            raise _Skip() from None  # deleted while this waited
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
            raise _Skip() from exc
        return message_id

    async def _render(
        self, item: TgOutbox, conv: Conversation | None, in_topic: bool
    ) -> tuple[str, InlineKeyboardMarkup | None]:
        if item.kind == "entered" and conv is not None:
            return texts.entered(conv), self._buttons(conv)
        if item.kind == "message" and conv is not None:
            message = await Message.get_or_none(conversation_id=conv.id, seq=item.ref_seq)
            if message is None or message.deleted_at is not None:
                raise _Skip()
            return texts.forwarded(conv, message, in_topic), None
        return item.text, None

    def _buttons(self, conv: Conversation) -> InlineKeyboardMarkup:
        row = []
        # Telegram refuses buttons that link to localhost or plain http.
        if self.settings.public_url.startswith("https://"):
            row.append(
                InlineKeyboardButton(
                    text=_("Open in panel"), url=f"{self.settings.public_url}/admin/c/{conv.cid}"
                )
            )
        row.append(
            InlineKeyboardButton(text=_("Close conversation"), callback_data=f"close:{conv.cid}")
        )
        return InlineKeyboardMarkup(inline_keyboard=[row])

    async def _topic_for(self, conv: Conversation) -> int:
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

    async def backlog(self) -> tuple[int, float | None]:
        """Pending items and the age in seconds of the oldest (for health and the test page)."""
        count = await TgOutbox.filter(status="pending").count()
        oldest = await TgOutbox.filter(status="pending").order_by("id").first()
        age = (self.clock.now() - oldest.created_at).total_seconds() if oldest else None
        return count, age


class _Skip(Exception):
    """Nothing to send any more (deleted message or conversation)."""


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]
