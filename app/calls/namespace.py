"""Socket.IO namespace `/call`: ringing, answering, hanging up, and WebRTC signalling.

The seed's names: `join`, `call:ring` (the other side gets `call:incoming`), `call:accept` →
`call:accepted`, `call:decline` → `call:declined`, `rtc:offer`, `rtc:answer`, `rtc:candidate`,
`call:end` → `call:ended`. Extra: `call:relay` (P2P failed: both sides move to the server's
relay), `call:media` (camera on/off, told to the other side) and `call:connected` (media flows
both ways: the server's relay or echo legs, or a page's P2P connection). Who is speaking comes from
the cookie checked at connect; only a conversation's two participants can signal in its call.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from app.admin.auth import AdminAuth
from app.calls.service import (
    ECHO,
    NAMESPACE,
    P2P,
    RELAY,
    Call,
    CallError,
    CallService,
)
from app.chat.receipts import other_role
from app.chat.rooms import ADMINS, visitor_room
from app.core.ratelimit import Limiter
from app.i18n import ERRORS, N_
from app.realtime.namespace import ConversationNamespace
from app.realtime.outage import DATABASE_ERRORS
from media_relay import RelayBusy, SignalError, checked_candidate, checked_sdp

log = logging.getLogger("sohbet.calls.socket")

ERRORS.update(
    {
        "call_gone": N_("This call has ended."),
        "call_busy": N_("A call is already going on in this conversation."),
        "operator_busy": N_("The operator is on another call. Please try again in a moment."),
        "already_in_call": N_("You are already in a call."),
        "callee_offline": N_("They are not on the page right now, so the call cannot ring."),
        "echo_off": N_("The test call (echo) is turned off on this server."),
        "relay_busy": N_("The call relay is full right now. Please try again in a moment."),
        "bad_signal": N_("The call's connection data was refused."),
        "too_many_calls": N_("Too many calls. Wait a minute and try again."),
    }
)


class CallNamespace(ConversationNamespace):
    """The two parties' signalling channel; media goes P2P or through the server."""

    events: ClassVar[dict[str, str]] = {
        "join": "_join",
        "call:ring": "_ring",
        "call:accept": "_accept",
        "call:decline": "_decline",
        "call:end": "_end",
        "call:relay": "_relay",
        "call:connected": "_connected",
        "call:unsupported": "_unsupported",
        "call:media": "_media",
        "rtc:offer": "_offer",
        "rtc:answer": "_answer",
        "rtc:candidate": "_candidate",
    }

    error_event: ClassVar[str] = "call:error"
    log: ClassVar[logging.Logger] = log
    # The media relay does network I/O too: an OSError here is not taken for the database's.
    outage_errors = DATABASE_ERRORS

    def __init__(self, calls: CallService, auth: AdminAuth, limiter: Limiter) -> None:
        super().__init__(NAMESPACE, calls.chat, auth)
        self.calls = calls
        # Signalling is small and rare: a flood is a bug or an attack.
        self.signal_budget = limiter.local(200, 10)  # per socket: one process sees it all
        self.ring_budget = limiter.budget("rings", 6, 60)
        self.echo_budget = limiter.budget("echo_calls", max(1, calls.conf.echo_per_hour), 3600)

    async def _admit(self, sid: str) -> None:
        if await self.signal_budget.hit(sid):
            raise CallError("rate_limited")

    def _refusal_code(self, exc: Exception) -> str | None:
        if isinstance(exc, CallError):
            return exc.code
        if isinstance(exc, SignalError):
            return "bad_signal"
        if isinstance(exc, RelayBusy):
            return "relay_busy"
        return None

    async def _failed(self, sid: str, locale: str) -> dict[str, Any]:
        """A failed handler refuses the call action."""
        reply = self._refusal("bad_payload", {}, locale)
        await self.emit(self.error_event, reply, to=sid)
        return reply

    async def _participant(self, sid: str, session: dict[str, Any], data: dict[str, Any]) -> Call:
        """The call named in the payload, if this socket is one of its two parties."""
        call = await self.calls.get(data.get("call_id"))
        role = call.role_of(sid)
        if role is None or role != session.get("role"):
            raise CallError("call_gone")
        return call

    # Connection -------------------------------------------------------------------------------

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: object = None) -> None:
        """Identify the socket from its cookies (as `/chat` does); refuse it otherwise."""
        session, conv = await self._identify(environ, auth)
        await self.save_session(sid, session)
        await self.enter_operator_room(sid, session)
        room = ADMINS if conv is None else visitor_room(conv.id)
        await self.enter_room(sid, room)
        await self.calls.connected(sid, room)

    async def on_disconnect(self, sid: str, reason: object = None) -> None:
        """A closed page or a dropped network ends that side's calls."""
        await self.calls.disconnected(sid)

    # Calls ------------------------------------------------------------------------------------

    async def _join(
        self, sid: str, session: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        """`join {chat_id}`: the conversation's current call, if any (a reloaded page rings)."""
        conv = await self._conversation_for(session, data.get("chat_id"))
        call = await self.calls.for_conversation(conv.id)
        return {
            "ok": True,
            "chat_id": conv.cid,
            "call": call.summary() if call else None,
            "echo": self.calls.conf.echo_enabled,
        }

    async def _ring(
        self, sid: str, session: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        """`call:ring {chat_id, video?, echo?}`: ring the other side (or call the echo peer)."""
        role = session["role"]
        video = data.get("video") is True
        echo = data.get("echo") is True
        if echo and role == "admin" and data.get("chat_id") is None:
            # The operator's microphone test, outside any conversation.
            call = await self.calls.start_echo(None, role, sid, video=video)
            await self.emit("call:accepted", self.calls.media.accepted_payload(call, role), to=sid)
            return {
                "ok": True,
                **call.summary(),
                "ice_servers": self.calls.media.ice_for(call, role),
            }
        conv = await self._conversation_for(session, data.get("chat_id"))
        if echo:
            if role == "visitor" and not conv.synthetic and await self.echo_budget.hit(conv.cid):
                raise CallError("too_many_calls")
            call = await self.calls.start_echo(conv, role, sid, video=video)
            await self.emit("call:accepted", self.calls.media.accepted_payload(call, role), to=sid)
        else:
            if await self.ring_budget.hit(f"{role}:{conv.cid}"):
                raise CallError("too_many_calls")
            call = await self.calls.ring(conv, role, sid, video=video)
        return {
            "ok": True,
            **call.summary(),
            "ice_servers": self.calls.media.ice_for(call, role),
            "ring_seconds": self.calls.conf.ring_seconds,
        }

    async def _accept(
        self, sid: str, session: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        """`call:accept {call_id}`: answer; both sides get `call:accepted`."""
        call = await self.calls.get(data.get("call_id"))
        await self._check_side(session, call)
        await self.calls.accept(call, session["role"], sid)
        return {"ok": True, **self.calls.media.accepted_payload(call, session["role"])}

    async def _decline(
        self, sid: str, session: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        """`call:decline {call_id}`: the caller gets `call:declined`."""
        call = await self.calls.get(data.get("call_id"))
        await self._check_side(session, call)
        await self.calls.decline(call, session["role"])
        return {"ok": True}

    async def _check_side(self, session: dict[str, Any], call: Call) -> None:
        """The callee must belong to the call's conversation (any of its tabs may answer)."""
        if (
            session.get("role") == "visitor"
            and session.get("conversation_id") != call.conversation_id
        ):
            raise CallError("call_gone")
        if session.get("role") not in ("visitor", "admin"):
            raise CallError("call_gone")

    async def _end(self, sid: str, session: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        """`call:end {call_id}`: hang up (or cancel a ringing call); both get `call:ended`."""
        call = await self._participant(sid, session, data)
        await self.calls.end(call, "hangup", by=session["role"])
        return {"ok": True}

    async def _relay(
        self, sid: str, session: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        """`call:relay {call_id}`: P2P did not connect; both sides reconnect through the server."""
        call = await self._participant(sid, session, data)
        return {"ok": True, "mode": await self.calls.fallback_to_relay(call)}

    async def _connected(
        self, sid: str, session: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        """`call:connected {call_id}`: the page's P2P connection is up; both sides are told."""
        call = await self._participant(sid, session, data)
        return {"ok": True, "state": await self.calls.p2p_connected(call)}

    async def _unsupported(
        self, sid: str, session: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        """`call:unsupported {chat_id, reason, call_id?}`: this page cannot call; the chat says."""
        conv = await self._conversation_for(session, data.get("chat_id"))
        role = session["role"]
        if await self.ring_budget.hit(f"{role}:{conv.cid}"):
            raise CallError("too_many_calls")
        reason = "no_microphone" if data.get("reason") == "no_microphone" else "no_webrtc"
        await self.calls.unsupported(conv, role, reason, data.get("call_id"))
        return {"ok": True}

    async def _media(
        self, sid: str, session: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        """`call:media {call_id, camera}`: tell the other side the camera went on or off."""
        call = await self._participant(sid, session, data)
        other = call.sids.get(other_role(session["role"]))
        if other:
            await self.emit(
                "call:media",
                {"call_id": call.id, "camera": data.get("camera") is True, "from": session["role"]},
                to=other,
            )
        return {"ok": True}

    # WebRTC signalling --------------------------------------------------------------------------

    async def _offer(
        self, sid: str, session: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        """`rtc:offer {call_id, sdp}`: to the other party (P2P) or answered by the server."""
        call = await self._participant(sid, session, data)
        sdp = _sdp(data.get("sdp"))
        role = session["role"]
        target = data.get("to")
        if call.mode == P2P and target == "server" and call.connected_at is not None:
            return {"ok": False, "error": "connected"}  # P2P won meanwhile: no leg needed
        if call.mode in (ECHO, RELAY) or target == "server":
            # Answered in the process that holds the call's server media (maybe another one).
            answer = await self.calls.server_offer(call, role, sdp, target)
            reply = {"call_id": call.id, "type": "answer", "sdp": answer, "from": "server"}
            await self.emit("rtc:answer", reply, to=sid)
            return {"ok": True, "answered": True}
        await self._forward(call, role, "rtc:offer", {"type": "offer", "sdp": sdp})
        return {"ok": True}

    async def _answer(
        self, sid: str, session: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        """`rtc:answer {call_id, sdp}`: the callee's answer, to the caller (P2P)."""
        call = await self._participant(sid, session, data)
        if call.mode != P2P:
            raise CallError("bad_signal")
        sdp = _sdp(data.get("sdp"))
        await self._forward(call, session["role"], "rtc:answer", {"type": "answer", "sdp": sdp})
        return {"ok": True}

    async def _candidate(
        self, sid: str, session: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        """`rtc:candidate {call_id, candidate}`: a trickled ICE candidate (null ends them)."""
        call = await self._participant(sid, session, data)
        candidate = checked_candidate(data.get("candidate"))
        role = session["role"]
        target = data.get("to")
        # A relay prepared alongside P2P: here, or in the process that holds it.
        alongside = call.id in self.calls.media.alongside or call.relay_process not in (
            "",
            self.calls.shared.process,
        )
        if (call.mode in (ECHO, RELAY) and target != "peer") or (alongside and target == "server"):
            await self.calls.server_candidate(call, role, candidate)
        elif call.mode == P2P:
            await self._forward(call, role, "rtc:candidate", {"candidate": candidate})
        return {"ok": True}

    async def _forward(self, call: Call, role: str, event: str, body: dict[str, Any]) -> None:
        other = call.sids.get(other_role(role))
        if other is None:
            raise CallError("call_gone")
        await self.emit(event, {"call_id": call.id, "from": role, **body}, to=other)


def _sdp(value: object) -> str:
    return checked_sdp(value)
