"""Socket.IO namespace `/chat`: join with replay, send with acknowledgement, typing, read.

Who is speaking comes from the cookie checked at connect, never from the payload's `role`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import socketio

from app.admin.auth import AdminAuth
from app.chat.service import (
    ADMINS_ROOM,
    LIST_WATCHERS,
    REPLAY_LIMIT,
    VISITORS_ROOM,
    ChatService,
    admin_room,
    other_role,
    visitor_room,
)
from app.config import Settings
from app.errors import Forbidden, InvalidInput, NotFound, SohbetError, TooMany
from app.i18n import error_text, using_locale
from app.models import Conversation
from app.realtime import cookies_of
from app.timefmt import utcnow

log = logging.getLogger("sohbet.chat.socket")

VISITOR_COOKIE = "sohbet_visitor"
MEDIA_KINDS = ("photo", "voice", "audio")


def visitor_cookie(settings: Settings) -> str:
    """The visitor cookie's name: `__Host-` pins it to this host and path / over HTTPS."""
    return f"__Host-{VISITOR_COOKIE}" if settings.cookie_secure else VISITOR_COOKIE


Handler = Callable[..., Awaitable[dict[str, Any]]]


def _payload(data: object) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InvalidInput("bad_payload")
    return data


def _seq(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
        raise InvalidInput("bad_payload")
    return value


class ChatNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    """The visitor's and the operator's realtime channel for messages."""

    def __init__(self, chat: ChatService, auth: AdminAuth) -> None:
        super().__init__("/chat")
        self.chat = chat
        self.auth = auth

    async def _session(self, sid: str) -> dict[str, Any]:
        session: dict[str, Any] = await self.get_session(sid)
        return session

    async def _guard(self, sid: str, handler: Handler, data: object) -> dict[str, Any]:
        """Run a handler; turn domain errors into `{ok: false, error, message}` for the ack."""
        session = await self._session(sid)
        locale = session.get("locale", self.chat.settings.default_locale)
        try:
            if session.get("role") == "admin" and session["expires_at"] <= utcnow():
                # The operator's session ran out while this socket was open: sign in again.
                await self.disconnect(sid)
                raise Forbidden("unauthorized")
            return await handler(sid, session, _payload(data))
        except SohbetError as exc:
            with using_locale(locale):
                reply: dict[str, Any] = {
                    "ok": False,
                    "error": exc.code,
                    "message": error_text(exc.code, exc.params),
                }
            if isinstance(exc, TooMany) and "seconds" in exc.params:
                reply["retry_after"] = exc.params["seconds"]
            await self.emit("chat:error", reply, to=sid)
            return reply
        except Exception:
            # Nothing is acknowledged unless it was committed: the client keeps it and retries.
            log.exception("chat handler failed")
            return {"ok": False, "error": "server_error", "message": "server error, retrying"}

    async def _conversation_for(self, session: dict[str, Any], chat_id: object) -> Conversation:
        """The conversation a socket may use: a visitor only their own, the admin any."""
        if session.get("role") == "admin":
            return await self.chat.by_cid(chat_id)
        if chat_id != session.get("cid"):
            # Someone else's conversation looks exactly like one that does not exist.
            raise NotFound("bad_chat")
        conv = await Conversation.get_or_none(id=session["conversation_id"])
        if conv is None:
            raise NotFound("bad_chat")
        return conv

    async def _conversation_id_for(self, session: dict[str, Any], chat_id: object) -> int:
        """Like `_conversation_for` without loading the row (the write path loads it anyway)."""
        if session.get("role") == "admin":
            return await self.chat.id_for_cid(chat_id)
        if chat_id != session.get("cid"):
            raise NotFound("bad_chat")
        conversation_id: int = session["conversation_id"]
        return conversation_id

    # Connection -------------------------------------------------------------------------------

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: object = None) -> None:
        """Identify the socket from its cookies; refuse it when neither cookie is valid."""
        cookies = cookies_of(environ)
        wanted = auth.get("as") if isinstance(auth, dict) else None
        if wanted != "visitor":
            session = await self.auth.session_for(cookies.get(self.auth.cookie_name))
            if session is not None:
                await self.save_session(
                    sid,
                    {
                        "role": "admin",
                        "locale": self.chat.settings.default_locale,
                        "expires_at": session.expires_at,
                    },
                )
                # A socket for one conversation (a pop-out, a load test) can skip the list feed.
                if not (isinstance(auth, dict) and auth.get("watch_list") is False):
                    await self.enter_room(sid, ADMINS_ROOM)
                    await self.chat.presence.add(LIST_WATCHERS, sid)
                if await self.chat.presence.add("admin", sid):
                    await self.chat.publish_operator_status(True)
                return
        if wanted != "admin":
            conv = await self.chat.by_token(cookies.get(visitor_cookie(self.chat.settings)))
            if conv is not None:
                await self.save_session(
                    sid,
                    {
                        "role": "visitor",
                        "conversation_id": conv.id,
                        "cid": conv.cid,
                        "locale": conv.locale,
                    },
                )
                await self.enter_room(sid, f"{VISITORS_ROOM}:{conv.locale}")
                if await self.chat.presence.add(visitor_room(conv.id), sid):
                    await self.chat.publish_row(conv, online=True)
                return
        log.info(
            "socket refused: no valid identity (cookies: %s)", ", ".join(sorted(cookies)) or "none"
        )
        raise socketio.exceptions.ConnectionRefusedError("unauthorized")

    async def on_disconnect(self, sid: str, reason: object = None) -> None:
        """Forget the socket; tell the other side when the last tab of someone went away."""
        session = await self._session(sid)
        if session.get("role") == "admin":
            await self.chat.presence.remove(LIST_WATCHERS, sid)
            if await self.chat.presence.remove("admin", sid):
                await self.chat.publish_operator_status(False)
        elif session.get("role") == "visitor":
            key = visitor_room(session["conversation_id"])
            if await self.chat.presence.remove(key, sid):
                conv = await Conversation.get_or_none(id=session["conversation_id"])
                if conv is not None:
                    await self.chat.publish_row(conv, online=False)

    # Events -----------------------------------------------------------------------------------

    async def on_join(self, sid: str, data: object = None) -> dict[str, Any]:
        """`join {chat_id, name?, last_seq?}`: enter the room and replay what was missed."""
        return await self._guard(sid, self._join, data)

    async def _join(
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
        missed = await self.chat.history(conv.id, after_seq=last_seq)
        payloads = [await self.chat.payload_for(conv, m, role) for m in missed]
        # The seed's shape: `chat:history` carries a list of messages.
        await self.emit("chat:history", payloads, to=sid)
        if last_seq:
            deleted = await self.chat.deleted_seqs(conv.id)
            if deleted:
                await self.emit("chat:deleted", {"chat_id": conv.cid, "seqs": deleted}, to=sid)
        if role == "admin":
            await self.chat.mark_read(conv)
        # Ticks on what this side wrote may have moved while it was away.
        await self.emit("chat:receipt", self.chat.receipt_payload(conv, other_role(role)), to=sid)
        return {
            "ok": True,
            "chat_id": conv.cid,
            "last_seq": conv.last_seq,
            "replayed": len(payloads),
            "more": len(payloads) >= REPLAY_LIMIT,
            # Every message up to this seq has now been sent (or is deleted).
            "through": payloads[-1]["seq"] if len(payloads) >= REPLAY_LIMIT else conv.last_seq,
        }

    async def on_leave(self, sid: str, data: object = None) -> dict[str, Any]:
        """`leave {chat_id}`: the admin closed a conversation pane."""
        return await self._guard(sid, self._leave, data)

    async def _leave(
        self, sid: str, session: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        conv = await self._conversation_for(session, data.get("chat_id"))
        room = admin_room(conv.id) if session["role"] == "admin" else visitor_room(conv.id)
        await self.leave_room(sid, room)
        return {"ok": True}

    async def on_send(self, sid: str, data: object = None) -> dict[str, Any]:
        """`send {chat_id, role, type, text|fileRef, time, client_id}`: acknowledged once
        committed."""
        return await self._guard(sid, self._send, data)

    async def _send(
        self, sid: str, session: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        conversation_id = await self._conversation_id_for(session, data.get("chat_id"))
        kind = data.get("type", "text")
        role = session["role"]
        source = "panel" if role == "admin" else "web"
        if kind in MEDIA_KINDS and self.chat.attach_media is not None:
            # The seed's two-step shape: the file was uploaded first (POST /media/upload with
            # hold=1), and its signed `fileRef` is sent here.
            posted = await self.chat.attach_media(
                conversation_id,
                role=role,
                kind=kind,
                file_ref=data.get("fileRef"),
                client_id=data.get("client_id"),
                caption=data.get("text") or "",
                source=source,
                origin_sid=sid,
            )
        elif kind != "text":
            raise InvalidInput("bad_payload")
        else:
            posted = await self.chat.post_message(
                conversation_id,
                role=role,
                text=data.get("text"),
                client_id=data.get("client_id"),
                source=source,
                origin_sid=sid,
            )
        payload = await self.chat.payload_for(
            posted.conversation, posted.message, role, posted.rendered
        )
        return {"ok": True, "duplicate": not posted.created, "message": payload}

    async def on_typing(self, sid: str, data: object = None) -> dict[str, Any]:
        """`typing {chat_id}`: show the other side a typing indicator."""
        return await self._guard(sid, self._typing, data)

    async def _typing(
        self, sid: str, session: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        conv = await self._conversation_for(session, data.get("chat_id"))
        role = session["role"]
        target = visitor_room(conv.id) if role == "admin" else admin_room(conv.id)
        await self.emit("chat:typing", {"chat_id": conv.cid, "role": role}, room=target)
        return {"ok": True}

    async def on_read(self, sid: str, data: object = None) -> dict[str, Any]:
        """`read {chat_id}`: the operator has seen the conversation up to now."""
        return await self._guard(sid, self._read, data)

    async def _read(
        self, sid: str, session: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        if session.get("role") != "admin":
            raise Forbidden("forbidden")
        conv = await self._conversation_for(session, data.get("chat_id"))
        await self.chat.mark_read(conv)
        return {"ok": True}

    async def on_receipt(self, sid: str, data: object = None) -> dict[str, Any]:
        """`receipt {chat_id, delivered?, seen?}`: this side got / saw the other's messages."""
        return await self._guard(sid, self._receipt, data)

    async def _receipt(
        self, sid: str, session: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        conv = await self._conversation_for(session, data.get("chat_id"))
        delivered, seen = _seq(data.get("delivered")), _seq(data.get("seen"))
        role = session["role"]
        await self.chat.record_receipt(conv, role, delivered=delivered, seen=seen)
        if role == "admin" and seen:
            await self.chat.mark_read(conv)
        return {"ok": True}
