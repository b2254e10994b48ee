"""Socket.IO namespace `/chat`: join with replay, send with acknowledgement, typing, read.

Who is speaking comes from the cookie checked at connect, never from the payload's `role`.
`ConversationNamespace` is that shared part (`/call` uses it too): who a socket is, which
conversation it may use, and events routed by their contract names.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar

import socketio

from app.admin.auth import AdminAuth
from app.chat.queries import REPLAY_LIMIT
from app.chat.receipts import other_role, receipt_payload
from app.chat.rooms import ADMINS, LIST_WATCHERS, admin_room, visitor_room, visitors_room
from app.chat.service import ChatService
from app.config import Settings
from app.errors import Forbidden, InvalidInput, NotFound, SohbetError, TooMany
from app.i18n import error_text, using_locale
from app.models import Conversation
from app.realtime import cookies_of
from app.timefmt import utcnow

if TYPE_CHECKING:
    from app.media.service import MediaService

log = logging.getLogger("sohbet.chat.socket")

VISITOR_COOKIE = "sohbet_visitor"
MEDIA_KINDS = ("photo", "voice", "audio")


def visitor_cookie(settings: Settings) -> str:
    """The visitor cookie's name: `__Host-` pins it to this host and path / over HTTPS."""
    return f"__Host-{VISITOR_COOKIE}" if settings.cookie_secure else VISITOR_COOKIE


Handler = Callable[..., Awaitable[dict[str, Any]]]


def payload_of(data: object) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InvalidInput("bad_payload")
    return data


