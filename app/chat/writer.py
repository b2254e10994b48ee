"""Group commit for messages: every send waiting at a moment is stored in one transaction.

A transaction costs the same few statements for one message or a hundred (read the
conversations, read existing client ids, insert the rows, update the conversations), so under
load the cost per message falls as batches grow, while a lone message is written at once.
After the commit the batch is fanned out in seq order, then each caller gets its result (the
acknowledgement is sent only now: after the commit).

Batches do not look up client ids first: a retried send of a committed message (its ack was
lost) hits the unique constraint on (conversation, client id). If a batch fails (that, a
unique constraint hit by another process, a dropped connection) each of its messages is written
again on its own, with the lookup, so one bad message never fails its neighbours and a retry
gets the stored message back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError

from app.chat.drafts import ChatListener, Draft, Posted, apply
from app.core.transactions import transaction
from app.errors import Forbidden, NotFound
from app.migrations import dialect_of
from app.models import Conversation, Message
from app.realtime.outage import DATABASE_DOWN
from app.timefmt import utcnow

log = logging.getLogger("sohbet.chat.writer")

BATCH_MAX = 256
# While several senders are writing at once (the last batch, less than BUSY_SECONDS ago, held
# more than one message), a batch waits LINGER_SECONDS for more before it starts: a transaction
# costs about the same few statements and thread hops for one message or ten, and at several
# hundred messages a second batches of one or two made that cost most of the write path's CPU.
# A lone message, or one sender waiting for each ack, never waits (its batches hold one).
# Why 5 ms and not 2: bench/README.md.
LINGER_SECONDS = 0.005
BUSY_SECONDS = 0.02
CONVERSATION_FIELDS = [
    "last_seq",
    "last_message_at",
    "last_preview",
    "last_role",
    "unread_admin",
    "waiting_since",
    "closed_at",
]
# The batch's statements are written out: building them with the ORM (and its bulk_create's
# per-row, per-field preparation) cost more CPU than SQLite took to run them.
MESSAGE_COLUMNS = [
    "conversation_id",
    "seq",
    "client_id",
    "role",
    "kind",
    "text",
    "source",
    "created_at",
    "media_key",
    "media_type",
    "media_size",
    "media_width",
    "media_height",
    "media_duration_ms",
    "media_name",
    "operator_id",
    "author_name",
]


def _placeholders(dialect: str, count: int) -> list[str]:
    """The driver's parameter markers: `?` for SQLite, `$1, $2, ...` for PostgreSQL."""
    return ["?"] * count if dialect == "sqlite" else [f"${i}" for i in range(1, count + 1)]


def _insert_sql(dialect: str) -> str:
    columns = ", ".join(f'"{c}"' for c in MESSAGE_COLUMNS)
    values = ", ".join(_placeholders(dialect, len(MESSAGE_COLUMNS)))
    return f'INSERT INTO "message" ({columns}) VALUES ({values})'  # noqa: S608 (constants)


def _update_sql(dialect: str) -> str:
    """One statement for every conversation a batch touched (an ORM save is a round trip each)."""
    marks = _placeholders(dialect, len(CONVERSATION_FIELDS) + 1)
    sets = ", ".join(f'"{f}" = {m}' for f, m in zip(CONVERSATION_FIELDS, marks, strict=False))
    return f'UPDATE "conversation" SET {sets} WHERE "id" = {marks[-1]}'  # noqa: S608 (constants)


_INSERT = {dialect: _insert_sql(dialect) for dialect in ("sqlite", "postgres")}
_UPDATE = {dialect: _update_sql(dialect) for dialect in ("sqlite", "postgres")}


def _locking_select(tx: BaseDBAsyncClient, ids: list[int]) -> str:
    """The batch's conversations, locked in id order (two processes never wait in a cycle).

    Written out rather than built by the ORM: building this query cost more CPU than running
    it. `Model.raw` takes no parameters; the ids are integers, formatted as such.
    """
    id_list = ", ".join(str(int(i)) for i in ids)
    lock = " FOR UPDATE" if tx.capabilities.support_for_update else ""
    return f'SELECT * FROM "conversation" WHERE "id" IN ({id_list}) ORDER BY "id"{lock}'  # noqa: S608


@dataclass
class _Pending:
    draft: Draft
    done: asyncio.Future[Posted]


