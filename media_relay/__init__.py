"""The aiortc media relay and echo peer.

It takes an SDP offer and gives an answer, owns its peer connections (closed on failure, on an
ICE timeout and on shutdown), and imports nothing from `app/`.
"""

from media_relay.hub import (
    IceServer,
    LegClosed,
    MediaHub,
    RelayBusy,
    SignalError,
    checked_candidate,
)
from media_relay.tone import ToneDetector, ToneTrack

__all__ = [
    "IceServer",
    "LegClosed",
    "MediaHub",
    "RelayBusy",
    "SignalError",
    "ToneDetector",
    "ToneTrack",
    "checked_candidate",
]
