"""The durable Telegram outbox: rows written in the same transaction as what caused them.

`Outbox` is the chat's listener: a new conversation, a stored message, a reply seen by the
visitor each become a row; `app.telegram.delivery` sends them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError

from app.core.clock import Clock
from app.core.transactions import transaction
from app.models import Conversation, Message, TgOutbox

SYSTEM_LANE = "system"


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
        kind: str = "text",
        text: str = "",
        conversation_id: int | None = None,
        ref_seq: int | None = None,
        thread_id: int | None = None,
        reply_to: int | None = None,
        chat_id: int | None = None,
    ) -> None:
        """Queue one send (in its conversation's lane); a repeated dedupe key makes it a no-op.

        `chat_id` sends to that private chat instead of the admin chat (an operator's code), in
        a lane of its own: a chat that refuses the bot holds up nothing else.
        """
        now = self.clock.now()
        lane = SYSTEM_LANE if conversation_id is None else lane_of(conversation_id)
        fields: dict[str, Any] = dict(
            lane=f"dm:{chat_id}" if chat_id is not None else lane,
            chat_id=chat_id,
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
        for conv, message in stored:
            await self._call_over(tx, conv, message)

    async def _call_over(self, tx: BaseDBAsyncClient, conv: Conversation, message: Message) -> None:
        """A call's message means it is over: its ring in Telegram then says how it ended."""
        call_id = call_of(message)
        if call_id is None:
            return
        if not await TgOutbox.filter(dedupe_key=ring_key(call_id)).using_db(tx).exists():
            return  # nobody rang Telegram for this call (the operator called, or it was busy)
        await self.add(
            tx,
            key=f"call-over:{call_id}",
            kind="call_over",
            conversation_id=conv.id,
            ref_seq=message.seq,
        )

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
                kind="reaction",
                conversation_id=conv.id,
                ref_seq=message.seq,
                text=str(target[0]),
                reply_to=target[1],
            )


def ring_key(call_id: str | None) -> str:
    """The outbox key of a call's ring in Telegram."""
    return f"call:{call_id}"


def call_of(message: Message | None) -> str | None:
    """The call a call's system message records (its client id is call:<id>:<outcome>:<s>)."""
    if message is None or message.kind != "call" or not message.client_id.startswith("call:"):
        return None
    return message.client_id.split(":")[1] or None


def telegram_message_of(client_id: str) -> tuple[int, int] | None:
    """The (chat, message) ids of an operator message written in Telegram (client id tg-C-M)."""
    if not client_id.startswith("tg-"):
        return None
    chat, _, message = client_id[3:].rpartition("-")
    try:
        return int(chat), int(message)
    except ValueError:
        return None
