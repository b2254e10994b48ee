"""How an answered call's media gets through: P2P, the relay (also prepared alongside P2P while
P2P checks run), or the echo peer; and when a call counts as connected.

A P2P call whose direct connection has not come up `RELAY_ALONGSIDE_MS` after the answer opens
its relay legs alongside; whichever way carries media both ways first takes the call. Ending a
call belongs to the call service, which this module calls back through `end`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import socketio

from app.calls.ice import ice_servers_for
from app.calls.relay import MEDIA_GRACE, CallRelay
from app.calls.state import ACTIVE, ECHO, NAMESPACE, P2P, RELAY, SIDES_OF_RELAY, Call, CallError
from app.config import CallSettings

log = logging.getLogger("sohbet.calls")

# A P2P call's pages open their relay legs alongside when their direct connection has not come
# up this long after the answer (a direct pair on one network connects well within it), so a
# call that cannot go direct is carried by the relay about a second after the answer.
RELAY_ALONGSIDE_MS = 700


class CallMedia:
    """The media side of this process's calls: ICE servers, relay slots, connected or failed."""

    def __init__(
        self,
        conf: CallSettings,
        sio: socketio.AsyncServer,
        calls: dict[str, Call],
        end: Callable[[Call, str], Awaitable[None]],
    ) -> None:
        self.conf = conf
        self.sio = sio
        self.calls = calls
        self.end = end
        # Lets every process see that the call connected (set by the call service).
        self.save: Callable[[Call], Awaitable[None]] | None = None
        # P2P calls whose relay legs are being prepared alongside: the first to connect wins.
        self.alongside: set[str] = set()
        self.relay = CallRelay(conf, self._media_failed, self._media_connected)
        # The namespace answers offers and takes candidates through the hub directly.
        self.hub = self.relay.hub

    def ice_for(self, call: Call, role: str) -> list[dict[str, Any]]:
        return ice_servers_for(self.conf, f"{call.cid}-{role}")

    def accepted_payload(self, call: Call, role: str) -> dict[str, Any]:
        return {
            **call.summary(),
            "role": role,
            "initiator": role == call.caller,
            "ice_servers": self.ice_for(call, role),
            "p2p_timeout_ms": round(self.conf.p2p_timeout * 1000),
            "relay_after_ms": min(RELAY_ALONGSIDE_MS, round(self.conf.p2p_timeout * 1000)),
        }

    async def fallback_to_relay(self, call: Call) -> None:
        """P2P did not connect: both sides move to the server relay (once)."""
        if call.state != ACTIVE:
            raise CallError("call_gone")
        if call.mode in (RELAY, ECHO):
            return
        self.alongside.discard(call.id)
        await self.move_to_relay(call)
        log.info("call %s falls back to the relay", call.id)
        for who, owner in call.sids.items():
            await self.sio.emit(
                "call:relay",
                {**call.summary(), "ice_servers": self.ice_for(call, who)},
                to=owner,
                namespace=NAMESPACE,
            )

    async def prepare_relay(self, call: Call) -> None:
        """A P2P call's page opens its relay leg while P2P checks run (the mode stays P2P)."""
        if call.state != ACTIVE or call.mode != P2P or call.connected_at is not None:
            raise CallError("call_gone")
        if call.id in self.alongside:
            return
        if not self.relay.reserve(call):
            raise CallError("relay_busy")
        self.alongside.add(call.id)
        call.media_from = time.monotonic()
        # Neither way connecting in time ends the call (as a relayed call's deadline does).
        call.timer = asyncio.get_running_loop().create_task(self._connect_deadline(call))

    async def p2p_connected(self, call: Call) -> None:
        """A page's P2P connection is up (end to end, so media flows both ways): both are told."""
        if call.state != ACTIVE or call.mode != P2P:
            # A call through the server is connected when the server's own legs are.
            return
        if call.id in self.alongside:
            # Direct won: the relay legs prepared alongside are not needed.
            self.alongside.discard(call.id)
            await self.relay.release(call)
        await self._mark_connected(call)

    async def move_to_relay(self, call: Call) -> None:
        """Take a slot of the relay for the call; a full relay ends the call (`relay_busy`)."""
        if not self.relay.take_slot(call):
            await self.end(call, "relay_busy")
            raise CallError("relay_busy")
        call.media_from = time.monotonic()
        if call.timer is not None and call.timer is not asyncio.current_task():
            call.timer.cancel()  # the deadline of a relay prepared alongside: this one replaces it
        # A leg that never offers has no watchdog in the hub: the call itself has a deadline.
        call.timer = asyncio.get_running_loop().create_task(self._connect_deadline(call))

    async def release(self, call: Call) -> None:
        """The call is over: its peer connections close and its relay slot is free."""
        self.alongside.discard(call.id)
        await self.relay.release(call)

    async def _connect_deadline(self, call: Call) -> None:
        await asyncio.sleep(MEDIA_GRACE)
        if call.state == ACTIVE and call.connected_at is None:
            log.info("call %s: media did not connect both ways in %.0f s", call.id, MEDIA_GRACE)
            await self.end(call, "media_failed")

    async def _media_connected(self, call_id: str) -> None:
        """A server leg connected: once the call's media flows both ways, both sides are told."""
        call = self.calls.get(call_id)
        if call is None or call.state != ACTIVE or call.connected_at is not None:
            return
        if call.id in self.alongside and call.mode == P2P:
            # The relay prepared alongside connected both legs before P2P: the call takes it.
            if self.hub.connected_sides(call.id) >= SIDES_OF_RELAY:
                self.alongside.discard(call.id)
                call.mode = RELAY
                await self._mark_connected(call)
            return
        if self.relay.carries_media(call):
            await self._mark_connected(call)

    async def _mark_connected(self, call: Call) -> None:
        if call.connected_at is not None:
            return
        call.connected_at = time.monotonic()
        if call.mode != ECHO and call.timer is not None:
            call.timer.cancel()
            call.timer = None
        log.info("call %s: media connected (%s)", call.id, call.mode)
        if self.save is not None:
            # The party on another process may end the call: its duration counts from now.
            await self.save(call)
        for owner in call.sids.values():
            await self.sio.emit("call:connected", call.summary(), to=owner, namespace=NAMESPACE)

    async def _media_failed(self, call_id: str) -> None:
        call = self.calls.get(call_id)
        if call is None or call.state != ACTIVE:
            return
        if call.id in self.alongside and call.mode == P2P:
            # A leg prepared alongside failed: P2P may still connect (or the deadline ends it).
            self.alongside.discard(call.id)
            await self.relay.release(call)
            return
        # A relay or echo leg that failed or never connected: the call cannot go on.
        await self.end(call, "media_failed")
