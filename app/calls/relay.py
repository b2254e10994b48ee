"""The calls' side of the media hub: relay slots, echo capacity, and what a closed leg means.

`media_relay` knows peer connections and legs; this module knows calls. A relayed call carries
media once BOTH its legs have connected (an echo call once its one leg has). A relayed or echo
call whose media has not connected `MEDIA_GRACE` seconds after the server's media began is
abandoned (the page died before its offer, or ICE cannot get through): the call service ends
it at that deadline, and Repair ends any left behind.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from app.calls.state import ECHO, RELAY, SIDES_OF_RELAY, Call
from app.config import CallSettings
from media_relay import IceServer, LegClosed, MediaHub, RelayBusy

MEDIA_GRACE = 15.0


class CallRelay:
    """Owns the media hub for this process's calls; tells the owner when a call's media fails."""

    def __init__(
        self,
        conf: CallSettings,
        on_media_failed: Callable[[str], Awaitable[None]],
        on_media_connected: Callable[[str], Awaitable[None]],
    ) -> None:
        self.on_media_failed = on_media_failed
        self.on_media_connected = on_media_connected
        self.hub = MediaHub(
            ice_servers=[IceServer(tuple(urls)) for urls in conf.relay_ice_servers],
            max_relayed=conf.relay_max,
            max_echo=max(4, conf.relay_max),
            connect_timeout=MEDIA_GRACE,
            on_closed=self._leg_closed,
            on_connected=self._leg_connected,
        )

    @property
    def free_slots(self) -> int:
        """Calls the relay can still take (`CALL_RELAY_MAX` per process)."""
        return max(0, self.hub.max_relayed - self.hub.relayed_calls)

    @property
    def echo_full(self) -> bool:
        return self.hub.echo_sessions >= self.hub.max_echo

    def take_slot(self, call: Call) -> bool:
        """Count the call against the relay cap and switch it to the relay; False when full."""
        try:
            self.hub.reserve_relay(call.id)
        except RelayBusy:
            return False
        call.mode = RELAY
        return True

    def reserve(self, call: Call) -> bool:
        """Count the call against the relay cap without switching it (the relay prepared
        alongside P2P); False when full."""
        try:
            self.hub.reserve_relay(call.id)
        except RelayBusy:
            return False
        return True

    def carries_media(self, call: Call) -> bool:
        """Whether the call's server media flows both ways: both relay legs (or the echo leg)
        connected."""
        connected = self.hub.connected_sides(call.id)
        return connected >= SIDES_OF_RELAY if call.mode == RELAY else bool(connected)

    def stalled(self, call: Call, now: float) -> bool:
        """A relayed or echo call whose media began over `MEDIA_GRACE` ago and never connected."""
        return (
            call.mode in (RELAY, ECHO)
            and call.media_from is not None
            and now - call.media_from > MEDIA_GRACE
            and call.connected_at is None
        )

    async def release(self, call: Call) -> None:
        """Close the call's peer connections and free its relay slot."""
        await self.hub.close_call(call.id)

    async def prune(self, live: Callable[[str], bool]) -> int:
        """Close peer connections of calls that no longer exist (Repair)."""
        return await self.hub.prune(live)

    async def close(self) -> None:
        """Shutdown: close every peer connection."""
        await self.hub.close()

    async def _leg_connected(self, call_id: str, side: str) -> None:
        await self.on_media_connected(call_id)

    async def _leg_closed(self, event: LegClosed) -> None:
        # A leg that failed or never connected: its call cannot go on.
        await self.on_media_failed(event.call_id)
