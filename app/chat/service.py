"""The single write path for conversations and messages.

A message from the visitor page, the admin panel or Telegram goes through `post_message`, which
validates it and hands it to the writer (app/chat/writer.py): stored idempotently under the
conversation's next sequence number, with its Telegram outbox row in the same transaction, then
fanned out (app/chat/fanout.py) to the visitor's sockets, the operator's open panes and the
conversation list.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from tortoise.exceptions import IntegrityError

from app.audit.trail import Origin, record
from app.chat import gone
from app.chat.assignment import Assignment
from app.chat.drafts import Attachment, Author, ChatListener, Draft, Posted
from app.chat.fanout import Fanout
from app.chat.previews import message_preview
from app.chat.queries import ChatQueries
from app.chat.receipts import Receipts
from app.chat.writer import MessageWriter
from app.config import Settings
from app.core.ratelimit import Limiter
from app.core.security import keyed_hash, new_token, token_hash
from app.core.text import check_client_id, cid_prefix, clean_message, clean_name
from app.core.transactions import one_at_a_time, transaction
from app.errors import Forbidden, InvalidInput, TooMany
from app.models import Conversation, Message, VisitorBlock
from app.timefmt import utcnow

if TYPE_CHECKING:
    from tortoise.backends.base.client import BaseDBAsyncClient

    from app.media.storage import MediaStore

log = logging.getLogger("sohbet.chat")

ROLES = ("visitor", "admin", "system")
# Addresses change hands (mobile networks, DHCP): an address block ends after a week. The
# conversation's own block lasts until the operator lifts it.
ADDRESS_BLOCK = timedelta(days=7)


class ChatService:
    """Starting, writing, editing, closing, blocking and deleting conversations and messages."""

    def __init__(
        self,
        settings: Settings,
        *,
        queries: ChatQueries,
        fanout: Fanout,
        receipts: Receipts,
        listeners: Sequence[ChatListener],
        media_store: MediaStore,
        limiter: Limiter,
    ) -> None:
        self.settings = settings
        self.queries = queries
        self.fanout = fanout
        self.assignment = Assignment(fanout)
        self.receipts = receipts
        self.listeners = tuple(listeners)
        self.media_store = media_store
        self.writer = MessageWriter(self.listeners, fanout.publish_message, fanout.published)
        # Checked on every message: in Redis, or in memory seeded once per conversation from
        # the stored messages; never a database round trip per message.
        self._message_budget = limiter.budget(
            "messages", settings.messages_per_minute, 60, hot=True, seed=self._visitor_sends
        )

    # Conversations ---------------------------------------------------------------------------

    async def start_conversation(
        self, raw_name: object, locale: str, *, synthetic: bool = False, client: str = ""
    ) -> tuple[Conversation, str]:
        """Open a new conversation for a visitor; return it and the visitor's cookie token."""
        name = clean_name(raw_name, self.settings.max_name_chars)
        client_hash = ""
        if client and not synthetic:
            client_hash = keyed_hash(self.settings.secret_key, client)
        token = new_token()
        for _ in range(8):
            cid = f"{cid_prefix(name)}-{secrets.token_hex(2).upper()}"
            try:
                async with transaction() as tx:
                    if client_hash:
                        await self._check_new_conversation(tx, client_hash)
                    conv = await Conversation.create(
                        using_db=tx,
                        cid=cid,
                        visitor_name=name,
                        token_hash=token_hash(token),
                        created_at=utcnow(),
                        locale=locale,
                        synthetic=synthetic,
                        client_hash=client_hash,
                    )
                    if not synthetic:
                        for listener in self.listeners:
                            await listener.conversation_started(tx, conv)
            except IntegrityError:
                continue  # the 4 hex digits collided with an existing CID: draw again
            log.info("conversation %s started", conv.cid)
            if not synthetic:
                for listener in self.listeners:
                    listener.committed()
                try:
                    await self.assignment.auto_assign(conv)
                except Exception:  # the conversation stands; it stays unassigned
                    log.exception("automatic assignment of %s failed", conv.cid)
                await self.fanout.publish_row(conv)
            return conv, token
        raise RuntimeError("could not allocate a conversation id")

    async def _check_new_conversation(self, tx: BaseDBAsyncClient, client_hash: str) -> None:
        """Refuse a blocked address, and one over its hourly budget of new conversations.

        In the transaction that creates the conversation, one at a time per address: parallel
        starts, on any process, are counted one after the other.
        """
        await one_at_a_time(tx, f"sohbet:start:{client_hash}")
        blocked_since = utcnow() - ADDRESS_BLOCK
        blocks = VisitorBlock.filter(client_hash=client_hash, created_at__gte=blocked_since)
        if await blocks.using_db(tx).exists():
            raise Forbidden("blocked_address")
        since = utcnow() - timedelta(hours=1)
        recent = Conversation.filter(client_hash=client_hash, created_at__gte=since).using_db(tx)
        if await recent.count() >= self.settings.conversations_per_hour:
            oldest = await recent.order_by("created_at").first()
            free_at = (oldest.created_at if oldest else utcnow()) + timedelta(hours=1)
            minutes = max(1, math.ceil((free_at - utcnow()).total_seconds() / 60))
            raise TooMany("too_many_conversations", minutes=minutes)

    async def set_blocked(self, conv: Conversation, blocked: bool, *, by: Origin) -> None:
        """Block a visitor (their conversation and the address it came from), or lift it."""
        async with transaction() as tx:
            conv.blocked_at = utcnow() if blocked else None
            await conv.save(using_db=tx, update_fields=["blocked_at"])
            if conv.client_hash:
                # One block per address, from now (a new block restarts its week).
                await VisitorBlock.filter(client_hash=conv.client_hash).using_db(tx).delete()
                if blocked:
                    await VisitorBlock.create(
                        client_hash=conv.client_hash,
                        conversation_id=conv.id,
                        created_at=utcnow(),
                        using_db=tx,
                    )
            action = "visitor_block" if blocked else "visitor_unblock"
            await record(action, by=by, target=conv.cid, detail=_about(conv), using_db=tx)
        log.info("conversation %s %s", conv.cid, "blocked" if blocked else "unblocked")
        await self.fanout.publish_row(conv)

    async def _visitor_sends(self, key: str) -> list[float]:
        """How long ago (seconds) the visitor's messages of the last minute were stored: where
        a process that has not counted this conversation yet (it restarted, or the visitor
        moved to it) starts its per-message budget."""
        now = utcnow()
        stored = await Message.filter(
            conversation_id=int(key), role="visitor", created_at__gte=now - timedelta(minutes=1)
        ).values_list("created_at")
        return [(now - row[0]).total_seconds() for row in stored]

    async def _check_message_rate(self, conversation_id: int) -> None:
        """Nobody writes faster than the per-minute budget.

        A blocked visitor is refused by the writer, in the write's own transaction, from the
        conversation row it reads anyway: exact across processes and no query per message
        (bench/README.md has the measurements).
        """
        wait = await self._message_budget.hit(str(conversation_id))
        if wait:
            raise TooMany("too_many_messages", seconds=math.ceil(wait))

    async def set_locale(self, conv: Conversation, locale: str) -> None:
        if conv.locale != locale:
            conv.locale = locale
            await conv.save(update_fields=["locale"])

    # Messages --------------------------------------------------------------------------------

    async def post_message(
        self,
        conversation_id: int,
        *,
        role: str,
        text: object,
        client_id: object,
        source: str = "web",
        kind: str = "text",
        origin_sid: str | None = None,
        media: Attachment | None = None,
        author: Author | None = None,
    ) -> Posted:
        """Store a message once (a retry with the same client id gets the stored one); fan out.

        A photo or audio message carries its already-stored attachment; its text (a caption)
        may then be empty.
        """
        if role not in ROLES:
            raise InvalidInput("bad_payload")
        if media is not None and (text is None or text == ""):
            body = ""
        else:
            body = clean_message(text, self.settings.max_message_chars)
        client_id = check_client_id(client_id)
        if role == "visitor":
            await self._check_message_rate(conversation_id)

        # The writer commits in batches and fans out in seq order before it answers.
        posted = await self.writer.submit(
            Draft(
                conversation_id,
                role,
                kind,
                body,
                client_id,
                source,
                origin_sid,
                media,
                author if role == "admin" else None,
            )
        )
        if posted.created and source == "telegram":
            # Answering in Telegram means the operator has read everything before the answer.
            before = posted.message.seq - 1
            await self.receipts.record(posted.conversation, "admin", delivered=before, seen=before)
        return posted

    async def mark_read(self, conv: Conversation) -> None:
        """The operator has seen everything in this conversation."""
        queued = self.fanout.queued_row(conv.id)
        if queued is not None:
            # A row refresh queued before this read must not bring the old count back.
            queued.unread_admin = 0
        if conv.unread_admin:
            conv.unread_admin = 0
            await Conversation.filter(id=conv.id).update(unread_admin=0)
            await self.fanout.publish_row(conv)

    async def edit_message(self, conversation_id: int, client_id: str, text: object) -> bool:
        """Change a message's text (an edit made in Telegram); both pages replace it live."""
        body = clean_message(text, self.settings.max_message_chars)
        message = await Message.get_or_none(
            conversation_id=conversation_id, client_id=client_id, deleted_at__isnull=True
        )
        if message is None:
            return False
        message.text = body
        message.edited_at = utcnow()
        await message.save(update_fields=["text", "edited_at"])
        conv = await Conversation.get(id=conversation_id)
        await self.fanout.publish_message(Posted(message, conv, False))
        return True

    async def close_conversation(self, conv: Conversation, *, by: Origin) -> None:
        """The operator is done: off the waiting list until the visitor writes again."""
        conv.closed_at = utcnow()
        conv.waiting_since = None
        conv.unread_admin = 0
        async with transaction() as tx:
            await conv.save(
                using_db=tx, update_fields=["closed_at", "waiting_since", "unread_admin"]
            )
            await record(
                "conversation_close", by=by, target=conv.cid, detail=_about(conv), using_db=tx
            )
        self.fanout.schedule_row(conv)

    async def reopen_conversation(self, conv: Conversation, *, by: Origin) -> None:
        """Put a closed conversation back on the list (the operator changed their mind)."""
        conv.closed_at = None
        async with transaction() as tx:
            await conv.save(using_db=tx, update_fields=["closed_at"])
            await record(
                "conversation_reopen", by=by, target=conv.cid, detail=_about(conv), using_db=tx
            )
        self.fanout.schedule_row(conv)

    async def delete_messages(
        self, conv: Conversation, seqs: list[int], *, by: Origin
    ) -> list[int]:
        """Delete some messages (their text is erased); both sides drop them live."""
        if not seqs:
            return []
        now = utcnow()
        async with transaction() as tx:
            rows = (
                await Message.filter(conversation_id=conv.id, seq__in=seqs, deleted_at__isnull=True)
                .using_db(tx)
                .only("seq", "media_key")
            )
            found = [row.seq for row in rows]
            media = [row.media_key for row in rows if row.media_key]
            await (
                Message.filter(conversation_id=conv.id, seq__in=found)
                .using_db(tx)
                .update(deleted_at=now, text="", media_key=None)
            )
            last = (
                await Message.filter(conversation_id=conv.id, deleted_at__isnull=True)
                .using_db(tx)
                .order_by("-seq")
                .first()
            )
            conv.last_preview = message_preview(last) if last else ""
            conv.last_role = last.role if last else ""
            await conv.save(using_db=tx, update_fields=["last_preview", "last_role"])
            if found:
                # Only what was deleted now: an already deleted message is not deleted twice.
                detail = {**_about(conv), "seqs": sorted(found)}
                await record("message_delete", by=by, target=conv.cid, detail=detail, using_db=tx)
        deleted = sorted(found)
        await self._remove_media(media)
        if deleted:
            await self.fanout.publish_deleted(conv, deleted)
        return deleted

    async def delete_conversation(self, conv: Conversation, *, by: Origin) -> None:
        """Delete a conversation and its history; the visitor's page starts over."""
        media = await Message.filter(conversation_id=conv.id, media_key__isnull=False).values_list(
            "media_key", flat=True
        )
        async with transaction() as tx:
            count = (
                await Message.filter(conversation_id=conv.id, deleted_at__isnull=True)
                .using_db(tx)
                .count()
            )
            await conv.delete(using_db=tx)
            await gone.remember(conv.token_hash, "ended", using_db=tx)
            detail = {**_about(conv), "messages": count}
            await record("conversation_delete", by=by, target=conv.cid, detail=detail, using_db=tx)
        await self._remove_media([str(key) for key in media])
        self.queries.forget(conv.cid)
        log.info("conversation %s deleted", conv.cid)
        await self.fanout.publish_removed(conv)

    async def _remove_media(self, keys: list[str]) -> None:
        """Remove deleted messages' files now (what fails here, Repair's orphan step removes)."""
        for key in keys:
            try:
                await self.media_store.delete(key)
            except Exception:
                log.warning("could not remove %s (Repair removes it later)", key)

    async def close(self) -> None:
        """Stop the writer and the pending row refresh (shutdown)."""
        await self.writer.close()
        await self.fanout.close()


def _about(conv: Conversation) -> dict[str, object]:
    """What an audit entry about a conversation keeps besides its CID: the visitor's name."""
    return {"visitor": conv.visitor_name}
