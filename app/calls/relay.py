"""The calls' side of the media hub: relay slots, echo capacity, and what a closed leg means.

`media_relay` knows peer connections and legs; this module knows calls. A relayed or echo call
whose media has not connected `MEDIA_GRACE` seconds after it was answered is abandoned (the
page died before its offer, or ICE cannot get through): its legs close, and Repair ends it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from app.calls.state import ECHO, RELAY, Call
from app.config import CallSettings
from media_relay import IceServer, LegClosed, MediaHub, RelayBusy

MEDIA_GRACE = 15.0


class CallRelay:
    """Owns the media hub for this process's calls; tells the owner when a call's media fails."""

    def __init__(
        self, conf: CallSettings, on_media_failed: Callable[[str], Awaitable[None]]
    ) -> None:
        self.on_media_failed = on_media_failed
        self.hub = MediaHub(
            ice_servers=[IceServer(tuple(urls)) for urls in conf.relay_ice_servers],
            max_relayed=conf.relay_max,
            max_echo=max(4, conf.relay_max),
            connect_timeout=MEDIA_GRACE,
            on_closed=self._leg_closed,
        )

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

    def stalled(self, call: Call, now: float) -> bool:
        """A relayed or echo call answered over `MEDIA_GRACE` ago whose media never connected."""
        return (
            call.mode in (RELAY, ECHO)
            and call.answered_at is not None
            and now - call.answered_at > MEDIA_GRACE
            and not self.hub.connected(call.id)
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

    async def _leg_closed(self, event: LegClosed) -> None:
        # A leg that failed or never connected: its call cannot go on.
        await self.on_media_failed(event.call_id)
