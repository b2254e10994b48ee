"""Incoming updates: stored first (by update_id, once), then handled one by one in order.

Polling and the webhook both only store; one processor feeds stored updates to the aiogram
dispatcher in update_id order, so concurrent handling never reorders the operator's messages.
An admin message becomes a chat message with client id `tg-<chat>-<message>`, so handling an
update twice (after a crash) still stores it once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.exceptions import TelegramRetryAfter
from tortoise.exceptions import IntegrityError

from app.config import TelegramSettings
from app.core.clock import Clock
from app.models import TgUpdate

log = logging.getLogger("sohbet.telegram.inbox")

ALLOWED_UPDATES = ["message", "edited_message", "callback_query"]
HANDLER_TRIES = 3
# After an empty getUpdates that came back before its long-poll timeout (an emulator or a proxy
# that does not hold the request), wait this long instead of asking again at once.
EMPTY_POLL_PAUSE = 1.0


class Inbox:
    """Stores updates and feeds them to the dispatcher, exactly once each, in order."""

    def __init__(
        self, bot: Bot, dispatcher: Dispatcher, tg: TelegramSettings, clock: Clock
    ) -> None:
        self.bot = bot
        self.dispatcher = dispatcher
        self.tg = tg
        self.clock = clock
        self.wake = asyncio.Event()
        self.handled = 0

    async def store(self, payload: dict[str, Any]) -> bool:
        """Keep an update; False if it was seen before (Telegram redelivers after a timeout)."""
        update_id = payload.get("update_id")
        if not isinstance(update_id, int):
            raise ValueError("update without update_id")
        try:
            await TgUpdate.create(
                update_id=update_id, payload=json.dumps(payload), received_at=self.clock.now()
            )
        except IntegrityError:
            return False
        self.wake.set()
        return True

    async def poll_forever(self) -> None:
        """Long-poll getUpdates; the offset moves past an update only once it is stored.

        Every step is retried, the start included: Telegram (or the database) being down when
        the server starts must not leave it without polling.
        """
        offset: int | None = None
        started = False
        failures = 0
        while True:
            try:
                if not started:
                    await self.bot.delete_webhook(drop_pending_updates=False)
                    last = await TgUpdate.all().order_by("-update_id").first()
                    offset = int(last.update_id) + 1 if last else None
                    started = True
                asked_at = self.clock.now()
                updates = await self.bot.get_updates(
                    offset=offset, timeout=self.tg.poll_timeout, allowed_updates=ALLOWED_UPDATES
                )
                for update in updates:
                    await self.store(
                        update.model_dump(mode="json", exclude_none=True, by_alias=True)
                    )
                    offset = update.update_id + 1
                failures = 0
                if not updates and self._answered_early(asked_at):
                    await self.clock.wait(asyncio.Event(), EMPTY_POLL_PAUSE)
            except TelegramRetryAfter as exc:
                await self.clock.wait(asyncio.Event(), exc.retry_after)
            except Exception as exc:  # network, 5xx, 409 while a webhook is set: keep polling
                failures += 1
                log.warning("polling failed (%s): %s", failures, exc)
                await self.clock.wait(asyncio.Event(), min(30.0, 0.5 * 2**failures))

    def _answered_early(self, asked_at: datetime) -> bool:
        waited = (self.clock.now() - asked_at).total_seconds()
        return waited < max(self.tg.poll_timeout, EMPTY_POLL_PAUSE)

    async def process_forever(self) -> None:
        """Handle stored updates in update_id order."""
        while True:
            self.wake.clear()
            try:
                pending = (
                    await TgUpdate.filter(processed_at__isnull=True)
                    .order_by("update_id")
                    .limit(100)
                )
            except Exception:
                log.exception("reading stored updates failed")
                pending = []
            for row in pending:
                await self._handle(row)
            if not pending:
                # Webhook posts stored by another process wake nobody here: look again soon.
                await self.clock.wait(self.wake, 1.0)

    async def _handle(self, row: TgUpdate) -> None:
        payload = json.loads(row.payload)
        for attempt in range(1, HANDLER_TRIES + 1):
            try:
                await self.dispatcher.feed_raw_update(self.bot, payload)
                break
            except Exception:
                log.exception("update %s failed (try %d)", row.update_id, attempt)
        # Handled, or given up after a few tries: never block the updates behind it.
        row.processed_at = self.clock.now()
        await row.save(update_fields=["processed_at"])
        self.handled += 1
