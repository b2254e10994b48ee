"""Socket.IO namespace `/chat`: join with replay, send with acknowledgement, typing, read.

Who a socket is and how a refusal reads are the shared base's (app/realtime/namespace.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any, ClassVar

from app.admin.auth import AdminAuth
from app.chat.assignment import mark_read_by
from app.chat.drafts import session_author
from app.chat.fanout import operator_card
from app.chat.queries import REPLAY_LIMIT
from app.chat.receipts import other_role, receipt_payload
from app.chat.rooms import (
    ADMINS,
    LIST_WATCHERS,
    admin_room,
    operator_room,
    visitor_room,
    visitors_room,
)
from app.chat.service import ChatService
from app.errors import Forbidden, InvalidInput, NotFound
from app.models import Conversation, Operator
from app.realtime.namespace import ConversationNamespace
from app.realtime.namespace import visitor_cookie as visitor_cookie

if TYPE_CHECKING:
    from app.media.service import MediaService

log = logging.getLogger("sohbet.chat.socket")

MEDIA_KINDS = ("photo", "voice", "audio")
# How long an operator's name and avatar are reused for typing and seen receipts.
OPERATOR_CACHE_SECONDS = 60.0
OPERATOR_CACHE_SIZE = 1000


def _seq(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
        raise InvalidInput("bad_payload")
    return value


class ChatNamespace(ConversationNamespace):
    """The visitor's and the operator's realtime channel for messages."""

    events: ClassVar[dict[str, str]] = {
        "join": "_join",
        "leave": "_leave",
        "send": "_send",
        "typing": "_typing",
        "read": "_read",
        "receipt": "_receipt",
    }

    error_event: ClassVar[str] = "chat:error"
    log: ClassVar[logging.Logger] = log

    def __init__(self, chat: ChatService, auth: AdminAuth, media: MediaService) -> None:
        super().__init__("/chat", chat, auth)
        self.media = media
        # Each socket's running join: its (chat_id, last_seq) and the task answering it.
        self._joining: dict[str, tuple[tuple[object, object], asyncio.Future[dict[str, Any]]]] = {}
        # Operators' names and avatars for typing and receipts: id → (card, until).
        self._operators: dict[object, tuple[dict[str, Any], float]] = {}

    async def _failed(self, sid: str, locale: str) -> dict[str, Any]:
        """Nothing is acknowledged unless it was committed: the client keeps it and retries."""
        return {"ok": False, "error": "server_error", "message": "server error, retrying"}

    async def _conversation_id_for(self, session: dict[str, Any], chat_id: object) -> int:
        """Like `_conversation_for` without loading the row (the write path loads it anyway)."""
        if session.get("role") == "admin":
            return await self.chat.queries.id_for_cid(chat_id)
        if chat_id != session.get("cid"):
            raise NotFound("bad_chat")
        conversation_id: int = session["conversation_id"]
        return conversation_id

    # Connection -------------------------------------------------------------------------------

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: object = None) -> None:
        """Identify the socket from its cookies; refuse it when neither cookie is valid."""
        session, conv = await self._identify(environ, auth)
        await self.save_session(sid, session)
        await self.enter_operator_room(sid, session)
        if conv is None:
            # A socket for one conversation (a pop-out, a load test) can skip the list feed.
            watching = not (isinstance(auth, dict) and auth.get("watch_list") is False)
            if watching:
                await self.enter_room(sid, ADMINS)
                await self.chat.fanout.presence.add(LIST_WATCHERS, sid)
            if await self.chat.fanout.presence.add(ADMINS, sid):
                await self.chat.fanout.publish_operator_status(True)
            # Who is online, per operator: the panels' list changes when their first tab opens.
            if await self.chat.fanout.presence.add(operator_room(session["operator_id"]), sid):
                await self.chat.fanout.publish_team_presence()
            elif watching:
                # Another tab of theirs, or one reconnecting after a blip: the list as it is now.
                await self.emit("presence:operator", await self.chat.fanout.team_presence(), to=sid)
            return
        await self.enter_room(sid, visitors_room(conv.locale))
        if await self.chat.fanout.presence.add(visitor_room(conv.id), sid):
            await self.chat.fanout.publish_row(conv, online=True)

    async def on_disconnect(self, sid: str, reason: object = None) -> None:
        """Forget the socket; tell the other side when the last tab of someone went away."""
        session = await self._session(sid)
        if session.get("role") == "admin":
            await self.chat.fanout.presence.remove(LIST_WATCHERS, sid)
            if await self.chat.fanout.presence.remove(ADMINS, sid):
                await self.chat.fanout.publish_operator_status(False)
            if await self.chat.fanout.presence.remove(operator_room(session["operator_id"]), sid):
                await self.chat.fanout.publish_team_presence()
        elif session.get("role") == "visitor":
            key = visitor_room(session["conversation_id"])
            if not await self.chat.fanout.presence.remove(key, sid):
                return
            # With no list on screen there is no row to update: a mass disconnect must not
            # read and render a row per socket for nobody. With one, the rows of a burst of
            # leaving visitors are read in one query.
            if await self.chat.fanout.presence.online(LIST_WATCHERS):
                self.chat.fanout.schedule_row_of(session["conversation_id"])

    # Events -----------------------------------------------------------------------------------

    async def _join(
        self, sid: str, session: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        """`join {chat_id, name?, last_seq?}`: enter the room and replay what was missed.

        One join per socket runs at a time: a page whose acks are late re-sends its join, and
        answering each copy with its own history query would queue the database behind joins
        nobody waits for any more. A copy of the running join gets its answer (the replay went
        to this socket already); a different one waits for it to end.
        """
        key = (data.get("chat_id"), data.get("last_seq"))
        while (running := self._joining.get(sid)) is not None and not running[1].done():
            running_key, task = running
            if running_key == key:
                return await asyncio.shield(task)
            with contextlib.suppress(Exception):
                await asyncio.shield(task)
        task = asyncio.ensure_future(self._join_once(sid, session, data))
        self._joining[sid] = (key, task)
        try:
            return await asyncio.shield(task)
        finally:
            if self._joining.get(sid, (None, None))[1] is task:
                del self._joining[sid]

    async def _join_once(
        self, sid: str, session: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        conv = await self._conversation_for(session, data.get("chat_id"))
        last_seq = _seq(data.get("last_seq"))
        role = session["role"]
        if role == "admin":
            for room in self.rooms(sid):
                if room.startswith("a:") and room != admin_room(conv.id):
                    await self.leave_room(sid, room)
            await self.enter_room(sid, admin_room(conv.id))
        else:
            await self.enter_room(sid, visitor_room(conv.id))
        missed = await self.chat.queries.history(conv.id, after_seq=last_seq)
        payloads = [await self.chat.fanout.payload_for(conv, m, role) for m in missed]
        # The seed's shape: `chat:history` carries a list of messages.
        await self.emit("chat:history", payloads, to=sid)
        if last_seq:
            deleted = await self.chat.queries.deleted_seqs(conv.id)
            if deleted:
                await self.emit("chat:deleted", {"chat_id": conv.cid, "seqs": deleted}, to=sid)
        if role == "admin":
            await self.chat.mark_read(conv)
            await _operator_read(session, conv)
        # Ticks on what this side wrote may have moved while it was away.
        await self.emit("chat:receipt", receipt_payload(conv, other_role(role)), to=sid)
        return {
            "ok": True,
            "chat_id": conv.cid,
            "last_seq": conv.last_seq,
            "replayed": len(payloads),
            "more": len(payloads) >= REPLAY_LIMIT,
            # Every message up to this seq has now been sent (or is deleted).
            "through": payloads[-1]["seq"] if len(payloads) >= REPLAY_LIMIT else conv.last_seq,
        }

    async def _leave(
        self, sid: str, session: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        """`leave {chat_id}`: the admin closed a conversation pane."""
        conv = await self._conversation_for(session, data.get("chat_id"))
        room = admin_room(conv.id) if session["role"] == "admin" else visitor_room(conv.id)
        await self.leave_room(sid, room)
        return {"ok": True}

    async def _send(
        self, sid: str, session: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        """`send {chat_id, role, type, text|fileRef, time, client_id?}`: acknowledged once
        committed."""
        conversation_id = await self._conversation_id_for(session, data.get("chat_id"))
        kind = data.get("type", "text")
        # The original contract's send has no id: the server makes one, and such a client gets
        # at-most-once delivery (a resend after a lost ack is a new message). A client that
        # names the field but gives no valid id is refused: it means to have exactly-once.
        client_id = data["client_id"] if "client_id" in data else f"srv-{secrets.token_hex(12)}"
        role = session["role"]
        source = "panel" if role == "admin" else "web"
        author = session_author(session)
        if kind in MEDIA_KINDS:
            # The file was uploaded first (POST /media/upload with hold=1), and its signed
            # `fileRef` is sent here.
            posted = await self.media.attach(
                conversation_id,
                role=role,
                kind=kind,
                file_ref=data.get("fileRef"),
                client_id=client_id,
                caption=data.get("text") or "",
                source=source,
                origin_sid=sid,
                author=author,
            )
        elif kind != "text":
            raise InvalidInput("bad_payload")
        else:
            posted = await self.chat.post_message(
                conversation_id,
                role=role,
                text=data.get("text"),
                client_id=client_id,
                source=source,
                origin_sid=sid,
                author=author,
            )
        payload = await self.chat.fanout.payload_for(
            posted.conversation, posted.message, role, posted.rendered
        )
        return {"ok": True, "duplicate": not posted.created, "message": payload}

    async def _typing(
        self, sid: str, session: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        """`typing {chat_id}`: show the other side a typing indicator; an operator's names them
        (`operator`: id, name, avatar), for the visitor and for the other operators with the
        conversation open."""
        conv = await self._conversation_for(session, data.get("chat_id"))
        role = session["role"]
        payload: dict[str, Any] = {"chat_id": conv.cid, "role": role}
        if role != "admin":
            await self.emit("chat:typing", payload, room=admin_room(conv.id))
            return {"ok": True}
        operator = await self._operator(session)
        if operator is not None:
            payload["operator"] = operator
            payload["name"] = operator["name"]
        await self.emit("chat:typing", payload, room=visitor_room(conv.id))
        await self.emit("chat:typing", payload, room=admin_room(conv.id), skip_sid=sid)
        return {"ok": True}

    async def _operator(self, session: dict[str, Any]) -> dict[str, Any] | None:
        """The socket's operator as pages show them; read at most once a minute per operator
        (a panel sends a receipt for each visitor message, and typing every few seconds)."""
        operator_id = session.get("operator_id")
        now = time.monotonic()
        cached = self._operators.get(operator_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        operator = await Operator.get_or_none(id=operator_id)
        if operator is None:
            return None
        card = operator_card(operator)
        if len(self._operators) > OPERATOR_CACHE_SIZE:
            self._operators.clear()
        self._operators[operator_id] = (card, now + OPERATOR_CACHE_SECONDS)
        return card

    async def _read(
        self, sid: str, session: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        """`read {chat_id}`: the operator has seen the conversation up to now."""
        if session.get("role") != "admin":
            raise Forbidden("forbidden")
        conv = await self._conversation_for(session, data.get("chat_id"))
        await self.chat.mark_read(conv)
        await _operator_read(session, conv)
        return {"ok": True}

    async def _receipt(
        self, sid: str, session: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        """`receipt {chat_id, delivered?, seen?}`: this side got / saw the other's messages."""
        conv = await self._conversation_for(session, data.get("chat_id"))
        delivered, seen = _seq(data.get("delivered")), _seq(data.get("seen"))
        role = session["role"]
        by = await self._operator(session) if role == "admin" and seen else None
        await self.chat.receipts.record(conv, role, delivered=delivered, seen=seen, by=by)
        if role == "admin" and seen:
            await self.chat.mark_read(conv)
            await _operator_read(session, conv, seen)
        return {"ok": True}


async def _operator_read(session: dict[str, Any], conv: Conversation, seq: int = 0) -> None:
    """The operator of an operator socket has read the conversation (to `seq`, else to its end):
    their own read marker, for their own unread counts."""
    operator_id = session.get("operator_id")
    if isinstance(operator_id, int):
        await mark_read_by(operator_id, conv.id, min(seq, conv.last_seq) if seq else conv.last_seq)
