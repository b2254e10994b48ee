"""Checks on what a client sends to set up media: SDP descriptions and trickled ICE candidates."""

from __future__ import annotations

import re
from typing import Any

from aiortc import RTCIceCandidate
from aiortc.sdp import candidate_from_sdp

MAX_SDP_BYTES = 16_000
MAX_CANDIDATE = 1024
# RFC 8866: every line is "<type>=<value>" with a one-letter type; a media section starts
# with "m=<media> <port>[/<count>] <proto> <fmt> ...".
_LINE = re.compile(r"[a-z]=.*")
_MEDIA = re.compile(r"m=(\w+) (\d+)(?:/\d+)? \S+(?: \S+)+")
_CALL_MEDIA = ("audio", "video")


class SignalError(ValueError):
    """An offer or candidate that cannot be used (malformed, too big, wrong state)."""


def checked_sdp(value: object) -> str:
    """An offer or answer that can carry a call: SDP lines, and at least one audio or video
    section with its ICE credentials and DTLS fingerprint. SignalError otherwise.

    A parser that skips what it does not know (aiortc's) would otherwise answer a description
    without media with one without media, and the call would wait for media that never comes.
    """
    if not isinstance(value, str) or not value.startswith("v=0") or len(value) > MAX_SDP_BYTES:
        raise SignalError("bad sdp")
    lines = [line for line in value.splitlines() if line]
    if not all(_LINE.fullmatch(line) for line in lines):
        raise SignalError("bad sdp")
    sections: list[list[str]] = [[]]
    for line in lines:
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    session, media = sections[0], sections[1:]
    if not any(line.startswith("o=") for line in session):
        raise SignalError("bad sdp")
    usable = 0
    for section in media:
        found = _MEDIA.fullmatch(section[0])
        if found is None:
            raise SignalError("bad sdp")
        if found.group(1) not in _CALL_MEDIA or found.group(2) == "0":
            continue  # a data channel, or a section the other side turned down
        for attribute in ("a=ice-ufrag:", "a=ice-pwd:", "a=fingerprint:"):
            if not any(line.startswith(attribute) for line in session + section):
                raise SignalError("bad sdp")
        usable += 1
    if not usable:
        raise SignalError("no media")
    return value


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
