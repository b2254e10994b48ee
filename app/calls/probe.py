"""An aiortc client that calls the echo peer over `/call` and listens for its own tone, and a
TURN client that takes (and gives back) a real allocation on each configured TURN server.

The self-test's Calls check (and "does calling work at all" from the command line) use them:
the echo call goes through everything a browser's call does (cookie identity, `call:ring`,
`rtc:offer`, ICE, DTLS-SRTP, the echo peer's Opus round trip) and measures the setup time; the
allocation is what a visitor behind a network that blocks UDP depends on.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import socketio
from aioice.turn import create_turn_endpoint
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from app.calls.ice import turn_credentials
from app.calls.state import NAMESPACE
from app.config import CallSettings
from media_relay import ToneDetector, ToneTrack


class ProbeRefused(Exception):
    """The server refused the echo call; the message is the server's own."""


@dataclass(frozen=True)
class ProbeResult:
    setup_ms: int  # ring to the tone heard back
    answer_ms: int  # ring to the server's SDP answer
    frames: int


async def echo_probe(base_url: str, cookie: str, chat_id: str, wait: float = 10) -> ProbeResult:
    """Call the echo peer as the visitor behind `cookie`; return the timings when heard."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[dict[str, Any]] = loop.create_future()
    remote: asyncio.Future[MediaStreamTrack] = loop.create_future()
    ended: asyncio.Future[dict[str, Any]] = loop.create_future()

    async def on_answer(data: Any = None) -> None:
        if isinstance(data, dict) and not answer.done():
            answer.set_result(data)

    async def on_ended(data: Any = None) -> None:
        if not ended.done():
            ended.set_result(data if isinstance(data, dict) else {})

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    tone = ToneTrack()
    pc.addTrack(tone)

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        if track.kind == "audio" and not remote.done():
            remote.set_result(track)

    call_id = None
    async with aiohttp.ClientSession() as http:
        sio = socketio.AsyncClient(reconnection=False, http_session=http)
        sio.on("rtc:answer", on_answer, namespace=NAMESPACE)
        sio.on("call:ended", on_ended, namespace=NAMESPACE)
        try:
            await sio.connect(
                base_url,
                namespaces=[NAMESPACE],
                headers={"Cookie": cookie},
                auth={"as": "visitor"},
                transports=["websocket"],
                wait_timeout=wait,
            )
            start = time.monotonic()
            ack = await sio.call(
                "call:ring",
                {"chat_id": chat_id, "echo": True},
                namespace=NAMESPACE,
                timeout=wait,
            )
            if not ack.get("ok"):
                raise ProbeRefused(str(ack.get("message") or ack.get("error")))
            call_id = ack["call_id"]
            await pc.setLocalDescription(await pc.createOffer())
            assert pc.localDescription is not None
            sent = await sio.call(
                "rtc:offer",
                {"call_id": call_id, "type": "offer", "sdp": pc.localDescription.sdp},
                namespace=NAMESPACE,
                timeout=wait,
            )
            if not sent.get("ok"):
                raise ProbeRefused(str(sent.get("message") or sent.get("error")))
            reply = await _first(answer, ended, wait)
            answer_ms = round((time.monotonic() - start) * 1000)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type="answer"))
            track = await _first(remote, ended, wait)
            detector = ToneDetector(frequency=tone.frequency)
            listening = loop.create_task(detector.listen(track))
            heard_at = await _first(listening, ended, wait)
            return ProbeResult(round((heard_at - start) * 1000), answer_ms, detector.frames)
        finally:
            with contextlib.suppress(Exception):
                if call_id and sio.connected:
                    await sio.call("call:end", {"call_id": call_id}, namespace=NAMESPACE, timeout=2)
            tone.stop()
            await pc.close()
            if sio.connected:
                await sio.disconnect()


async def _first(
    wanted: asyncio.Future[Any], ended: asyncio.Future[dict[str, Any]], wait: float
) -> Any:
    """The awaited result, unless the server ends the call first (or time runs out)."""
    done, _ = await asyncio.wait({wanted, ended}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
    if wanted in done:
        return wanted.result()
    if not wanted.done():
        wanted.cancel()
    if ended in done:
        raise ProbeRefused(f"the server ended the call ({ended.result().get('reason')})")
    raise TimeoutError


# TURN allocation ------------------------------------------------------------------------------

TURN_URL = re.compile(
    r"^(?P<scheme>turns?):(?P<host>[^?:]+)(:(?P<port>\d+))?(\?transport=(?P<transport>udp|tcp))?$"
)


@dataclass(frozen=True)
class TurnResult:
    url: str
    relayed: str  # the relayed address the server gave, "host:port"
    ms: int  # connect + authenticated Allocate


class TurnFailed(Exception):
    """A TURN server refused or did not answer an allocation; the message names it."""


async def turn_probe(conf: CallSettings, wait: float = 5) -> list[TurnResult]:
    """Take one allocation on every configured TURN URL with Sohbet's own credentials, then
    release it; TurnFailed names the first that failed. Empty without TURN_URLS/TURN_SECRET."""
    if not (conf.turn_urls and conf.turn_secret):
        return []
    username, password = turn_credentials(conf.turn_secret, "selftest", conf.turn_ttl)
    return list(
        await asyncio.gather(*(_allocate(u, username, password, wait) for u in conf.turn_urls))
    )


async def _allocate(url: str, username: str, password: str, wait: float) -> TurnResult:
    match = TURN_URL.match(url)
    if match is None:
        raise TurnFailed(f"{url}: not a TURN URL this check understands")
    tls = match["scheme"] == "turns"
    transport = match["transport"] or ("tcp" if tls else "udp")
    port = int(match["port"] or (5349 if tls else 3478))
    start = time.monotonic()
    closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    class Released(asyncio.DatagramProtocol):
        def connection_lost(self, exc: Exception | None) -> None:
            if not closed.done():
                closed.set_result(None)

    try:
        relay, _ = await asyncio.wait_for(
            create_turn_endpoint(
                Released,
                server_addr=(match["host"], port),
                username=username,
                password=password,
                lifetime=60,
                ssl=tls,
                transport=transport,
            ),
            wait,
        )
    except TimeoutError:
        raise TurnFailed(f"{url}: no answer in {wait:.0f} s") from None
    except Exception as exc:
        raise TurnFailed(f"{url}: {type(exc).__name__}: {exc}") from exc
    ms = round((time.monotonic() - start) * 1000)
    host, relayed_port = relay.get_extra_info("sockname")[:2]
    relay.close()  # deletes the allocation on the server
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(closed, wait)
    return TurnResult(url, f"{host}:{relayed_port}", ms)
