"""Call lifecycle: ringing, answering, ending (with its ring and echo timers), and Repair.

One call per conversation at a time, and one call per operator page: a call from a visitor
rings every operator page that is not in a call already (several people may share the panel).
Call state lives where every process sees it (`shared`, over `store`: Redis with several
processes), so the two parties of a call may be on different processes; each process keeps
the calls it touched as `Call` objects (timers, media) refreshed from there, and sweeps every
live call for a ring that ran out or a party whose process died. A call's server media (relay or
echo legs) is in one process; the other party's requests are routed there (`routing`). What a
call is lives in `state`, its system messages in `messages`, how its media gets through (P2P,
relay, echo) in `connecting`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import socketio

from app.calls.connecting import CallMedia
from app.calls.messages import call_label, record_call
from app.calls.routing import CallRouter
from app.calls.shared import ANSWERED_TTL, SharedCalls
from app.calls.state import (
    ACTIVE,
    ECHO,
    ENDED,
    NAMESPACE,
    P2P,
    RELAY,
    RINGING,
    Call,
    CallError,
    call_room,
)
from app.calls.store import merge
from app.chat.receipts import other_role
from app.chat.rooms import ADMINS
from app.chat.service import ChatService
from app.config import Settings
from app.models import Conversation
from media_relay import RelayBusy, SignalError

# Modules that drive calls import these names from here.
__all__ = [
    "ADMINS",
    "ECHO",
    "NAMESPACE",
    "P2P",
    "RELAY",
    "Call",
    "CallError",
    "CallService",
    "call_label",
]

log = logging.getLogger("sohbet.calls")

# How often each process looks over every live call (of any process) for a ring that ran out or
# a party whose process died; the claims make sure one of them ends each such call.
SWEEP_SECONDS = 1.0
# The process that rang ends its call at the ring's end; the others step in only after this.
SWEEP_GRACE = 1.0


class CallService:
    """Owns every call of this process: ringing, answering and ending them, and Repair."""

    def __init__(
        self,
        settings: Settings,
        chat: ChatService,
        sio: socketio.AsyncServer,
        notify_ring: Callable[[Conversation, Call], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.conf = settings.calls
        self.chat = chat
        self.sio = sio
        self.notify_ring = notify_ring
        # The calls this process touched; the store says what they are now.
        self.calls: dict[str, Call] = {}
        self.media = CallMedia(self.conf, sio, self.calls, self.end)
        self.shared = SharedCalls(settings, self.calls, self.media.release)
        self.media.save = self.save
        # This process's media hub (its relay and echo legs; metrics and Repair read it).
        self.hub = self.media.hub
        self.ended = 0
        # With several processes, a call's server media is in one of them: requests go there.
        self.router = (
            CallRouter(settings.redis_url, settings.redis_channel, self.shared.process)
            if settings.redis_url
            else None
        )
        self._sweeping: asyncio.Task[None] | None = None

    # Queries ----------------------------------------------------------------------------------

    async def get(self, call_id: object) -> Call:
        """A live call, as every process sees it now."""
        if not isinstance(call_id, str) or len(call_id) > 64:
            raise CallError("call_gone")
        call = await self.shared.fresh(call_id)
        if call is None:
            raise CallError("call_gone")
        return call

    async def for_conversation(self, conversation_id: int) -> Call | None:
        return await self.shared.for_conversation(conversation_id)

    async def save(self, call: Call) -> None:
        """Let every process see what this one changed in a call."""
        await self.shared.save(call)

    async def connected(self, sid: str, room: str) -> None:
        """A `/call` socket joined its room: the callers on every process see it."""
        await self.shared.connected(sid, room)

    # Ringing ----------------------------------------------------------------------------------

    async def ring(self, conv: Conversation, role: str, sid: str, *, video: bool) -> Call:
        """Start a call from one side of a conversation; the other side's sockets ring."""
        if await self.for_conversation(conv.id) is not None:
            raise CallError("call_busy")
        callee = other_role(role)
        callee_sids = await self.shared.sockets(conv.id, callee)
        busy = await self.shared.busy_sids([sid, *callee_sids])
        if sid in busy:
            raise CallError("already_in_call")
        free = [s for s in callee_sids if s not in busy]
        if role == "visitor" and callee_sids and not free:
            await self._record(conv.id, secrets.token_hex(6), "busy", 0)
            raise CallError("operator_busy")
        if not free and (role == "admin" or self.notify_ring is None):
            if role == "visitor":
                await self._record(conv.id, secrets.token_hex(6), "missed", 0)
            raise CallError("callee_offline")
        call = Call(
            id=secrets.token_hex(6),
            conversation_id=conv.id,
            cid=conv.cid,
            caller=role,
            video=video,
            synthetic=conv.synthetic,
        )
        call.sids[role] = sid
        call.processes[role] = self.shared.process
        await self.shared.claim(call, sid, self.shared.ringing_ttl)
        call.timer = asyncio.get_running_loop().create_task(self._ring_timeout(call))
        name = conv.visitor_name if callee == "admin" else self.settings.operator_name
        await self.sio.emit(
            "call:incoming",
            {**call.summary(), "name": name},
            room=call_room(callee, conv.id),
            skip_sid=[s for s in callee_sids if s in busy] or None,
            namespace=NAMESPACE,
        )
        if role == "visitor" and self.notify_ring is not None:
            try:
                await self.notify_ring(conv, call)
            except Exception:
                log.exception("could not queue the Telegram call notice")
        log.info("call %s: %s rings in %s", call.id, role, conv.cid)
        return call

    async def start_echo(
        self, conv: Conversation | None, role: str, sid: str, *, video: bool
    ) -> Call:
        """A call whose other party is the server's echo peer (answered at once); the operator
        may test without a conversation."""
        if not self.conf.echo_enabled:
            raise CallError("echo_off")
        if await self.shared.busy_sids([sid]):
            raise CallError("already_in_call")
        if conv is not None and await self.for_conversation(conv.id) is not None:
            raise CallError("call_busy")
        if self.media.relay.echo_full:
            raise CallError("relay_busy")
        call = Call(
            id=secrets.token_hex(6),
            conversation_id=conv.id if conv else 0,
            cid=conv.cid if conv else "",
            caller=role,
            video=video,
            mode=ECHO,
            state=ACTIVE,
            answered_at=time.monotonic(),
            media_from=time.monotonic(),
            synthetic=conv.synthetic if conv else False,
        )
        call.sids[role] = sid
        call.processes[role] = self.shared.process
        # The echo peer answers in this process, where the caller's offers arrive.
        call.relay_process = self.shared.process
        await self.shared.claim(call, sid, ANSWERED_TTL)
        call.timer = asyncio.get_running_loop().create_task(
            self._end_after(call, self.conf.echo_seconds, "time_limit")
        )
        return call

    async def accept(self, call: Call, role: str, sid: str) -> None:
        """The callee answers; with forced relay both sides go straight to the server."""
        if call.state != RINGING or role == call.caller:
            raise CallError("call_gone")
        if await self.shared.busy_sids([sid]):
            raise CallError("already_in_call")
        # One accept wins, whichever process each page is on (or the ring ended first).
        await self.shared.answer(call, sid)
        call.sids[role] = sid
        call.processes[role] = self.shared.process
        call.state = ACTIVE
        call.answered_at = time.monotonic()
        if call.timer is not None:
            call.timer.cancel()
            call.timer = None
        if self.conf.force_relay:
            # Both legs in one process (this one, or one with room): the other party's offers
            # and candidates are routed there.
            owner = await self.media_process(call)
            router = self._remote(owner)
            if router is None:
                await self.media.move_to_relay(call)
            else:
                await self.save(call)  # answered, as the relay's process will see it
                call.mode = str((await router.request(owner, "move", {"call_id": call.id}))["mode"])
        await self.save(call)
        for who, owner in call.sids.items():
            await self.sio.emit(
                "call:accepted",
                self.media.accepted_payload(call, who),
                to=owner,
                namespace=NAMESPACE,
            )
        # The callee's other tabs (or the other panels) stop ringing.
        await self._emit_side(
            call, role, "call:ended", {**call.summary(), "reason": "elsewhere"}, skip=sid
        )

    async def decline(self, call: Call, role: str) -> None:
        if call.state != RINGING or role == call.caller:
            raise CallError("call_gone")
        if not await self.shared.resolve(call):
            raise CallError("call_gone")
        caller_sid = call.sids.get(call.caller)
        if caller_sid:
            await self.sio.emit("call:declined", call.summary(), to=caller_sid, namespace=NAMESPACE)
        await self.end(call, "declined")

    async def unsupported(
        self, conv: Conversation, role: str, reason: str, call_id: object = None
    ) -> None:
        """A page that cannot call (no WebRTC, no microphone): the chat says why; its ring ends."""
        call = await self.for_conversation(conv.id)
        ringing_here = call is not None and call.state == RINGING and role != call.caller
        if call is not None and ringing_here and call.id == call_id:
            if not await self.shared.resolve(call):
                return
            await self.end(call, "unsupported", by=role, outcome=f"{role}_{reason}")
            return
        await self._record(conv.id, secrets.token_hex(6), f"{role}_{reason}", 0)

    # Ending -----------------------------------------------------------------------------------

    async def end(
        self, call: Call, reason: str, by: str | None = None, outcome: str | None = None
    ) -> None:
        """End a call once: tell both sides, free its media, leave its system message."""
        if call.state == ENDED:
            return
        fields = await self.shared.store.load(call.id)
        if fields is not None:
            # Another process may have answered it, or its pages connected there.
            merge(call, fields)
        await self.shared.drop(call)
        # One process ends it: the others only forget their copy.
        if not await self.shared.finish(call):
            return
        await self._release_elsewhere(call)
        was_answered = call.answered_at is not None
        # A call lasted from when its media flowed both ways; a P2P call whose pages never said
        # so (their media is between them) counts from the answer.
        since = call.connected_at or (call.answered_at if call.mode == P2P else None)
        never_connected = call.mode != P2P and call.connected_at is None
        self.ended += 1
        seconds = round(time.monotonic() - since) if since is not None else 0
        payload = {**call.summary(), "reason": reason, "by": by, "duration": seconds}
        await self._emit_side(call, "visitor", "call:ended", payload)
        await self._emit_side(call, "admin", "call:ended", payload)
        log.info("call %s ended: %s after %s s", call.id, reason, seconds)
        if call.echo:
            return
        if outcome is not None:
            await self._record(call.conversation_id, call.id, outcome, 0)
        elif reason == "relay_busy":
            # Answered, but no media ever flowed: a duration would be a call that never was.
            await self._record(call.conversation_id, call.id, "relay_busy", 0)
        elif was_answered and never_connected:
            # No media ever flowed: a duration would be a call that never was.
            await self._record(call.conversation_id, call.id, "failed", 0)
        elif was_answered:
            await self._record(call.conversation_id, call.id, "ended", seconds)
        elif reason == "declined":
            await self._record(call.conversation_id, call.id, "declined", 0)
        else:
            await self._record(call.conversation_id, call.id, "missed", 0)

    async def disconnected(self, sid: str) -> None:
        """A page closed or its network dropped: its calls end (ringing ones as missed)."""
        await self.shared.disconnected(sid)
        call_id = await self.shared.in_call(sid)
        if call_id is not None:
            call = await self.shared.fresh(call_id)
            if call is not None and call.role_of(sid) is not None:
                await self.end(call, "disconnected", by=call.role_of(sid))
        for call in list(self.calls.values()):
            role = call.role_of(sid)
            if role is not None:
                await self.end(call, "disconnected", by=role)

    async def start(self) -> None:
        """Begin the `/call` presence heartbeat (with Redis) and the sweep of live calls."""
        await self.shared.start()
        if self.router is not None:
            await self.router.start(self._routed)
        self._sweeping = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def close(self) -> None:
        """Shutdown: end every call (telling both sides) and close every peer connection."""
        if self._sweeping is not None:
            self._sweeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeping
        for call in list(self.calls.values()):
            with contextlib.suppress(Exception):
                await self.end(call, "server_restart")
        if self.router is not None:
            with contextlib.suppress(Exception):
                await self.shared.store.set_free(self.shared.process, 0)
            with contextlib.suppress(Exception):
                await self.router.close()
        await self.media.relay.close()
        with contextlib.suppress(Exception):
            await self.shared.close()

    # Server media on one process -------------------------------------------------------------

    async def media_process(self, call: Call) -> str:
        """The process whose hub carries the call's relay or echo legs, chosen once by the first
        process to need it: itself, or while its relay is full (`CALL_RELAY_MAX`) the live one
        with most room; every other process routes the call's media requests there."""
        if not call.relay_process:
            choice = self.shared.process
            if not self.media.relay.free_slots and call.mode != ECHO and self.router is not None:
                # This relay is full (CALL_RELAY_MAX): another process's may have room.
                choice = await self.shared.relay_with_room() or choice
            if await self.shared.store.claim(f"relay:{call.id}", choice, ANSWERED_TTL):
                call.relay_process = choice
                await self.shared.store.update(call.id, {"relay": choice})
            else:
                held = await self.shared.store.value(f"relay:{call.id}")
                call.relay_process = held or choice
        return call.relay_process

    def _remote(self, process: str) -> CallRouter | None:
        """The router when `process` is another one (None: this process does it)."""
        if not process or process == self.shared.process or self.router is None:
            return None
        return self.router

    async def server_offer(self, call: Call, role: str, sdp: str, target: object) -> str:
        """A party's offer that the server answers (its relay or echo leg, or the relay
        prepared alongside P2P), in the process that holds the call's media; the answer SDP."""
        owner = await self.media_process(call)
        router = self._remote(owner)
        if router is not None:
            args = {"call_id": call.id, "role": role, "sdp": sdp, "target": target}
            return str((await router.request(owner, "offer", args))["sdp"])
        if call.mode == P2P and target == "server":
            # A relay leg opened alongside P2P: the call stays P2P until one of them connects.
            await self.media.prepare_relay(call)
        mode = ECHO if call.mode == ECHO else RELAY
        return await self.hub.answer(call.id, call.side_of(role), mode, sdp)

    async def server_candidate(self, call: Call, role: str, candidate: object) -> None:
        """A party's ICE candidate for its server leg, in the process that holds it."""
        router = self._remote(call.relay_process)
        if router is not None:
            args = {"call_id": call.id, "role": role, "candidate": candidate}
            await router.request(call.relay_process, "candidate", args)
            return
        await self.hub.add_candidate(call.id, call.side_of(role), candidate)

    async def fallback_to_relay(self, call: Call) -> str:
        """P2P did not connect: both sides move to the relay (in one process); the mode."""
        owner = await self.media_process(call)
        router = self._remote(owner)
        if router is not None:
            return str((await router.request(owner, "relay", {"call_id": call.id}))["mode"])
        await self.media.fallback_to_relay(call)
        await self.save(call)
        return call.mode

    async def p2p_connected(self, call: Call) -> str:
        """A page's P2P connection is up; the process holding a relay prepared alongside
        releases it and tells both sides. The state the parties now see."""
        router = self._remote(call.relay_process)
        if router is not None:
            reply = await router.request(call.relay_process, "connected", {"call_id": call.id})
            return str(reply["state"])
        await self.media.p2p_connected(call)
        await self.save(call)
        return call.public_state

    async def _routed(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        """Serve a media request routed from another process for a call whose media is here."""
        if op == "release":
            # The call ended on another process: its legs and relay slot here go.
            await self.shared.fresh(str(args.get("call_id")))
            return {}
        call = await self.get(args.get("call_id"))
        # A copy made here from the store: this process holds the call's media.
        call.relay_process = call.relay_process or self.shared.process
        role = str(args.get("role"))
        try:
            if op == "offer":
                sdp = await self.server_offer(call, role, str(args.get("sdp")), args.get("target"))
                return {"sdp": sdp}
            if op == "candidate":
                await self.server_candidate(call, role, args.get("candidate"))
                return {}
            if op == "relay":
                return {"mode": await self.fallback_to_relay(call)}
            if op == "move":
                # A forced-relay call answered on another process: its legs are here.
                await self.media.move_to_relay(call)
                await self.save(call)
                return {"mode": call.mode}
            if op == "connected":
                return {"state": await self.p2p_connected(call)}
        except SignalError:
            raise CallError("bad_signal") from None
        except RelayBusy:
            raise CallError("relay_busy") from None
        raise CallError("bad_signal")

    async def _release_elsewhere(self, call: Call) -> None:
        """An ended call's media on another process is released there."""
        router = self._remote(call.relay_process)
        if router is not None:
            with contextlib.suppress(CallError):
                await router.request(call.relay_process, "release", {"call_id": call.id})

    # Repair -----------------------------------------------------------------------------------

    async def repair(self, live: Callable[[str], bool]) -> int:
        """End calls a missed event left behind and close peer connections nobody owns."""
        fixed = 0
        now = time.monotonic()
        for call in list(self.calls.values()):
            if await self.shared.fresh(call.id) is None:
                continue  # ended on another process: this copy is dropped
            # Only this process can tell whether its own sockets are gone.
            mine = self.shared.mine
            gone = [role for role, sid in call.sids.items() if sid in mine and not live(sid)]
            overdue = call.state == RINGING and now - call.created_at > self.conf.ring_seconds + 5
            no_media = call.state == ACTIVE and self.media.relay.stalled(call, now)
            if gone or overdue or no_media:
                await self.end(call, "abandoned")
                fixed += 1
        fixed += await self.sweep()
        fixed += await self.media.relay.prune(lambda call_id: call_id in self.calls)
        return fixed

    async def sweep(self) -> int:
        """End the calls of any process whose ring ran out or whose party's process died
        (killed, or frozen past the presence TTL), each once whichever process sees it first;
        return how many this process ended."""
        ended = 0
        calls = []
        for copy in await self.shared.live_calls():
            call = await self.shared.fresh(copy.id) if copy.id in self.calls else copy
            if call is not None:
                calls.append(call)
        # Read after the calls: a party or relay process added meanwhile is not taken for dead.
        beating = await self.shared.beating(calls)
        for call in calls:
            if call.state == ENDED:
                continue
            gone = [role for role, p in call.processes.items() if p not in beating]
            if call.state == ACTIVE and not gone and call.relay_process not in ("", *beating):
                log.info("call %s: the process carrying its media stopped", call.id)
                await self.end(call, "media_failed")
                ended += 1
                continue
            if call.state == RINGING:
                ringing_for = time.monotonic() - call.created_at
                if not gone and ringing_for < self.conf.ring_seconds + SWEEP_GRACE:
                    continue
                # Settled once: an accept on another process may win instead.
                if not await self.shared.resolve(call):
                    continue
            elif not gone:
                continue
            if gone:
                log.info("call %s: the %s's process stopped; the call ends", call.id, gone[0])
                # As when that party's page closed: the other side sees it left the call.
                await self.end(call, "disconnected", by=gone[0])
            else:
                await self.end(call, "timeout")
            ended += 1
        return ended

    async def _sweep_forever(self) -> None:
        while True:
            try:
                # Every process says how many more calls its relay can take.
                await self.shared.store.set_free(self.shared.process, self.media.relay.free_slots)
            except Exception:
                log.warning("calls: relay room not published", exc_info=True)
            await asyncio.sleep(SWEEP_SECONDS)
            try:
                await self.sweep()
            except Exception:
                # Redis or the database away for a moment: the next sweep tries again.
                log.warning("calls: sweep failed", exc_info=True)

    # Helpers ----------------------------------------------------------------------------------

    async def _emit_side(
        self, call: Call, role: str, event: str, payload: dict[str, Any], skip: str | None = None
    ) -> None:
        if call.synthetic and role == "admin":
            # Self-test calls never reach the operator's panel.
            return
        room = call_room(role, call.conversation_id)
        await self.sio.emit(event, payload, room=room, skip_sid=skip, namespace=NAMESPACE)

    async def _ring_timeout(self, call: Call) -> None:
        # The ringing process owns the timer; if it dies, another process's sweep ends the call.
        await asyncio.sleep(self.conf.ring_seconds)
        fresh = await self.shared.fresh(call.id)
        if fresh is not None and fresh.state == RINGING:
            if await self.shared.resolve(fresh):
                await self.end(fresh, "timeout")

    async def _end_after(self, call: Call, seconds: float, reason: str) -> None:
        await asyncio.sleep(seconds)
        await self.end(call, reason)

    async def _record(self, conversation_id: int, call_id: str, outcome: str, seconds: int) -> None:
        """The call's system message, in the server's default language."""
        await record_call(
            self.chat, self.settings.default_locale, conversation_id, call_id, outcome, seconds
        )