def _seq(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
        raise InvalidInput("bad_payload")
    return value


class ConversationNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    """A namespace whose sockets are an operator or one conversation's visitor, by cookie.

    `events` maps the contract's event names (`call:ring`, `join`) to handler methods, each
    run through the namespace's `_guard` as `handler(sid, session, payload)`.
    """

    events: ClassVar[dict[str, str]] = {}

    def __init__(self, namespace: str, chat: ChatService, auth: AdminAuth) -> None:
        super().__init__(namespace)
        self.chat = chat
        self.auth = auth

    async def trigger_event(self, event: str, *args: Any) -> Any:
        name = self.events.get(event)
        if name is None:
            # connect and disconnect; an unknown event finds no `on_` method and is dropped.
            return await super().trigger_event(event, *args)
        data = args[1] if len(args) > 1 else None
        return await self._guard(args[0], getattr(self, name), data)

    async def _guard(self, sid: str, handler: Handler, data: object) -> dict[str, Any]:
        raise NotImplementedError

    async def _session(self, sid: str) -> dict[str, Any]:
        session: dict[str, Any] = await self.get_session(sid)
        return session

    async def _identify(
        self, environ: dict[str, Any], auth: object
    ) -> tuple[dict[str, Any], Conversation | None]:
        """The socket's session from its cookies (an operator's, else a visitor's, or `auth.as`
        picks one) and the visitor's conversation; refused when neither cookie is valid."""
        cookies = cookies_of(environ)
        wanted = auth.get("as") if isinstance(auth, dict) else None
        if wanted != "visitor":
            session = await self.auth.session_for(cookies.get(self.auth.cookie_name))
            if session is not None:
                locale = self.chat.settings.default_locale
                return {"role": "admin", "locale": locale, "expires_at": session.expires_at}, None
        if wanted != "admin":
            conv = await self.chat.queries.by_token(cookies.get(visitor_cookie(self.chat.settings)))
            if conv is not None:
                visitor = {
                    "role": "visitor",
                    "conversation_id": conv.id,
                    "cid": conv.cid,
                    "locale": conv.locale,
                }
                return visitor, conv
        log.info(
            "socket refused: no valid identity (cookies: %s)", ", ".join(sorted(cookies)) or "none"
        )
        raise socketio.exceptions.ConnectionRefusedError("unauthorized")

    async def _refuse_expired(self, sid: str, session: dict[str, Any]) -> None:
        """The operator's session ran out while this socket was open: close it (sign in again)."""
        if session.get("role") == "admin" and session["expires_at"] <= utcnow():
            await self.disconnect(sid)
            raise Forbidden("unauthorized")

    async def _conversation_for(self, session: dict[str, Any], chat_id: object) -> Conversation:
        """The conversation a socket may use: a visitor only their own, the admin any."""
        if session.get("role") == "admin":
            return await self.chat.queries.by_cid(chat_id)
        if chat_id != session.get("cid"):
            # Someone else's conversation looks exactly like one that does not exist.
            raise NotFound("bad_chat")
        conv = await Conversation.get_or_none(id=session["conversation_id"])
        if conv is None:
            raise NotFound("bad_chat")
        return conv


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

    def __init__(self, chat: ChatService, auth: AdminAuth, media: MediaService) -> None:
        super().__init__("/chat", chat, auth)
        self.media = media

    async def _guard(self, sid: str, handler: Handler, data: object) -> dict[str, Any]:
        """Run a handler; turn domain errors into `{ok: false, error, message}` for the ack."""
        session = await self._session(sid)
        locale = session.get("locale", self.chat.settings.default_locale)
        try:
            await self._refuse_expired(sid, session)
            return await handler(sid, session, payload_of(data))
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
        if conv is None:
            # A socket for one conversation (a pop-out, a load test) can skip the list feed.
            if not (isinstance(auth, dict) and auth.get("watch_list") is False):
                await self.enter_room(sid, ADMINS)
                await self.chat.fanout.presence.add(LIST_WATCHERS, sid)
            if await self.chat.fanout.presence.add(ADMINS, sid):
                await self.chat.fanout.publish_operator_status(True)
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
        elif session.get("role") == "visitor":
            key = visitor_room(session["conversation_id"])
            if await self.chat.fanout.presence.remove(key, sid):
                conv = await Conversation.get_or_none(id=session["conversation_id"])
                if conv is not None:
                    await self.chat.fanout.publish_row(conv, online=False)

    # Events -----------------------------------------------------------------------------------

    async def _join(
        self, sid: str, session: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        """`join {chat_id, name?, last_seq?}`: enter the room and replay what was missed."""
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
        """`send {chat_id, role, type, text|fileRef, time, client_id}`: acknowledged once
        committed."""
        conversation_id = await self._conversation_id_for(session, data.get("chat_id"))
        kind = data.get("type", "text")
        role = session["role"]
        source = "panel" if role == "admin" else "web"
        if kind in MEDIA_KINDS:
            # The file was uploaded first (POST /media/upload with hold=1), and its signed
            # `fileRef` is sent here.
            posted = await self.media.attach(
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
        payload = await self.chat.fanout.payload_for(
            posted.conversation, posted.message, role, posted.rendered
        )
        return {"ok": True, "duplicate": not posted.created, "message": payload}

    async def _typing(
        self, sid: str, session: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        """`typing {chat_id}`: show the other side a typing indicator."""
        conv = await self._conversation_for(session, data.get("chat_id"))
        role = session["role"]
        target = visitor_room(conv.id) if role == "admin" else admin_room(conv.id)
        await self.emit("chat:typing", {"chat_id": conv.cid, "role": role}, room=target)
        return {"ok": True}

    async def _read(
        self, sid: str, session: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        """`read {chat_id}`: the operator has seen the conversation up to now."""
        if session.get("role") != "admin":
            raise Forbidden("forbidden")
        conv = await self._conversation_for(session, data.get("chat_id"))
        await self.chat.mark_read(conv)
        return {"ok": True}

    async def _receipt(
        self, sid: str, session: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        """`receipt {chat_id, delivered?, seen?}`: this side got / saw the other's messages."""
        conv = await self._conversation_for(session, data.get("chat_id"))
        delivered, seen = _seq(data.get("delivered")), _seq(data.get("seen"))
        role = session["role"]
        await self.chat.receipts.record(conv, role, delivered=delivered, seen=seen)
        if role == "admin" and seen:
            await self.chat.mark_read(conv)
        return {"ok": True}
