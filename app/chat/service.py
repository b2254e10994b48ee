"""The single write path for messages, and the conversation queries every adapter shares.

A message from the visitor page, the admin panel or Telegram goes through `post_message`, which
validates it and hands it to the writer (app/chat/writer.py): stored idempotently under the
conversation's next sequence number, with its Telegram outbox row in the same transaction, then
fanned out to the visitor's sockets, the operator's open panes and the conversation list.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

import socketio
from tortoise.exceptions import IntegrityError

from app.chat.writer import (
    Attachment,
    ChatListener,
    Draft,
    MessageWriter,
    Posted,
    message_preview,
)
from app.config import Settings
from app.core.ratelimit import Limiter
from app.core.security import keyed_hash, new_token, token_hash
from app.core.text import check_client_id, cid_prefix, clean_message, clean_name
from app.core.transactions import transaction
from app.errors import Forbidden, InvalidInput, NotFound, TooMany
from app.models import Conversation, Message, VisitorBlock
from app.realtime import Presence
from app.render import Renderer
from app.timefmt import utcnow

log = logging.getLogger("sohbet.chat")

ROLES = ("visitor", "admin", "system")
HISTORY_PAGE = 200
# List rows are re-rendered at most this often per conversation, however fast messages come.
ROW_COALESCE_SECONDS = 0.1
# Addresses change hands (mobile networks, DHCP): an address block ends after a week. The
# conversation's own block lasts until the operator lifts it.
ADDRESS_BLOCK = timedelta(days=7)
REPLAY_LIMIT = 500
_SORT_CEILING = 10**14


def visitor_room(conversation_id: int) -> str:
    return f"v:{conversation_id}"


def admin_room(conversation_id: int) -> str:
    return f"a:{conversation_id}"


ADMINS_ROOM = "admins"
# Presence key of the sockets that show the conversation list (panels, not single-chat sockets).
LIST_WATCHERS = "list"
VISITORS_ROOM = "visitors"


class SeenListener(Protocol):
    """Something to do when the visitor has seen operator messages (Telegram's 👀 reaction)."""

    async def seen_by_visitor(self, conv: Conversation, messages: list[Message]) -> None: ...


def other_role(role: str) -> str:
    return "admin" if role == "visitor" else "visitor"


def receipt_state(conv: Conversation, message: Message) -> str:
    """Where the author's message is: "sent", "delivered" (reached the other side) or "seen"."""
    reader = other_role(message.role)
    if getattr(conv, f"{reader}_seen_seq", 0) >= message.seq:
        return "seen"
    if getattr(conv, f"{reader}_delivered_seq", 0) >= message.seq:
        return "delivered"
    return "sent"


def sort_key(conv: Conversation) -> str:
    """Order of the admin list as a string: waiting ones first (oldest wait first), then recent,
    closed ones last."""
    if conv.closed_at is not None:
        return "2" + str(_SORT_CEILING - int(conv.closed_at.timestamp() * 1000)).zfill(15)
    if conv.waiting_since is not None:
        return "0" + conv.waiting_since.isoformat()
    moment = conv.last_message_at or conv.created_at
    return "1" + str(_SORT_CEILING - int(moment.timestamp() * 1000)).zfill(15)


class ChatService:
    """Conversations and messages: storage, queries and realtime fan-out."""

    def __init__(
        self,
        settings: Settings,
        sio: socketio.AsyncServer,
        renderer: Renderer,
        presence: Presence,
        limiter: Limiter,
    ) -> None:
        self.settings = settings
        self.sio = sio
        self.renderer = renderer
        self.presence = presence
        self._ids: dict[str, int] = {}
        self.listeners: list[ChatListener] = []
        self.seen_listeners: list[SeenListener] = []
        self.writer = MessageWriter(self.listeners, self.publish_message)
        self._dirty_rows: dict[int, Conversation] = {}
        self.limiter = limiter
        self._message_budget = limiter.budget("messages", settings.messages_per_minute, 60)
        self._row_flush: asyncio.Task[None] | None = None
        # Set by app/media: removes the stored objects of deleted messages; posts a held upload
        # (`send {type: "photo", fileRef}`) as a message.
        self.forget_media: Callable[[list[str]], Awaitable[None]] | None = None
        self.attach_media: Callable[..., Awaitable[Posted]] | None = None

    # Conversations ---------------------------------------------------------------------------

    async def start_conversation(
        self, raw_name: object, locale: str, *, synthetic: bool = False, client: str = ""
    ) -> tuple[Conversation, str]:
        """Open a new conversation for a visitor; return it and the visitor's cookie token."""
        name = clean_name(raw_name, self.settings.max_name_chars)
        client_hash = ""
        if client and not synthetic:
            client_hash = keyed_hash(self.settings.secret_key, client)
            await self._check_new_conversation(client_hash)
        token = new_token()
        for _ in range(8):
            cid = f"{cid_prefix(name)}-{secrets.token_hex(2).upper()}"
            try:
                async with transaction() as tx:
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
                await self.publish_row(conv)
            return conv, token
        raise RuntimeError("could not allocate a conversation id")

    async def _check_new_conversation(self, client_hash: str) -> None:
        """Refuse a blocked address, and one over its hourly budget of new conversations."""
        blocked_since = utcnow() - ADDRESS_BLOCK
        if await VisitorBlock.exists(client_hash=client_hash, created_at__gte=blocked_since):
            raise Forbidden("blocked_address")
        since = utcnow() - timedelta(hours=1)
        recent = Conversation.filter(client_hash=client_hash, created_at__gte=since)
        if await recent.count() >= self.settings.conversations_per_hour:
            oldest = await recent.order_by("created_at").first()
            free_at = (oldest.created_at if oldest else utcnow()) + timedelta(hours=1)
            minutes = max(1, math.ceil((free_at - utcnow()).total_seconds() / 60))
            raise TooMany("too_many_conversations", minutes=minutes)

    async def set_blocked(self, conv: Conversation, blocked: bool) -> None:
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
        log.info("conversation %s %s", conv.cid, "blocked" if blocked else "unblocked")
        await self.publish_row(conv)

    async def _check_visitor_may_write(self, conversation_id: int) -> None:
        """Nobody writes faster than the per-minute budget.

        A blocked visitor cannot write either: the writer refuses it in the write's own
        transaction, from the conversation row it reads anyway (exact across processes, and
        no query per message: a query here, even cached for 2 s, cost more CPU than the write
        under load, as every send that missed the cache made its own).
        """
        wait = await self._message_budget.hit(str(conversation_id))
        if wait:
            raise TooMany("too_many_messages", seconds=math.ceil(wait))

    async def by_token(self, token: str | None) -> Conversation | None:
        """The conversation a visitor cookie belongs to, if any."""
        if not token or len(token) > 128:
            return None
        return await Conversation.get_or_none(token_hash=token_hash(token))

    async def by_cid(self, cid: object) -> Conversation:
        """A conversation by its public id, or NotFound."""
        if not isinstance(cid, str) or not 1 <= len(cid) <= 64:
            raise NotFound("bad_chat")
        conv = await Conversation.get_or_none(cid=cid)
        if conv is None:
            raise NotFound("bad_chat")
        self._ids[conv.cid] = conv.id
        return conv

    async def id_for_cid(self, cid: object) -> int:
        """A conversation's id by its public id; cached, as ids never change."""
        if isinstance(cid, str) and cid in self._ids:
            return self._ids[cid]
        conv = await self.by_cid(cid)
        conversation_id: int = conv.id
        return conversation_id

    async def set_locale(self, conv: Conversation, locale: str) -> None:
        if conv.locale != locale:
            conv.locale = locale
            await conv.save(update_fields=["locale"])

    async def waiting_list(self) -> list[Conversation]:
        """Every operator-visible conversation, in the admin list's order."""
        convs = await Conversation.filter(synthetic=False).limit(1000)
        return sorted(convs, key=sort_key)

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
        cid = check_client_id(client_id)
        if role == "visitor":
            await self._check_visitor_may_write(conversation_id)

        # The writer commits in batches and fans out in seq order before it answers.
        posted = await self.writer.submit(
            Draft(conversation_id, role, kind, body, cid, source, origin_sid, media)
        )
        if posted.created and source == "telegram":
            # Answering in Telegram means the operator has read everything before the answer.
            before = posted.message.seq - 1
            await self.record_receipt(posted.conversation, "admin", delivered=before, seen=before)
        return posted

    async def history(
        self, conversation_id: int, *, after_seq: int = 0, limit: int = REPLAY_LIMIT
    ) -> list[Message]:
        """Messages after a sequence number, oldest first (what a reconnecting client missed)."""
        return (
            await Message.filter(
                conversation_id=conversation_id, seq__gt=after_seq, deleted_at__isnull=True
            )
            .order_by("seq")
            .limit(limit)
        )

    async def recent(
        self, conversation_id: int, *, before_seq: int | None = None, limit: int = HISTORY_PAGE
    ) -> tuple[list[Message], bool]:
        """The latest page of history (or the page before a seq); and whether older ones exist."""
        query = Message.filter(conversation_id=conversation_id, deleted_at__isnull=True)
        if before_seq is not None:
            query = query.filter(seq__lt=before_seq)
        rows = await query.order_by("-seq").limit(limit + 1)
        more = len(rows) > limit
        return list(reversed(rows[:limit])), more

    async def deleted_seqs(self, conversation_id: int) -> list[int]:
        """Sequence numbers deleted in a conversation, so a reconnecting page can drop them."""
        rows = await Message.filter(conversation_id=conversation_id, deleted_at__isnull=False).only(
            "seq"
        )
        return sorted(row.seq for row in rows)

    async def mark_read(self, conv: Conversation) -> None:
        """The operator has seen everything in this conversation."""
        pending = self._dirty_rows.get(conv.id)
        if pending is not None:
            # A row refresh queued before this read must not bring the old count back.
            pending.unread_admin = 0
        if conv.unread_admin:
            conv.unread_admin = 0
            await Conversation.filter(id=conv.id).update(unread_admin=0)
            await self.publish_row(conv)

    def receipt_payload(self, conv: Conversation, reader: str) -> dict[str, Any]:
        """The `chat:receipt` shape: how far `reader` has received and seen the other side."""
        return {
            "chat_id": conv.cid,
            "reader": reader,
            "delivered": getattr(conv, f"{reader}_delivered_seq"),
            "seen": getattr(conv, f"{reader}_seen_seq"),
        }

    async def record_receipt(
        self, conv: Conversation, reader: str, *, delivered: int = 0, seen: int = 0
    ) -> None:
        """`reader` has received (delivered) or seen the other side's messages up to a seq.

        Watermarks only move forward; both sides are told, so the author's ticks change live.
        """
        if reader not in ("visitor", "admin"):
            raise InvalidInput("bad_payload")
        seen = min(seen, conv.last_seq)
        delivered = min(max(delivered, seen), conv.last_seq)
        d_field, s_field = f"{reader}_delivered_seq", f"{reader}_seen_seq"
        moved = 0
        if delivered:
            moved += await Conversation.filter(id=conv.id, **{f"{d_field}__lt": delivered}).update(
                **{d_field: delivered}
            )
        old_seen: int = getattr(conv, s_field)
        seen_moved = 0
        if seen:
            seen_moved = await Conversation.filter(id=conv.id, **{f"{s_field}__lt": seen}).update(
                **{s_field: seen}
            )
        if not (moved or seen_moved):
            return
        fresh = await Conversation.get_or_none(id=conv.id)
        if fresh is None:
            return
        for name in (d_field, s_field):
            setattr(conv, name, getattr(fresh, name))
        payload = self.receipt_payload(fresh, reader)
        for room in (visitor_room(conv.id), admin_room(conv.id)):
            await self.sio.emit("chat:receipt", payload, room=room, namespace="/chat")
        if reader == "visitor" and seen_moved and self.seen_listeners:
            replies = await Message.filter(
                conversation_id=conv.id,
                role="admin",
                source="telegram",
                deleted_at__isnull=True,
                seq__gt=old_seen,
                seq__lte=fresh.visitor_seen_seq,
            ).order_by("seq")
            if replies:
                for listener in self.seen_listeners:
                    await listener.seen_by_visitor(fresh, list(replies))

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
        await self.publish_message(Posted(message, conv, False))
        return True

    async def close_conversation(self, conv: Conversation) -> None:
        """The operator is done: off the waiting list until the visitor writes again."""
        conv.closed_at = utcnow()
        conv.waiting_since = None
        conv.unread_admin = 0
        await conv.save(update_fields=["closed_at", "waiting_since", "unread_admin"])
        self.schedule_row(conv)

    async def reopen_conversation(self, conv: Conversation) -> None:
        """Put a closed conversation back on the list (the operator changed their mind)."""
        conv.closed_at = None
        await conv.save(update_fields=["closed_at"])
        self.schedule_row(conv)

    async def search(self, query: str, limit: int = 100) -> list[Conversation]:
        """Conversations whose visitor name, CID or any message contains the words, newest first."""
        words = query.split()[:5]
        if not words:
            return await self.waiting_list()
        ids: set[int] | None = None
        for word in words:
            by_text = await Message.filter(
                text__icontains=word, deleted_at__isnull=True
            ).values_list("conversation_id", flat=True)
            by_name = await Conversation.filter(visitor_name__icontains=word).values_list(
                "id", flat=True
            )
            by_cid = await Conversation.filter(cid__icontains=word).values_list("id", flat=True)
            found = {int(i) for i in (*by_text, *by_name, *by_cid)}  # type: ignore[call-overload]
            ids = found if ids is None else ids & found
        convs = await Conversation.filter(id__in=sorted(ids or ()), synthetic=False).limit(limit)
        return sorted(convs, key=sort_key)

    async def open_conversations(self) -> list[Conversation]:
        """Conversations not closed, oldest wait first (Telegram's /list)."""
        convs = await Conversation.filter(synthetic=False, closed_at__isnull=True).limit(200)
        return sorted(convs, key=sort_key)

    async def delete_messages(self, conv: Conversation, seqs: list[int]) -> list[int]:
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
        deleted = sorted(found)
        await self._forget_media(media)
        if deleted:
            payload = {"chat_id": conv.cid, "seqs": deleted}
            await self.sio.emit(
                "chat:deleted", payload, room=visitor_room(conv.id), namespace="/chat"
            )
            await self.sio.emit(
                "chat:deleted", payload, room=admin_room(conv.id), namespace="/chat"
            )
            await self.publish_row(conv)
        return deleted

    async def delete_conversation(self, conv: Conversation) -> None:
        """Delete a conversation and its history; the visitor's page starts over."""
        media = await Message.filter(conversation_id=conv.id, media_key__isnull=False).values_list(
            "media_key", flat=True
        )
        await conv.delete()
        await self._forget_media([str(key) for key in media])
        self._ids.pop(conv.cid, None)
        self._dirty_rows.pop(conv.id, None)
        log.info("conversation %s deleted", conv.cid)
        await self.sio.emit(
            "chat:closed", {"chat_id": conv.cid}, room=visitor_room(conv.id), namespace="/chat"
        )
        await self.sio.emit(
            "admin:removed", {"chat_id": conv.cid}, room=ADMINS_ROOM, namespace="/chat"
        )

    async def _forget_media(self, keys: list[str]) -> None:
        """Remove deleted messages' files now (what fails here, Repair's orphan step removes)."""
        if keys and self.forget_media is not None:
            try:
                await self.forget_media(keys)
            except Exception:
                log.exception("could not remove %d media objects", len(keys))

    # Fan-out ---------------------------------------------------------------------------------

    async def render_message(self, conv: Conversation, message: Message, viewer: str) -> str:
        locale = conv.locale if viewer == "visitor" else self.settings.default_locale
        return await self.renderer.render(
            "partials/chat/message.html",
            locale,
            m=message,
            conv=conv,
            viewer=viewer,
        )

    def message_payload(self, conv: Conversation, message: Message, html: str) -> dict[str, Any]:
        """The `chat:message` shape: the seed's fields plus seq, client id and the rendered html."""
        return {
            "chat_id": conv.cid,
            "seq": message.seq,
            "role": message.role,
            "type": message.kind,
            "text": message.text,
            "time": _iso(message.created_at),
            "client_id": message.client_id,
            "edited": message.edited_at is not None,
            "html": html,
            # The seed's `fileRef`: where a photo's or an audio message's file is served.
            "fileRef": f"/media/{message.media_key}" if message.media_key else None,
        }

    async def payload_for(
        self,
        conv: Conversation,
        message: Message,
        viewer: str,
        rendered: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """The message as one viewer receives it (reusing a fragment rendered for the fan-out)."""
        html = (rendered or {}).get(viewer)
        if html is None:
            html = await self.render_message(conv, message, viewer)
        return self.message_payload(conv, message, html)

    async def publish_message(self, posted: Posted) -> None:
        """Push a stored message to the visitor's page, the admin panels and the list."""
        conv, message = posted.conversation, posted.message
        for viewer, room in (("visitor", visitor_room(conv.id)), ("admin", admin_room(conv.id))):
            html = await self.render_message(conv, message, viewer)
            posted.rendered[viewer] = html
            payload = self.message_payload(conv, message, html)
            await self.sio.emit(
                "chat:message", payload, room=room, skip_sid=posted.origin_sid, namespace="/chat"
            )
        self.schedule_row(conv)

    def schedule_row(self, conv: Conversation) -> None:
        """Refresh this conversation's list row soon, once for a burst of messages."""
        if conv.synthetic:
            return
        self._dirty_rows[conv.id] = conv
        if self._row_flush is None or self._row_flush.done():
            self._row_flush = asyncio.get_running_loop().create_task(self._flush_rows())

    async def _flush_rows(self) -> None:
        await asyncio.sleep(ROW_COALESCE_SECONDS)
        dirty, self._dirty_rows = self._dirty_rows, {}
        for conv in dirty.values():
            try:
                await self.publish_row(conv)
            except Exception:
                log.exception("list row update failed for %s", conv.cid)

    async def close(self) -> None:
        """Stop the writer and the pending row refresh (shutdown)."""
        await self.writer.close()
        if self._row_flush is not None:
            self._row_flush.cancel()

    async def render_row(self, conv: Conversation, online: bool | None = None) -> str:
        if online is None:
            online = await self.presence.online(visitor_room(conv.id))
        return await self.renderer.render(
            "partials/admin/conversation_row.html",
            self.settings.default_locale,
            conv=conv,
            online=online,
            zone=self.settings.zone,
        )

    async def publish_row(self, conv: Conversation, online: bool | None = None) -> None:
        """Update this conversation's row in every admin's list."""
        if conv.synthetic or not await self.presence.online(LIST_WATCHERS):
            return  # no list is on screen: a panel renders it fresh when it loads
        html = await self.render_row(conv, online)
        await self.sio.emit(
            "admin:conversation",
            {"chat_id": conv.cid, "sort": sort_key(conv), "html": html},
            room=ADMINS_ROOM,
            namespace="/chat",
        )

    async def publish_operator_status(self, online: bool) -> None:
        """Tell every visitor page whether the operator is online."""
        for locale in ("tr", "en"):
            html = await self.renderer.render(
                "partials/chat/operator_status.html", locale, operator_online=online
            )
            await self.sio.emit(
                "presence:operator",
                {"online": online, "html": html},
                room=f"{VISITORS_ROOM}:{locale}",
                namespace="/chat",
            )


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
