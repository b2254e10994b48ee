"""The calls every process sees: this process's copies refreshed from the store, the one-winner
claims, and who is on `/call` (a presence of its own)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable

from app.calls.state import ENDED, Call, CallError, call_room
from app.calls.store import CallStore, call_fields, call_from, create_call_store, merge
from app.config import Settings
from app.realtime.presence import Presence, create_presence

# How long a call's state outlives its last change: a ringing call whose process died ends by
# itself soon after its ring; an answered one is renewed by every change of its own.
ANSWERED_TTL = 4 * 3600
# An ended call's claims stay a while so a late accept or a second end finds it ended.
ENDED_TTL = 600


class SharedCalls:
    """Call state shared by the processes: copies, claims and `/call` presence."""

    def __init__(
        self,
        settings: Settings,
        calls: dict[str, Call],
        release: Callable[[Call], Awaitable[None]],
    ) -> None:
        self.calls = calls
        self.release = release
        self.ringing_ttl = settings.calls.ring_seconds + 30
        self.store: CallStore = create_call_store(settings)
        # Its own keys and heartbeat: the `/chat` presence and its Repair never see these.
        self.presence: Presence = create_presence(
            dataclasses.replace(settings, redis_channel=f"{settings.redis_channel}:calls")
        )
        # `/call` sockets connected to this process (Repair judges only these), and their room.
        self.mine: dict[str, str] = {}

    async def fresh(self, call_id: str) -> Call | None:
        """The call from the store, merged into this process's copy; None once it ended."""
        fields = await self.store.load(call_id)
        local = self.calls.get(call_id)
        if fields is None or fields.get("state") == ENDED:
            if local is not None:
                await self.drop(local)
            return None
        if local is None:
            local = self.calls[call_id] = call_from(fields)
        else:
            merge(local, fields)
        return local

    async def for_conversation(self, conversation_id: int) -> Call | None:
        call_id = await self.store.value(f"conv:{conversation_id}")
        return await self.fresh(call_id) if call_id else None

    async def in_call(self, sid: str) -> str | None:
        return await self.store.value(f"sid:{sid}")

    async def busy_sids(self, sids: list[str]) -> set[str]:
        """Of these sockets, those in a call already on any process (not rung, cannot answer)."""
        held = await self.store.values([f"sid:{sid}" for sid in sids])
        return {sid for sid, call_id in zip(sids, held, strict=True) if call_id}

    async def save(self, call: Call) -> None:
        """Let every process see what this one changed in a call."""
        ttl = ANSWERED_TTL if call.answered_at is not None else self.ringing_ttl
        await self.store.save(call.id, call_fields(call), ttl)
        for key in (f"conv:{call.conversation_id}", *(f"sid:{sid}" for sid in call.sids.values())):
            await self.store.extend(key, ttl)

    async def claim(self, call: Call, sid: str, ttl: int) -> None:
        """Take the conversation and the caller's socket for this call, on every process."""
        if not await self.store.claim(f"conv:{call.conversation_id}", call.id, ttl):
            raise CallError("call_busy")
        if not await self.store.claim(f"sid:{sid}", call.id, ttl):
            await self.store.release(f"conv:{call.conversation_id}", call.id)
            raise CallError("already_in_call")
        self.calls[call.id] = call
        await self.store.save(call.id, call_fields(call), ttl)
        await self.store.list_live(call.id)

    async def answer(self, call: Call, sid: str) -> None:
        """The one accept that wins (whichever process), taking the callee's socket."""
        if not await self.resolve(call, sid):
            raise CallError("call_gone")
        if not await self.store.claim(f"sid:{sid}", call.id, ANSWERED_TTL):
            raise CallError("already_in_call")

    async def resolve(self, call: Call, by: str = "-") -> bool:
        """Settle a ringing call once: answered (by a socket) or not (declined, timed out)."""
        return await self.store.claim(f"answer:{call.id}", by, ENDED_TTL)

    async def finish(self, call: Call) -> bool:
        """True for the one process that ends the call; it frees its claims."""
        if not await self.store.claim(f"ended:{call.id}", "1", ENDED_TTL):
            return False
        await self.store.release(f"conv:{call.conversation_id}", call.id)
        for sid in call.sids.values():
            await self.store.release(f"sid:{sid}", call.id)
        await self.store.save(call.id, call_fields(call), ENDED_TTL)
        await self.store.unlist(call.id)
        return True

    async def drop(self, call: Call) -> None:
        """This process forgets a call: its timer and media."""
        call.state = ENDED
        self.calls.pop(call.id, None)
        if call.timer is not None and call.timer is not asyncio.current_task():
            call.timer.cancel()
        await self.release(call)

    @property
    def process(self) -> str:
        """This process, as a call's parties record where their sockets are."""
        return self.presence.process

    async def beating(self, calls: list[Call]) -> set[str]:
        """Of the processes these calls' parties and media are on, those still beating."""
        processes = {p for call in calls for p in (*call.processes.values(), call.relay_process)}
        processes.discard("")
        return await self.presence.beating(list(processes)) if processes else set()

    async def relay_with_room(self) -> str | None:
        """Another live process whose relay can take a call (the one with most room)."""
        free = {p: n for p, n in (await self.store.free_slots()).items() if n > 0}
        free.pop(self.process, None)
        beating = await self.presence.beating(list(free))
        ranked = sorted((n, p) for p, n in free.items() if p in beating)
        return ranked[-1][1] if ranked else None

    async def live_calls(self) -> list[Call]:
        """Every call not ended yet, on any process, as stored now."""
        found: list[Call] = []
        for call_id in await self.store.live_calls():
            fields = await self.store.load(call_id)
            if fields is None or fields.get("state") == ENDED:
                await self.store.unlist(call_id)  # ended, or its state expired
                continue
            found.append(call_from(fields))
        return found

    async def sockets(self, conversation_id: int, role: str) -> list[str]:
        """The `/call` sockets of one side of a conversation, on every process."""
        return await self.presence.members(f"call:{call_room(role, conversation_id)}")

    async def connected(self, sid: str, room: str) -> None:
        self.mine[sid] = room
        await self.presence.add(f"call:{room}", sid)

    async def disconnected(self, sid: str) -> None:
        room = self.mine.pop(sid, None)
        if room is not None:
            await self.presence.remove(f"call:{room}", sid)

    async def start(self) -> None:
        await self.presence.start(_nothing_to_announce)

    async def close(self) -> None:
        await self.presence.close()
        await self.store.close()


async def _nothing_to_announce(online: list[str], offline: list[str]) -> None:
    """`/call` presence changes show nowhere (the `/chat` presence drives the pages)."""