class MessageWriter:
    """One task per process that stores messages in batches and publishes them in order."""

    def __init__(
        self,
        listeners: Sequence[ChatListener],
        publish: Callable[[Posted], Awaitable[None]],
        published: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.listeners = listeners
        self.publish = publish
        # Waits until what `publish` handed on is out of this process (Redis has it), so that
        # an acknowledged message reaches the other processes even if this one dies next.
        self.published = published
        self._queue: list[_Pending] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self._last_batch_end = -BUSY_SECONDS
        self._last_batch_size = 0
        self.written = 0

    async def submit(self, draft: Draft) -> Posted:
        """Store a message (or find it stored under its client id) and wait for the commit."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="chat-writer")
        done: asyncio.Future[Posted] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(draft, done))
        self._wake.set()
        return await done

    async def close(self, drain_seconds: float = 5.0) -> None:
        """Shutdown: write what is queued (its senders are waiting for acks), then stop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_seconds
        while self._queue and self._task is not None and not self._task.done():
            if loop.time() > deadline:
                break
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        for pending in self._queue:
            if not pending.done.done():
                pending.done.set_exception(RuntimeError("server shutting down"))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                recent = loop.time() - self._last_batch_end < BUSY_SECONDS
                if recent and self._last_batch_size > 1 and len(self._queue) < BATCH_MAX:
                    await asyncio.sleep(LINGER_SECONDS)
                batch, self._queue = self._queue[:BATCH_MAX], self._queue[BATCH_MAX:]
                await self._write(batch)
                self._last_batch_end = loop.time()
                self._last_batch_size = len(batch)

    async def _write(self, batch: list[_Pending]) -> None:
        try:
            # Optimistic: no lookup of stored client ids. A retry of a committed send is rare
            # (its ack was lost) and hits the unique constraint, which rolls the batch back.
            results: list[Posted | Exception] = list(
                await self._commit([p.draft for p in batch], lookup=False)
            )
        except Exception as exc:
            if isinstance(exc, IntegrityError):
                log.debug("batch of %d hit a unique key; writing one by one", len(batch))
            elif isinstance(exc, DATABASE_DOWN):
                # The database is away: the sends it fails are logged once per outage by the
                # sockets (app/realtime/outage.py), not once per batch here.
                log.debug("batch of %d failed (%s); writing one by one", len(batch), exc)
            else:
                log.info("batch of %d failed (%s); writing one by one", len(batch), exc)
            results = []
            for pending in batch:
                try:
                    results.extend(await self._commit([pending.draft], lookup=True))
                except Exception as single:
                    results.append(single)
        self.batches += 1
        if any(isinstance(r, Posted) and r.created for r in results):
            for listener in self.listeners:
                listener.committed()
        for result in results:
            # A retry is pushed again too: when a commit's answer was lost (the database
            # connection broke after COMMIT), the first attempt raised before its fan-out, and
            # the sockets already in the room would never see the message. Pages insert each
            # seq once, so a second push of a message they have changes nothing.
            if isinstance(result, Posted):
                try:
                    await self.publish(result)
                except Exception:
                    log.exception("fan-out failed for %s", result.conversation.cid)
        if self.published is not None:
            try:
                await self.published()
            except Exception:
                log.exception("fan-out of a batch of %d not confirmed", len(batch))
        for pending, result in zip(batch, results, strict=True):
            if pending.done.done():
                continue
            if isinstance(result, Exception):
                pending.done.set_exception(result)
            else:
                pending.done.set_result(result)

    async def _commit(self, drafts: list[Draft], *, lookup: bool) -> list[Posted | Exception]:
        """One transaction for the whole batch.

        With `lookup`, messages already stored under their client ids are found first and
        returned as they are; without it a retried client id fails the whole transaction on the
        unique constraint (the caller then writes the batch again, one message at a time, with
        the lookup), which saves a query per batch on the common path.
        """
        now = utcnow()
        ids = sorted({d.conversation_id for d in drafts})
        async with transaction() as tx:
            locked: list[Conversation] = await Conversation.raw(_locking_select(tx, ids), tx)
            convs = {c.id: c for c in locked}
            stored: dict[tuple[int, str], Message] = {}
            if lookup:
                stored = {
                    (m.conversation_id, m.client_id): m
                    for m in await Message.filter(
                        conversation_id__in=ids, client_id__in=list({d.client_id for d in drafts})
                    ).using_db(tx)
                }
            results: list[Posted | Exception] = []
            new: list[tuple[Conversation, Message]] = []
            touched: dict[int, Conversation] = {}
            for draft in drafts:
                conv = convs.get(draft.conversation_id)
                if conv is None:
                    results.append(NotFound("bad_chat"))
                    continue
                if draft.role == "visitor" and conv.blocked_at is not None:
                    # Read in this transaction: exact across processes, no query of its own.
                    results.append(Forbidden("blocked"))
                    continue
                key = (draft.conversation_id, draft.client_id)
                if key in stored:
                    # A retry of a committed send (its ack was lost): the stored row is the answer.
                    results.append(Posted(stored[key], conv, False))
                    continue
                message = apply(conv, draft, now)
                stored[key] = message
                touched[conv.id] = conv
                new.append((conv, message))
                results.append(Posted(message, conv, True, origin_sid=draft.origin_sid))
            if new:
                dialect = dialect_of(tx)
                # Timestamps are aware UTC datetimes, which tortoise stores as they are.
                await tx.execute_many(
                    _INSERT[dialect], [[getattr(m, c) for c in MESSAGE_COLUMNS] for _, m in new]
                )
                await tx.execute_many(
                    _UPDATE[dialect],
                    [
                        [getattr(c, f) for f in CONVERSATION_FIELDS] + [c.id]
                        for c in touched.values()
                    ],
                )
                visible = [(c, m) for c, m in new if not c.synthetic]
                if visible:
                    for listener in self.listeners:
                        await listener.messages_stored(tx, visible)
        self.written += len(new)
        return results
