"""Peer connections the server owns: echo sessions and the two legs of each relayed call.

Each leg is one `RTCPeerConnection` with a browser (or any WebRTC client). An echo leg sends
back what it receives. A relayed call has two legs, "a" and "b"; each leg's outgoing tracks
forward the other leg's incoming tracks (through `MediaRelay`), with silence until they exist.
Every leg is closed when its ICE does not connect in time, when it fails, and on shutdown.
The owner hears of each leg that connects (`on_connected`) and of each that closes on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack

from media_relay.signal import SignalError, checked_candidate, checked_sdp, udp_candidate
from media_relay.tracks import ForwardTrack, PacketTrack, tap_opus

log = logging.getLogger("media_relay")

MAX_PENDING_CANDIDATES = 64
ECHO, RELAY = "echo", "relay"
SIDES = ("a", "b")


class RelayBusy(Exception):
    """The cap on concurrent relayed calls (or echo sessions) is reached."""


@dataclass(frozen=True)
class IceServer:
    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None


@dataclass(frozen=True)
class LegClosed:
    """Told to the owner when a leg ends on its own (ICE failed or timed out, peer gone)."""

    call_id: str
    side: str
    reason: str


@dataclass
class _Leg:
    call_id: str
    side: str
    mode: str
    pc: RTCPeerConnection
    described: bool = False
    pending: list[dict[str, Any] | None] = field(default_factory=list)
    # Received tracks by kind: audio as undecoded Opus packets where possible.
    incoming: dict[str, MediaStreamTrack] = field(default_factory=dict)
    outgoing: dict[str, ForwardTrack] = field(default_factory=dict)
    watchdog: asyncio.Task[None] | None = None
    connected_at: float | None = None
    closed: bool = False


class MediaHub:
    """Answers offers for echo sessions and relay legs; owns and closes their connections."""

    def __init__(
        self,
        *,
        ice_servers: Sequence[IceServer] = (),
        max_relayed: int = 20,
        max_echo: int = 20,
        connect_timeout: float = 10.0,
        on_closed: Callable[[LegClosed], Awaitable[None]] | None = None,
        on_connected: Callable[[str, str], Awaitable[None]] | None = None,
    ) -> None:
        self.ice_servers = list(ice_servers)
        self.max_relayed = max_relayed
        self.max_echo = max_echo
        self.connect_timeout = connect_timeout
        self.on_closed = on_closed
        self.on_connected = on_connected
        self._legs: dict[tuple[str, str], _Leg] = {}
        self._relayed: set[str] = set()
        self._relay = MediaRelay()
        self.answered = 0
        self.passthrough = 0

    # Capacity ---------------------------------------------------------------------------------

    def reserve_relay(self, call_id: str) -> None:
        """Count a call against the relay cap (idempotent); RelayBusy when it is full."""
        if call_id in self._relayed:
            return
        if len(self._relayed) >= self.max_relayed:
            raise RelayBusy(call_id)
        self._relayed.add(call_id)

    @property
    def relayed_calls(self) -> int:
        return len(self._relayed)

    @property
    def echo_sessions(self) -> int:
        return len({leg.call_id for leg in self._legs.values() if leg.mode == ECHO})

    @property
    def peer_connections(self) -> int:
        return len(self._legs)

    def connected(self, call_id: str) -> bool:
        """Whether any leg of the call has connected its media."""
        return any(
            leg.connected_at is not None for (cid, _), leg in self._legs.items() if cid == call_id
        )

    def connected_sides(self, call_id: str) -> set[str]:
        """The legs of the call ("a", "b") whose media has connected."""
        return {
            side
            for (cid, side), leg in self._legs.items()
            if cid == call_id and leg.connected_at is not None
        }

    def call_ids(self) -> set[str]:
        return {call_id for call_id, _ in self._legs} | set(self._relayed)

    # Signalling -------------------------------------------------------------------------------

    async def answer(self, call_id: str, side: str, mode: str, offer_sdp: object) -> str:
        """Take a client's SDP offer for one leg and return the server's answer SDP."""
        if mode not in (ECHO, RELAY) or side not in SIDES:
            raise SignalError("bad leg")
        offer = checked_sdp(offer_sdp)
        if mode == ECHO and (call_id, side) not in self._legs:
            if self.echo_sessions >= self.max_echo:
                raise RelayBusy(call_id)
        if mode == RELAY and call_id not in self._relayed:
            raise SignalError("relay not reserved")
        old = self._legs.get((call_id, side))
        pending: list[dict[str, Any] | None] = []
        if old is not None:
            # A new offer for the same leg (an ICE restart, a retry): start this leg afresh.
            pending = old.pending if not old.described else []
            await self._close_leg(old, "replaced", notify=False)
        config = RTCConfiguration(
            iceServers=[
                RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
                for s in self.ice_servers
            ]
        )
        leg = _Leg(call_id, side, mode, RTCPeerConnection(configuration=config), pending=pending)
        self._legs[(call_id, side)] = leg
        self._wire(leg)
        try:
            await leg.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            await leg.pc.setLocalDescription(await leg.pc.createAnswer())
            local = leg.pc.localDescription
            # No codec in common leaves no media to answer with: refuse now, not at the timeout.
            answer = checked_sdp(str(local.sdp) if local is not None else None)
        except Exception as exc:
            await self._close_leg(leg, "bad offer", notify=False)
            raise SignalError(f"offer refused: {type(exc).__name__}") from exc
        leg.described = True
        for candidate in leg.pending:
            await self._add_candidate(leg, candidate)
        leg.pending.clear()
        leg.watchdog = asyncio.get_running_loop().create_task(self._watch(leg))
        self.answered += 1
        return answer

    async def add_candidate(self, call_id: str, side: str, candidate: object) -> None:
        """A trickled ICE candidate from the client (see `checked_candidate`)."""
        item = checked_candidate(candidate)
        leg = self._legs.get((call_id, side))
        if leg is None:
            raise SignalError("no such leg")
        if not leg.described:
            if len(leg.pending) >= MAX_PENDING_CANDIDATES:
                raise SignalError("too many candidates")
            leg.pending.append(item)
            return
        await self._add_candidate(leg, item)

    async def _add_candidate(self, leg: _Leg, item: dict[str, Any] | None) -> None:
        if item is None:
            with contextlib.suppress(Exception):
                await leg.pc.addIceCandidate(None)
            return
        parsed = udp_candidate(item)
        if parsed is None:
            return
        try:
            await leg.pc.addIceCandidate(parsed)
        except Exception as exc:
            raise SignalError("bad candidate") from exc

    # Media ------------------------------------------------------------------------------------

    def _wire(self, leg: _Leg) -> None:
        pc = leg.pc

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind not in ("audio", "video"):
                return
            packets = tap_opus(pc, track) if track.kind == "audio" else None
            if packets is not None:
                self.passthrough += 1
            source: MediaStreamTrack = packets or track
            leg.incoming[track.kind] = source
            if leg.mode == ECHO:
                if packets is not None:
                    echo = ForwardTrack("audio")
                    echo.attach(packets)
                    leg.outgoing["audio"] = echo
                    pc.addTrack(echo)
                else:
                    pc.addTrack(self._relay.subscribe(track))
                return
            outgoing = ForwardTrack(track.kind)
            leg.outgoing[track.kind] = outgoing
            pc.addTrack(outgoing)
            other = self._legs.get((leg.call_id, _other(leg.side)))
            if other is not None:
                # Each side hears the other: wire both directions that now exist.
                if track.kind in other.outgoing:
                    other.outgoing[track.kind].attach(self._reader(source))
                if track.kind in other.incoming:
                    outgoing.attach(self._reader(other.incoming[track.kind]))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            state = pc.connectionState
            if state == "connected" and leg.connected_at is None:
                leg.connected_at = time.monotonic()
                if self.on_connected is not None and not leg.closed:
                    try:
                        await self.on_connected(leg.call_id, leg.side)
                    except Exception:
                        log.exception("leg-connected callback failed")
            elif state in ("failed", "closed") and not leg.closed:
                await self._close_leg(leg, f"ice {state}")

    async def _watch(self, leg: _Leg) -> None:
        """aiortc can wait in "new"/"checking" forever without candidates: give it a deadline."""
        await asyncio.sleep(self.connect_timeout)
        if leg.connected_at is None and not leg.closed:
            log.info(
                "leg %s/%s did not connect in %.0f s", leg.call_id, leg.side, self.connect_timeout
            )
            await self._close_leg(leg, "ice timeout")

    def _reader(self, source: MediaStreamTrack) -> MediaStreamTrack:
        """Packet tracks have one reader (the other leg); decoded ones go through MediaRelay."""
        return source if isinstance(source, PacketTrack) else self._relay.subscribe(source)

    # Teardown ---------------------------------------------------------------------------------

    async def _close_leg(self, leg: _Leg, reason: str, *, notify: bool = True) -> None:
        if leg.closed:
            return
        leg.closed = True
        if self._legs.get((leg.call_id, leg.side)) is leg:
            del self._legs[(leg.call_id, leg.side)]
        if leg.watchdog is not None and leg.watchdog is not asyncio.current_task():
            leg.watchdog.cancel()
        for track in leg.outgoing.values():
            track.stop()
        with contextlib.suppress(Exception):
            await leg.pc.close()
        if notify and self.on_closed is not None:
            try:
                await self.on_closed(LegClosed(leg.call_id, leg.side, reason))
            except Exception:
                log.exception("leg-closed callback failed")

    async def close_call(self, call_id: str) -> int:
        """Close every leg of a call and release its relay slot; return how many were open."""
        legs = [leg for (cid, _), leg in list(self._legs.items()) if cid == call_id]
        for leg in legs:
            await self._close_leg(leg, "call ended", notify=False)
        self._relayed.discard(call_id)
        return len(legs)

    async def prune(self, live: Callable[[str], bool]) -> int:
        """Close legs and relay slots of calls the owner no longer knows (Repair)."""
        closed = 0
        for call_id in self.call_ids():
            if not live(call_id):
                closed += await self.close_call(call_id) or 1
        return closed

    async def close(self) -> None:
        """Shutdown: close every peer connection."""
        for leg in list(self._legs.values()):
            await self._close_leg(leg, "shutdown", notify=False)
        self._relayed.clear()


def _other(side: str) -> str:
    return "b" if side == "a" else "a"
