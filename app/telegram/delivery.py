"""The outbox's delivery loop: one worker sends pending items to the admin chat.

Per lane (a conversation, or "system") items go out in order; a 429 stops all sends until its
`retry_after` has passed; network errors, 5xx and undecodable replies are retried with
exponential backoff and jitter; permanent refusals (403, 400) stop the item and raise an alert
in the panel. The visitor's chat never waits for any of this.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from datetime import timedelta

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

from app.config import Settings, TelegramSettings
from app.media.service import MediaService, StorageUnavailable
from app.models import TgLink, TgOutbox, TgTopic
from app.telegram.backlog import backlog
from app.telegram.outbox import Outbox
from app.telegram.sender import Sender, Skip

log = logging.getLogger("sohbet.telegram.outbox")

SCAN = 200
# Rows written by other processes wake nobody here: a scan this often picks them up.
IDLE_WAIT = 1.0
Alert = Callable[[TgOutbox, str], Awaitable[None]]


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
        self.tg: TelegramSettings = settings.telegram
        self.sender = Sender(bot, settings, topics, media)
        self.outbox = outbox
        self.clock = outbox.clock
        self.alert = alert
        self.paused_until = self.clock.now()
        self.delivered = 0
        # Called after an item went out (e.g. the visitor's ✓✓: their message reached Telegram).
        self.on_sent: list[Callable[[TgOutbox], Awaitable[None]]] = [on_sent] if on_sent else []

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
            sent_id = await self.sender.send(item)
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
        except Skip:
            item.status = "skipped"
            await item.save(update_fields=["status", "attempts"])
        else:
            await self._sent(item, sent_id)

    async def _sent(self, item: TgOutbox, sent_id: int) -> None:
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
        for hook in self.on_sent:
            try:
                await hook(item)
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

    async def backlog(self) -> tuple[int, float | None]:
        """Pending items and the age in seconds of the oldest (for health and the test page)."""
        found = await backlog(self.clock)
        return found.count, found.age


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]
