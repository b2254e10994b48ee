"""Checks on what a client sends to set up media: SDP descriptions and trickled ICE candidates."""

from __future__ import annotations

from typing import Any

from aiortc import RTCIceCandidate
from aiortc.sdp import candidate_from_sdp

MAX_SDP_BYTES = 16_000
MAX_CANDIDATE = 1024


class SignalError(ValueError):
    """An offer or candidate that cannot be used (malformed, too big, wrong state)."""


def checked_candidate(value: object) -> dict[str, Any] | None:
    """A trickled ICE candidate as a browser sends it, checked and reduced to its three fields;
    None (or {}, or an empty line) is the end of the candidates. SignalError when malformed."""
    if value is None or value == {}:
        return None
    if not isinstance(value, dict):
        raise SignalError("bad candidate")
    line = value.get("candidate")
    if line == "":
        return None
    mid = value.get("sdpMid")
    index = value.get("sdpMLineIndex")
    if (
        not isinstance(line, str)
        or len(line) > MAX_CANDIDATE
        or not (mid is None or (isinstance(mid, str) and len(mid) <= 32))
        or not (index is None or (isinstance(index, int) and 0 <= index < 16))
    ):
        raise SignalError("bad candidate")
    return {"candidate": line, "sdpMid": mid, "sdpMLineIndex": index}


def udp_candidate(item: dict[str, Any]) -> RTCIceCandidate | None:
    """A checked candidate as aiortc takes it; None for one aiortc cannot use (not UDP)."""
    line, mid, index = item["candidate"], item["sdpMid"], item["sdpMLineIndex"]
    try:
        parsed = candidate_from_sdp(
            line.split(":", 1)[1] if line.startswith("candidate:") else line
        )
    except Exception as exc:
        raise SignalError("bad candidate") from exc
    if parsed.protocol.lower() != "udp":
        return None  # aiortc speaks ICE over UDP only
    parsed.sdpMid = mid
    parsed.sdpMLineIndex = index if mid is None else None
    if mid is None and index is None:
        parsed.sdpMLineIndex = 0
    return parsed
