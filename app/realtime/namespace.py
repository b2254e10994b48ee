"""The base of the `/chat` and `/call` namespaces: who a socket is, and how a refusal reads.

Who is speaking comes from the cookie checked at connect, never from the payload's `role`. A
socket is an operator or one conversation's visitor; events are routed by their contract names
to handlers that run through `_guard`, which turns a refusal into `{ok: false, error, message}`
(in the acknowledgement and in the namespace's error event).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar

import socketio

from app.chat.rooms import operator_room
from app.config import Settings
from app.errors import Forbidden, InvalidInput, NotFound, SohbetError, TooMany
from app.i18n import ERRORS, N_, error_text, using_locale
from app.models import Conversation
from app.realtime.handshake import cookies_of, visitor_token
from app.realtime.outage import DATABASE_DOWN, OutageLog
from app.realtime.server import MAX_PACKET_BYTES
from app.timefmt import utcnow

if TYPE_CHECKING:
    from app.admin.auth import AdminAuth
    from app.chat.service import ChatService

log = logging.getLogger("sohbet.realtime")

ERRORS.update(
    {
        "too_large": N_("The message is too large to send (at most %(limit)s)."),
        "bad_packet": N_("The server could not read this message."),
    }
)

VISITOR_COOKIE = "sohbet_visitor"

Handler = Callable[..., Awaitable[dict[str, Any]]]


def visitor_cookie(settings: Settings) -> str:
    """The visitor cookie's name: `__Host-` pins it to this host and path / over HTTPS."""
    return f"__Host-{VISITOR_COOKIE}" if settings.cookie_secure else VISITOR_COOKIE


def payload_of(data: object) -> dict[str, Any]:
    """An event's payload, which the contract makes an object."""
    if not isinstance(data, dict):
        raise InvalidInput("bad_payload")
    return data


class ConversationNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    """A namespace whose sockets are an operator or one conversation's visitor, by cookie.

    `events` maps the contract's event names (`call:ring`, `join`) to handler methods, each
    run through `_guard` as `handler(sid, session, payload)`; a refusal is also emitted to the
    socket as `error_event`.
    """

    events: ClassVar[dict[str, str]] = {}
    error_event: ClassVar[str] = ""
    log: ClassVar[logging.Logger] = log
    # The failures that mean the database is away (logged per outage, app/realtime/outage.py).
    outage_errors: ClassVar[tuple[type[BaseException], ...]] = DATABASE_DOWN

    def __init__(self, namespace: str, chat: ChatService, auth: AdminAuth) -> None:
        super().__init__(namespace)
        self.chat = chat
        self.auth = auth
        self.outage = OutageLog(self.log, namespace, self.outage_errors)

    async def trigger_event(self, event: str, *args: Any) -> Any:
        name = self.events.get(event)
        if name is None:
            # connect and disconnect; an unknown event finds no `on_` method and is dropped.
            return await super().trigger_event(event, *args)
        data = args[1] if len(args) > 1 else None
        return await self._guard(args[0], getattr(self, name), data)

    async def _guard(self, sid: str, handler: Handler, data: object) -> dict[str, Any]:
        """Run a handler; a refusal becomes `{ok: false, error, message}` (ack and error event)."""
        session = await self._session(sid)
        locale = session.get("locale", self.chat.settings.default_locale)
        try:
            await self._refuse_expired(sid, session)
            await self._admit(sid)
            reply = await handler(sid, session, payload_of(data))
        except SohbetError as exc:
            reply = self._refusal(exc.code, exc.params, locale)
            if isinstance(exc, TooMany) and "seconds" in exc.params:
                reply["retry_after"] = exc.params["seconds"]
        except Exception as exc:
            code = self._refusal_code(exc)
            if code is None:
                if not self.outage.failure(handler.__name__.lstrip("_"), exc):
                    self.log.exception("%s handler failed", self.namespace.lstrip("/"))
                return await self._failed(sid, locale)
            reply = self._refusal(code, {}, locale)
        else:
            self.outage.success()
            return reply
        await self.emit(self.error_event, reply, to=sid)
        return reply

    async def refused(self, sid: str, code: str, client_id: str | None) -> dict[str, Any]:
        """A packet the server could not take (`too_large`, `bad_packet`): tell the socket with
        the error event, and return the reply for its ack."""
        session = await self._session(sid)
        locale = session.get("locale", self.chat.settings.default_locale)
        reply = self._refusal(code, {"limit": f"{MAX_PACKET_BYTES // 1024} KB"}, locale)
        if client_id is not None:
            reply["client_id"] = client_id
        await self.emit(self.error_event, reply, to=sid)
        return reply

    def _refusal(self, code: str, params: dict[str, Any], locale: str) -> dict[str, Any]:
        with using_locale(locale):
            return {"ok": False, "error": code, "message": error_text(code, params)}

    async def _admit(self, sid: str) -> None:
        """Refuse an event before its handler runs (a rate limit); raise to refuse."""

    def _refusal_code(self, exc: Exception) -> str | None:
        """The error code of a refusal that is not a SohbetError; None for a failure."""
        return None

    async def _failed(self, sid: str, locale: str) -> dict[str, Any]:
        """The ack of a handler that failed unexpectedly (already logged)."""
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
                operator = {
                    "role": "admin",
                    "locale": locale,
                    "expires_at": session.expires_at,
                    # Whose socket: replies, typing and presence name them; a deactivation
                    # closes their room (`operator_room`), which disconnects it.
                    "operator_id": session.operator_id,
                    # The name their messages are signed with (operators are not renamed).
                    "operator_name": session.operator.name,
                }
                return operator, None
        if wanted != "admin":
            conv = await self.chat.queries.by_token(
                visitor_token(cookies, self.chat.settings, visitor_cookie(self.chat.settings), auth)
            )
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

    async def enter_operator_room(self, sid: str, session: dict[str, Any]) -> None:
        """An operator's socket joins their own room (what a deactivation closes)."""
        if session.get("role") == "admin":
            await self.enter_room(sid, operator_room(session["operator_id"]))

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
