"""Fan-out: stored messages and list rows pushed, rendered, to the sockets that show them."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import Any

import socketio

from app.chat.drafts import Posted
from app.chat.queries import sort_key
from app.chat.rooms import (
    ADMINS,
    LIST_WATCHERS,
    admin_room,
    operator_room,
    visitor_room,
    visitors_room,
)
from app.config import Settings
from app.models import Conversation, Message, Operator
from app.realtime import Presence
from app.realtime.manager import LeanRedisManager
from app.render import Renderer

log = logging.getLogger("sohbet.chat")

# List rows are re-rendered at most this often per conversation, however fast messages come.
ROW_COALESCE_SECONDS = 0.1
# Conversations read per query when a burst of rows is refreshed by id.
ROW_READ_CHUNK = 500


class Fanout:
    """Renders messages and list rows per viewer and emits them to their rooms."""

    def __init__(
        self, settings: Settings, sio: socketio.AsyncServer, renderer: Renderer, presence: Presence
    ) -> None:
        self.settings = settings
        self.sio = sio
        self.renderer = renderer
        self.presence = presence
        self._dirty_rows: dict[int, Conversation] = {}
        self._unloaded_rows: set[int] = set()
        self._row_flush: asyncio.Task[None] | None = None

    # Messages ----------------------------------------------------------------------------------

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
        """The `chat:message` shape (README, "Realtime contract") with the rendered html."""
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
            # Where a photo's or an audio message's file is served.
            "fileRef": f"/media/{message.media_key}" if message.media_key else None,
            # Who wrote an operator message (their name), or null: the visitor's header names
            # the operator who answered last.
            "author": message.author_name or None,
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

    async def published(self) -> None:
        """Wait until every emit so far has left this process (with Redis: is in Redis; the
        emits to other processes are sent in batches, app/realtime/manager.py)."""
        if isinstance(self.sio.manager, LeanRedisManager):
            await self.sio.manager.flush()

    async def publish_deleted(self, conv: Conversation, seqs: list[int]) -> None:
        """Both sides drop deleted messages; the list row shows the new last message."""
        payload = {"chat_id": conv.cid, "seqs": seqs}
        for room in (visitor_room(conv.id), admin_room(conv.id)):
            await self.sio.emit("chat:deleted", payload, room=room, namespace="/chat")
        await self.publish_row(conv)

    async def publish_removed(self, conv: Conversation) -> None:
        """The visitor's page starts over; every panel drops the conversation's row."""
        self._dirty_rows.pop(conv.id, None)
        self._unloaded_rows.discard(conv.id)
        await self.sio.emit(
            "chat:closed", {"chat_id": conv.cid}, room=visitor_room(conv.id), namespace="/chat"
        )
        await self.sio.emit("admin:removed", {"chat_id": conv.cid}, room=ADMINS, namespace="/chat")

    # The conversation list ---------------------------------------------------------------------

    def schedule_row(self, conv: Conversation) -> None:
        """Refresh this conversation's list row soon, once for a burst of messages."""
        if conv.synthetic:
            return
        self._dirty_rows[conv.id] = conv
        self._flush_soon()

    def schedule_row_of(self, conversation_id: int) -> None:
        """`schedule_row` for a conversation not loaded: read in one query with the others of
        its burst (thousands of visitors leaving at once)."""
        self._unloaded_rows.add(conversation_id)
        self._flush_soon()

    def _flush_soon(self) -> None:
        if self._row_flush is None or self._row_flush.done():
            self._row_flush = asyncio.get_running_loop().create_task(self._flush_rows())

    def queued_row(self, conversation_id: int) -> Conversation | None:
        """The conversation whose row refresh is queued, if one is."""
        return self._dirty_rows.get(conversation_id)

    async def _flush_rows(self) -> None:
        await asyncio.sleep(ROW_COALESCE_SECONDS)
        dirty, self._dirty_rows = self._dirty_rows, {}
        unloaded, self._unloaded_rows = sorted(self._unloaded_rows - dirty.keys()), set()
        for start in range(0, len(unloaded), ROW_READ_CHUNK):
            try:
                chunk = unloaded[start : start + ROW_READ_CHUNK]
                for conv in await Conversation.filter(id__in=chunk, synthetic=False):
                    dirty[conv.id] = conv
            except Exception:
                log.exception("list rows could not be read")
        if not dirty:
            return
        # Whether any list is on screen and each visitor's presence, in one look-up for the
        # burst (with Redis, one round trip instead of two per row).
        keys = [LIST_WATCHERS, *(visitor_room(conv_id) for conv_id in dirty)]
        try:
            online = await self.presence.online_many(keys)
        except Exception:
            log.exception("presence for %d list rows could not be read", len(dirty))
            return
        if not online[LIST_WATCHERS]:
            return  # no list is on screen: a panel renders it fresh when it loads
        for conv in dirty.values():
            try:
                await self._emit_row(conv, online[visitor_room(conv.id)])
            except Exception:
                log.exception("list row update failed for %s", conv.cid)

    async def render_row(self, conv: Conversation, online: bool | None = None) -> str:
        if online is None:
            online = await self.presence.online(visitor_room(conv.id))
        assignees = {}
        if conv.assigned_operator_id is not None:
            who = await Operator.get_or_none(id=conv.assigned_operator_id)
            if who is not None:
                assignees[who.id] = who
        return await self.renderer.render(
            "partials/admin/conversation_row.html",
            self.settings.default_locale,
            conv=conv,
            online=online,
            assignees=assignees,
            zone=self.settings.zone,
        )

    async def publish_row(self, conv: Conversation, online: bool | None = None) -> None:
        """Update this conversation's row in every admin's list."""
        if conv.synthetic or not await self.presence.online(LIST_WATCHERS):
            return  # no list is on screen: a panel renders it fresh when it loads
        await self._emit_row(conv, online)

    async def _emit_row(self, conv: Conversation, online: bool | None) -> None:
        if conv.synthetic:
            return
        html = await self.render_row(conv, online)
        await self.sio.emit(
            "admin:conversation",
            {"chat_id": conv.cid, "sort": sort_key(conv), "html": html},
            room=ADMINS,
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
                room=visitors_room(locale),
                namespace="/chat",
            )

    async def team_online(self) -> list[dict[str, Any]]:
        """The active operators with a socket on `/chat` in any process, as the panel shows
        them (a handful of rows and one presence round trip)."""
        operators = await Operator.filter(active=True).order_by("id")
        online = await self.presence.online_many([operator_room(o.id) for o in operators])
        return [operator_card(o) for o in operators if online[operator_room(o.id)]]

    async def team_presence(self) -> dict[str, Any]:
        """The panels' `presence:operator`: who is online, and when that was read (`at`, ms),
        so a page that gets two snapshots out of order (two processes publishing at once)
        keeps the later one."""
        team = await self.team_online()
        return {"online": bool(team), "operators": team, "at": int(time.time() * 1000)}

    async def publish_team_presence(self) -> None:
        """Tell every panel who is online: `presence:operator` (the visitor pages' event, with
        the same `online` field) carries the list of operators to the `admins` room."""
        await self.sio.emit(
            "presence:operator", await self.team_presence(), room=ADMINS, namespace="/chat"
        )

    async def close(self) -> None:
        """Cancel the pending row refresh (shutdown)."""
        if self._row_flush is not None:
            self._row_flush.cancel()


def operator_card(operator: Operator) -> dict[str, Any]:
    """What pages show of an operator: name and avatar."""
    return {
        "id": operator.id,
        "name": operator.name,
        "initial": operator.initial,
        "colour": operator.colour,
    }


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
