"""The Telegram bridge: bot, dispatcher, outbox worker and inbox, owned by `while_serving`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncGenerator
from datetime import datetime
from typing import TYPE_CHECKING

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode

from app.chat.rooms import ADMINS
from app.chat.service import ChatService
from app.config import Settings, TelegramSettings
from app.core.clock import Clock
from app.core.lease import LeaderLease
from app.i18n import using_locale
from app.media.service import MediaService
from app.models import Conversation, Message, Operator, TgOutbox, TgTopic
from app.replies.service import SavedReplies
from app.telegram import texts
from app.telegram.backlog import Backlog, BacklogWatch, late_backlog
from app.telegram.delivery import OutboxWorker
from app.telegram.handlers import build_router
from app.telegram.inbox import ALLOWED_UPDATES, Inbox
from app.telegram.outbox import Outbox, ring_key

if TYPE_CHECKING:
    from app.calls.service import Call

log = logging.getLogger("sohbet.telegram")


class TelegramBridge:
    """Everything Telegram: what goes out (outbox), what comes in (inbox), and login codes."""

    def __init__(
        self,
        settings: Settings,
        chat: ChatService,
        outbox: Outbox,
        clock: Clock,
        media: MediaService,
        replies: SavedReplies,
    ) -> None:
        assert settings.telegram is not None
        self.media = media
        self.replies = replies
        self.settings = settings
        self.tg: TelegramSettings = settings.telegram
        self.chat = chat
        self.clock = clock
        self.outbox = outbox
        self.use_topics = self.tg.topics == "on"
        session = AiohttpSession(api=TelegramAPIServer.from_base(self.tg.api_base))
        self.bot = Bot(
            self.tg.token, session=session, default=DefaultBotProperties(parse_mode=ParseMode.HTML)
        )
        self.dispatcher = Dispatcher()
        self.dispatcher.include_router(build_router())
        self.dispatcher["bridge"] = self
        self.dispatcher["saved_replies"] = replies
        self.worker = OutboxWorker(
            self.bot,
            settings,
            self.outbox,
            self._alert,
            lambda: self.use_topics,
            media,
            on_sent=self._forwarded,
        )
        self.inbox = Inbox(self.bot, self.dispatcher, self.tg, clock)
        self._failed_codes = 0
        self.lease = LeaderLease("telegram", settings.leader_lease_seconds, self._lead)

    async def _forwarded(self, item: TgOutbox) -> None:
        """A visitor message reached the operator's Telegram: the visitor sees it delivered."""
        if item.kind != "message" or item.conversation_id is None or item.ref_seq is None:
            return
        message = await Message.get_or_none(conversation_id=item.conversation_id, seq=item.ref_seq)
        conv = await Conversation.get_or_none(id=item.conversation_id)
        if message is not None and conv is not None and message.role == "visitor":
            await self.chat.receipts.record(conv, "admin", delivered=item.ref_seq)

    def is_admin_chat(self, chat_id: int) -> bool:
        return chat_id == self.tg.admin_chat_id

    async def say(
        self, text: str, *, reply_to: int | None = None, thread_id: int | None = None
    ) -> str:
        """Send a bot message to the admin chat, through the outbox like everything else."""
        key = f"say:{secrets.token_hex(8)}"
        await self.outbox.add(None, key=key, text=text, reply_to=reply_to, thread_id=thread_id)
        return key

    async def incoming_call(self, conv: Conversation, call: Call) -> None:
        """A visitor is calling: "X is calling" to the operator's Telegram, through the outbox."""
        with using_locale(self.settings.default_locale):
            text = texts.incoming_call(conv)
        await self.outbox.add(
            None,
            key=ring_key(call.id),
            kind="ring",
            text=text,
            conversation_id=conv.id,
        )

    async def notice_changed(
        self, conv: Conversation, message_id: int, key: str, by: str, closed: bool
    ) -> None:
        """A conversation's notice now says who closed (or reopened) it, for everyone there."""
        await self.outbox.add(
            None,
            key=f"notice:{key}",
            kind="closed" if closed else "reopened",
            text=by,
            conversation_id=conv.id,
            reply_to=message_id,
        )

    async def page_changed(self, conv: Conversation) -> None:
        """The visitor moved to another page of the host site, or the conversation changed
        operator: its notice is edited to name the page and the operator it has now."""
        await self.outbox.add(
            None, key=f"page:{conv.id}:{secrets.token_hex(8)}", kind="page", conversation_id=conv.id
        )

    async def username(self) -> str | None:
        """The bot's @username (for t.me links), if Telegram has told it (aiogram caches it)."""
        try:
            me = await asyncio.wait_for(self.bot.me(), 3)
        except Exception as exc:
            log.info("bot username unknown for now: %s", exc)
            return None
        return me.username

    async def tell(self, chat_id: int, text: str) -> str:
        """Send a bot message to one private chat (an operator's), through the outbox."""
        key = f"dm:{secrets.token_hex(8)}"
        await self.outbox.add(None, key=key, text=text, chat_id=chat_id)
        return key

    # CodeDelivery -------------------------------------------------------------------------------

    def reaches(self, operator: Operator) -> bool:
        """An operator gets codes in their private chat with the bot once they linked it; the
        owner who has not, in the admin chat (as before operators existed)."""
        return operator.telegram_user_id is not None or operator.is_owner

    async def deliver_code(self, code: str, minutes: int, operator: Operator) -> str | None:
        """A login code goes to the operator's own chat with the bot, never to a group (the
        owner without a linked account: the admin chat, as before); the outbox key lets the
        login page follow it."""
        with using_locale(self.settings.default_locale):
            text = texts.login_code(code, minutes)
        if operator.telegram_user_id is not None:
            return await self.tell(operator.telegram_user_id, text)
        return await self.say(text)

    async def failed_logins(self, count: int, client: str, operator: Operator) -> None:
        """A burst of wrong codes is worth the operator's attention (where their codes go)."""
        with using_locale(self.settings.default_locale):
            text = texts.wrong_codes(count, client)
        if operator.telegram_user_id is not None:
            await self.tell(operator.telegram_user_id, text)
        elif operator.is_owner:
            await self.say(text)

    # Alerts in the panel -----------------------------------------------------------------------

    async def _alert(self, item: TgOutbox, error: str) -> None:
        await self._show_alert(await late_backlog(self.clock))

    async def _show_alert(self, behind: Backlog | None) -> None:
        """The panel's Telegram banner: refused messages, and a backlog late by over a minute."""
        last = await TgOutbox.filter(status="failed").order_by("-id").first()
        fanout = self.chat.fanout
        html = await fanout.renderer.render(
            "partials/admin/telegram_alert.html",
            self.settings.default_locale,
            failed=await TgOutbox.filter(status="failed").count() if last else 0,
            error=last.last_error if last else "",
            behind=behind,
        )
        await fanout.sio.emit("admin:alert", {"html": html}, room=ADMINS, namespace="/chat")

    # Lifecycle -----------------------------------------------------------------------------------

    async def _detect_topics(self) -> None:
        """Ask Telegram whether the admin chat is a forum, until it answers.

        Until then conversations go to the chat itself; once topics turn out to be on, each open
        conversation already shown there gets its topic, opened with its notice.
        """
        if self.tg.topics != "auto":
            return
        since = self.clock.now()
        delay = 1.0
        while True:
            try:
                chat = await self.bot.get_chat(self.tg.admin_chat_id)
                break
            except Exception as exc:
                log.warning("could not read the admin chat, retrying in %.0fs: %s", delay, exc)
                await self.clock.wait(asyncio.Event(), delay)
                delay = min(delay * 2, 30)
        self.use_topics = bool(getattr(chat, "is_forum", False))
        log.info("telegram admin chat read: topics %s", "on" if self.use_topics else "off")
        if self.use_topics:
            await self._open_missing_topics(since)

    async def _open_missing_topics(self, since: datetime) -> None:
        shown = (
            await TgOutbox.filter(status="sent", conversation_id__isnull=False, sent_at__gte=since)
            .distinct()
            .values_list("conversation_id", flat=True)
        )
        with_topic = await TgTopic.all().values_list("conversation_id", flat=True)
        missing = set(shown) - set(with_topic)
        for conv in await Conversation.filter(id__in=missing, closed_at__isnull=True):
            await self.outbox.add(
                None,
                key=f"topic:{conv.id}",
                kind="entered",
                conversation_id=conv.id,
            )

    async def _start_webhook(self) -> None:
        await self.bot.set_webhook(
            self.tg.webhook_url,
            secret_token=self.tg.webhook_secret,
            allowed_updates=ALLOWED_UPDATES,
            drop_pending_updates=False,
        )

    async def _lead(self) -> None:
        """The work only one process may do: deliver the outbox, handle and fetch updates."""
        jobs = [
            self._detect_topics(),
            self.worker.run(),
            self.inbox.process_forever(),
            BacklogWatch(self.clock, self._show_alert).run(),
        ]
        if self.tg.mode == "polling":
            jobs.append(self.inbox.poll_forever())
        else:
            jobs.append(self._start_webhook_retrying())
        log.info("telegram bridge leading (%s, topics %s)", self.tg.mode, self.tg.topics)
        await asyncio.gather(*jobs)

    async def serve(self) -> AsyncGenerator[None, None]:
        """Campaign for the Telegram lease while serving; its holder runs `_lead`.

        Every process accepts webhook posts and writes outbox rows; one at a time delivers and
        handles them (two pollers would fight over getUpdates, two workers send twice).
        """
        task = asyncio.create_task(self.lease.run(), name="telegram-lease")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            await self.bot.session.close()

    async def _start_webhook_retrying(self) -> None:
        delay = 1.0
        while True:
            try:
                await self._start_webhook()
                return
            except Exception as exc:
                log.warning("setWebhook failed, retrying in %.0fs: %s", delay, exc)
                await self.clock.wait(asyncio.Event(), delay)
                delay = min(delay * 2, 300)
