"""A test party in a call: a `/call` Socket.IO client plus a real aiortc peer connection.

Each party sends a tone of its own frequency and listens for the other party's (or, with the
echo peer, its own) tone in what it receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from media_relay import ToneDetector, ToneTrack
from tests.support.clients import ADMIN_COOKIE, VISITOR_COOKIE, Peer, start_visitor, visitor_peer

CALL_EVENTS = (
    "call:incoming",
    "call:accepted",
    "call:connected",
    "call:declined",
    "call:ended",
    "call:error",
    "call:relay",
    "call:media",
    "rtc:offer",
    "rtc:answer",
    "rtc:candidate",
)


async def call_peer(base_url: str, role: str, token: str) -> Peer:
    cookie = f"{VISITOR_COOKIE}={token}" if role == "visitor" else f"{ADMIN_COOKIE}={token}"
    return await Peer(base_url, cookie, role, namespace="/call", events=CALL_EVENTS).connect()


async def calling_visitor(base_url: str, name: str) -> tuple[Peer, str, str]:
    """A new visitor's `/call` socket, joined to its conversation: (socket, cookie token, cid)."""
    token, cid = await start_visitor(base_url, name)
    peer = await call_peer(base_url, "visitor", token)
    joined = await peer.call("join", {"chat_id": cid})
    assert joined["ok"] and joined["call"] is None, joined
    return peer, token, cid


async def system_messages(base_url: str, token: str, cid: str) -> list[dict[str, Any]]:
    """The conversation's system messages as the visitor's page receives them (history)."""
    chat = await visitor_peer(base_url, token)
    try:
        await chat.call("join", {"chat_id": cid})
        history: list[dict[str, Any]] = await chat.wait_for("chat:history")
    finally:
        await chat.close()
    return [m for m in history if m["role"] == "system"]


def ice_config(servers: list[dict[str, Any]]) -> RTCConfiguration:
    """The RTCConfiguration a page would build from Sohbet's `ice_servers`."""
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(
                urls=list(s["urls"]), username=s.get("username"), credential=s.get("credential")
            )
            for s in servers
        ]
    )


class Media:
    """One aiortc connection of a party, sending `send_hz` (or the audio track `tone`) and
    listening for `hear_hz`, with Sohbet's `ice_servers` (none: host candidates only)."""

    def __init__(
        self,
        peer: Peer,
        call_id: str,
        send_hz: float,
        hear_hz: float,
        tone: MediaStreamTrack | None = None,
        *,
        ice_servers: list[dict[str, Any]] | None = None,
        to: str | None = None,
    ) -> None:
        self.peer = peer
        # "server": an offer for the relay leg a page opens alongside P2P (as `call:relay` does).
        self.to = to
        self.call_id = call_id
        self.pc = RTCPeerConnection(ice_config(ice_servers or []))
        self.tone: MediaStreamTrack = tone or ToneTrack(send_hz)
        self.pc.addTrack(self.tone)
        self.hear_hz = hear_hz
        self.remote: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and not self.remote.done():
            self.remote.set_result(track)

    async def offer(self, answers_seen: int = 0) -> dict[str, Any]:
        """Send our offer; apply the answer that arrives (the `answers_seen`+1-th one)."""
        with self._gathering():
            await self.pc.setLocalDescription(await self.pc.createOffer())
        await self._send_description()
        await self.peer.wait_for(
            "rtc:answer", lambda _: len(self.peer.events["rtc:answer"]) > answers_seen
        )
        answer = self.peer.events["rtc:answer"][answers_seen]
        assert answer["call_id"] == self.call_id
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        return answer

    async def answer(self) -> None:
        """Answer the other party's P2P offer (forwarded by the server)."""
        offer = await self.peer.wait_for("rtc:offer", lambda m: m["call_id"] == self.call_id)
        await self.pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        with self._gathering():
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        await self._send_description()

    def _gathering(self) -> contextlib.AbstractContextManager[None]:
        """Where our candidates are gathered: here, in this process's network."""
        return contextlib.nullcontext()

    async def _send_description(self) -> None:
        """Send our local offer or answer as `rtc:offer` / `rtc:answer`; the server takes it."""
        local = self.pc.localDescription
        assert local is not None
        body = {"call_id": self.call_id, "type": local.type, "sdp": local.sdp}
        if self.to is not None:
            body["to"] = self.to
        ack = await self.peer.call(f"rtc:{local.type}", body)
        assert ack["ok"], ack

    async def hear(self, timeout: float = 10) -> float:
        """Wait until the expected tone is heard; return when (time.monotonic())."""
        track = await asyncio.wait_for(self.remote, timeout)
        return await asyncio.wait_for(ToneDetector(self.hear_hz).listen(track), timeout)

    async def close(self) -> None:
        self.tone.stop()
        await self.pc.close()


def now() -> float:
    return time.monotonic()
