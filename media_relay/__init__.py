"""The aiortc media relay and echo peer.

It takes an SDP offer and gives an answer, owns its peer connections (closed on failure, on an
ICE timeout and on shutdown), and imports nothing from `app/`: `signal` checks what clients
send, `tracks` carries the media, `hub` owns the peer connections, `tone` is a test signal.
"""

from media_relay.hub import IceServer, LegClosed, MediaHub, RelayBusy
from media_relay.signal import MAX_SDP_BYTES, SignalError, checked_candidate, checked_sdp
from media_relay.tone import ToneDetector, ToneTrack

__all__ = [
    "MAX_SDP_BYTES",
    "IceServer",
    "LegClosed",
    "MediaHub",
    "RelayBusy",
    "SignalError",
    "ToneDetector",
    "ToneTrack",
    "checked_candidate",
    "checked_sdp",
]
