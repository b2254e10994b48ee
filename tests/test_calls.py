"""Calls over the `/call` contract with real aiortc peers, in a private network namespace.

The server (SQLite; PostgreSQL sits outside the namespace), the fake Bot API and every peer run
inside a namespace whose loopback also carries 127.0.0.2, the address WebRTC uses here. Each
party sends a tone of its own and listens for the other's: hearing it proves media flowed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import re
import socket
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import socketio
from aiortc import RTCConfiguration, RTCPeerConnection
from playwright.async_api import Browser, Page, WebSocketRoute, expect

from app.core.security import token_hash
from tests.support import netns, turn
from tests.support.accessibility import assert_accessible
from tests.support.browser import chromium as launch_chromium
from tests.support.call_pages import CALL_CHROMIUM_ARGS, CLICKED, HEAR, tone_wav
from tests.support.calls import Media, call_peer, calling_visitor, now, system_messages
from tests.support.clients import (
    Peer,
    admin_csrf,
    admin_login,
    call,
    start_visitor,
)
from tests.support.fake_telegram import FakeTelegram
from tests.support.pages import (
    DESKTOP,
    PHONE,
    Watch,
    close_all,
    open_page,
    sign_in_with,
    start_chat,
)
from tests.support.server import Server, create_pg_database, drop_pg_database, execute_sql
from tests.support.telegram import login_via_telegram, telegram_env, with_text

NO_NETNS = netns.unavailable()  # one probe (it makes a namespace), not one per use
pytestmark = pytest.mark.skipif(NO_NETNS is not None, reason=str(NO_NETNS))

TURN_SECRET = "turn-shared-secret"
VISITOR_HZ, ADMIN_HZ = 880.0, 660.0


@pytest.fixture(scope="module")
async def private_net() -> AsyncIterator[str]:
    # PostgreSQL stays reachable inside (a forwarding thread) for the PostgreSQL call test.
    with netns.private_network(forward=(5432,)) as address, netns.own_default_executor():
        yield address


@pytest.fixture(scope="module")
def silent_stun(private_net: str) -> Iterator[str]:
    """A STUN server that never answers (what an unreachable one looks like to ICE)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((private_net, 0))
        yield f"stun:{private_net}:{sock.getsockname()[1]}"


@pytest.fixture(scope="module")
async def fake(private_net: str) -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as f:
        yield f


def call_env(stun: str, **extra: str) -> dict[str, str]:
    return {
        "ICE_SERVERS": stun,
        "TURN_URLS": "turn:turn.sohbet.test:3478?transport=udp",
        "TURN_SECRET": TURN_SECRET,
        "CALL_RING_SECONDS": "5",
        "CALL_RELAY_MAX": "1",
        "CALL_P2P_TIMEOUT_MS": "4000",
        "SELFTEST_SKIP": "",
        **extra,
    }


@pytest.fixture(scope="module")
async def server(
    private_net: str, silent_stun: str, fake: FakeTelegram, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Server]:
    workdir = tmp_path_factory.mktemp("calls")
    srv = Server(
        database_url=f"sqlite://{workdir / 'sohbet.db'}",
        workdir=workdir,
        env_extra={**telegram_env(fake), **call_env(silent_stun)},
    )
    await srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
async def admin_token(server: Server, fake: FakeTelegram) -> str:
    return await login_via_telegram(server, fake)


async def answered_call(
    server: Server, admin_token: str, name: str
) -> tuple[Peer, Peer, str, str, str]:
    """The visitor rings, the operator answers: (visitor, admin, call id, cid, visitor token)."""
    caller, token, cid = await calling_visitor(server.url, name)
    admin = await call_peer(server.url, "admin", admin_token)
    ring = await caller.call("call:ring", {"chat_id": cid})
    assert ring["ok"], ring
    incoming = await admin.wait_for("call:incoming", lambda m: m["call_id"] == ring["call_id"])
    assert incoming["chat_id"] == cid and incoming["name"] == name and incoming["from"] == "visitor"
    accepted = await admin.call("call:accept", {"call_id": ring["call_id"]})
    assert accepted["ok"], accepted
    await caller.wait_for("call:accepted", lambda m: m["call_id"] == ring["call_id"])
    return caller, admin, ring["call_id"], cid, token


async def close_peers(*items: Any) -> None:
    for item in items:
        await item.close()


async def wait_system(server: Server, token: str, cid: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        found = await system_messages(server.url, token, cid)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.1)  # each poll opens a socket: don't hammer the server


# The echo peer -------------------------------------------------------------------------------


async def test_echo_peer_sends_our_tone_back(server: Server, private_net: str) -> None:
    caller, _, cid = await calling_visitor(server.url, "Eko")
    start = now()
    ring = await caller.call("call:ring", {"chat_id": cid, "echo": True})
    assert ring["ok"] and ring["mode"] == "echo", ring
    accepted = await caller.wait_for("call:accepted")
    assert accepted["mode"] == "echo" and accepted["initiator"] is True
    media = Media(caller, ring["call_id"], VISITOR_HZ, VISITOR_HZ)
    try:
        answer = await media.offer()
        assert answer["from"] == "server"
        assert f"{private_net} " in answer["sdp"], "the echo peer offers the namespace's address"
        heard = await media.hear()
        print(f"\necho: ring to own tone heard back {round((heard - start) * 1000)} ms")
        assert (await caller.call("call:end", {"call_id": ring["call_id"]}))["ok"]
        ended = await caller.wait_for("call:ended")
        assert ended["reason"] == "hangup" and ended["by"] == "visitor"
    finally:
        await close_peers(media, caller)


def test_relayed_audio_goes_on_as_it_arrives() -> None:
    """The echo and relay hops hand each audio packet on at once (aiortc's own buffer held
    four frames, 80 ms, before the first sound); late and repeated packets are dropped, and
    a lost one does not stall the ones after it. Sequence numbers wrap at 65536."""
    from aiortc.rtp import RtpPacket

    from media_relay.tracks import ArrivalOrderBuffer

    def packet(number: int) -> RtpPacket:
        p = RtpPacket(payload_type=111, sequence_number=number % 65536, timestamp=960 * number)
        p._data = bytes([number % 256])  # type: ignore[attr-defined]
        return p

    buffer = ArrivalOrderBuffer()
    out = []
    for number in (65534, 65535, 65536, 65535, 65538, 65537, 65539, 65539):
        _, frame = buffer.add(packet(number))
        out.append(None if frame is None else frame.timestamp // 960)
    # 65537 is lost (arrives after 65538): dropped, as are the repeats.
    assert out == [65534, 65535, 65536, None, 65538, None, 65539, None]


async def test_the_echo_peer_hands_each_packet_back_alone(server: Server) -> None:
    """The echo leg's receiver really goes packet by packet (the buffer above is wired in):
    one Opus packet sent comes straight back, byte for byte, before the next one is sent.
    aiortc's own buffer held each until three more had come, so a ping never came back."""
    from media_relay.tracks import PacketTrack, tap_opus

    caller, _, cid = await calling_visitor(server.url, "Paket")
    ring = await caller.call("call:ring", {"chat_id": cid, "echo": True})
    assert ring["ok"], ring
    await caller.wait_for("call:accepted")
    sent = PacketTrack()  # pre-encoded packets: the payloads go out as they are
    media = Media(caller, ring["call_id"], VISITOR_HZ, VISITOR_HZ, tone=sent)
    tapped: asyncio.Future[PacketTrack | None] = asyncio.get_running_loop().create_future()

    @media.pc.on("track")
    def tap(track: Any) -> None:
        # Our own receiver goes packet by packet too, and hands us the payloads undecoded.
        if track.kind == "audio" and not tapped.done():
            tapped.set_result(tap_opus(media.pc, track))

    timestamps = iter(range(0, 960 * 10_000, 960))

    async def ping(payload: bytes, wait: float) -> bytes:
        sent.push(payload, next(timestamps))
        assert back is not None
        return bytes(await asyncio.wait_for(back.recv(), wait))

    try:
        await media.offer()
        back = await asyncio.wait_for(tapped, 10)
        assert back is not None, "aiortc no longer lets its receivers be tapped"
        # The first packets can be lost while the connection comes up: resend until one is back.
        for _ in range(50):
            with contextlib.suppress(TimeoutError):
                assert await ping(b"warm-up", 0.2) == b"warm-up"
                break
        else:
            pytest.fail("no packet came back from the echo peer")
        for number in range(5):
            payload = f"ping {number}".encode()
            got = await ping(payload, 5)
            while got == b"warm-up":  # one that was slower than 0.2 s
                got = bytes(await asyncio.wait_for(back.recv(), 5))
            assert got == payload
    finally:
        await close_peers(media, caller)


async def offers_without_call_media() -> dict[str, str]:
    """Offers that begin with `v=0` but cannot carry a call, made from a real aiortc offer."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.createDataChannel("chat")
    await pc.setLocalDescription(await pc.createOffer())
    data_only = pc.localDescription.sdp
    await pc.close()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio")
    await pc.setLocalDescription(await pc.createOffer())
    audio = pc.localDescription.sdp
    await pc.close()
    return {
        "not sdp": "v=0\r\ngarbage\r\n",
        "session only": audio.split("m=audio")[0],
        "data channel only": data_only,
        "no fingerprint": re.sub(r"a=fingerprint:[^\r\n]*\r\n", "", audio),
        "no ice credentials": re.sub(r"a=ice-(ufrag|pwd):[^\r\n]*\r\n", "", audio),
    }


async def test_an_offer_without_call_media_is_refused_at_once(
    server: Server, admin_token: str
) -> None:
    """Answered by the server (echo) or forwarded (P2P), such an offer is `bad_signal` at once
    with a translated message, and the call goes on: a good offer afterwards is heard."""
    bad_offers = await offers_without_call_media()
    caller, _, cid = await calling_visitor(server.url, "Boş")
    ring = await caller.call("call:ring", {"chat_id": cid, "echo": True})
    assert ring["ok"], ring
    media = Media(caller, ring["call_id"], VISITOR_HZ, VISITOR_HZ)
    try:
        for name, sdp in bad_offers.items():
            errors = len(caller.events["call:error"])
            refused = await caller.call("rtc:offer", {"call_id": ring["call_id"], "sdp": sdp})
            assert refused == {
                "ok": False,
                "error": "bad_signal",
                "message": "Aramanın bağlantı verisi reddedildi.",
            }, (name, refused)
            assert len(caller.events["call:error"]) == errors + 1, name
        assert caller.events["rtc:answer"] == [], "nothing was answered"
        await media.offer()
        await media.hear()
        await caller.call("call:end", {"call_id": ring["call_id"]})
    finally:
        await close_peers(media, caller)
    caller, admin, call_id, _, _ = await answered_call(server, admin_token, "Boş İki")
    try:
        for name, sdp in bad_offers.items():
            refused = await caller.call("rtc:offer", {"call_id": call_id, "sdp": sdp})
            assert refused["ok"] is False and refused["error"] == "bad_signal", (name, refused)
            refused = await admin.call("rtc:answer", {"call_id": call_id, "sdp": sdp})
            assert refused["ok"] is False and refused["error"] == "bad_signal", (name, refused)
        assert admin.events["rtc:offer"] == [] and caller.events["rtc:answer"] == []
        assert (await caller.call("call:end", {"call_id": call_id}))["ok"]
    finally:
        await close_peers(caller, admin)


async def test_visitors_echo_calls_are_rate_limited(server: Server) -> None:
    """The echo peer costs CPU: ECHO_PER_HOUR (10) test calls per visitor, then a clear no."""
    caller, _, cid = await calling_visitor(server.url, "Sınır")
    try:
        for _ in range(10):
            ring = await caller.call("call:ring", {"chat_id": cid, "echo": True})
            assert ring["ok"], ring
            assert (await caller.call("call:end", {"call_id": ring["call_id"]}))["ok"]
        refused = await caller.call("call:ring", {"chat_id": cid, "echo": True})
        assert refused["ok"] is False and refused["error"] == "too_many_calls"
        assert "Çok fazla arama" in refused["message"]
    finally:
        await caller.close()


async def test_echo_calls_leave_no_message(server: Server) -> None:
    caller, token, cid = await calling_visitor(server.url, "Sessiz")
    ring = await caller.call("call:ring", {"chat_id": cid, "echo": True})
    assert ring["ok"]
    await caller.call("call:end", {"call_id": ring["call_id"]})
    await caller.wait_for("call:ended")
    await caller.close()
    assert await system_messages(server.url, token, cid) == []


# Calls between the visitor and the operator --------------------------------------------------


async def test_p2p_call_both_hear_and_leave_the_duration(
    server: Server, admin_token: str, fake: FakeTelegram
) -> None:
    caller, admin, call_id, cid, token = await answered_call(server, admin_token, "Ayşe")
    # The operator's Telegram rang (through the outbox) with the conversation's tag; other
    # tests' visitors ring through the same fake Bot API.
    ringing, tagged = with_text("arıyor"), with_text(f"[CID: {cid}]")
    await fake.wait_for_sent(lambda m: ringing(m) and tagged(m))
    accepted = caller.events["call:accepted"][0]
    assert accepted["mode"] == "p2p" and accepted["initiator"] is True
    visitor_media = Media(caller, call_id, VISITOR_HZ, ADMIN_HZ)
    admin_media = Media(admin, call_id, ADMIN_HZ, VISITOR_HZ)
    try:
        start = now()
        answering = admin_media.answer()
        await asyncio.gather(visitor_media.offer(), answering)
        heard = await asyncio.gather(visitor_media.hear(), admin_media.hear())
        print(f"\np2p: offer to both tones heard {round((max(heard) - start) * 1000)} ms")
        assert caller.events["rtc:answer"][0]["from"] == "admin", "P2P: the operator answered"
        await asyncio.sleep(1.2)
        assert (await admin.call("call:end", {"call_id": call_id}))["ok"]
        for side in (caller, admin):
            ended = await side.wait_for("call:ended", lambda m: m["call_id"] == call_id)
            assert ended["reason"] == "hangup" and ended["by"] == "admin"
            assert ended["duration"] >= 1
    finally:
        await close_peers(visitor_media, admin_media, caller, admin)
    messages = await wait_system(server, token, cid, 1)
    assert len(messages) == 1, messages
    assert messages[0]["type"] == "call"
    assert messages[0]["text"].startswith("📞 Arama, 0:0"), messages[0]
    assert "Arama, 0:0" in messages[0]["html"]


async def test_relay_fallback_carries_audio_both_ways(server: Server, admin_token: str) -> None:
    caller, admin, call_id, _cid, _ = await answered_call(server, admin_token, "Röle")
    try:
        # P2P did not connect (the pages decide): either side asks for the relay.
        moved = await caller.call("call:relay", {"call_id": call_id})
        assert moved == {"ok": True, "mode": "relay"}
        for side in (caller, admin):
            relay = await side.wait_for("call:relay", lambda m: m["call_id"] == call_id)
            assert relay["mode"] == "relay" and relay["ice_servers"]
        visitor_media = Media(caller, call_id, VISITOR_HZ, ADMIN_HZ)
        admin_media = Media(admin, call_id, ADMIN_HZ, VISITOR_HZ)
        try:
            start = now()
            answers = await asyncio.gather(visitor_media.offer(), admin_media.offer())
            assert all(a["from"] == "server" for a in answers)
            heard = await asyncio.gather(visitor_media.hear(), admin_media.hear())
            print(f"\nrelay: offers to both tones heard {round((max(heard) - start) * 1000)} ms")
        finally:
            await close_peers(visitor_media, admin_media)
        await caller.call("call:end", {"call_id": call_id})
        await admin.wait_for("call:ended", lambda m: m["call_id"] == call_id)
    finally:
        await close_peers(caller, admin)


async def test_relay_cap_says_busy(server: Server, admin_token: str) -> None:
    """CALL_RELAY_MAX=1: one relayed call fills the relay; the next one is told it is busy, and
    its conversation records a call that could not connect, not one that lasted 0:00."""
    first, admin_a, first_id, _, _ = await answered_call(server, admin_token, "Bir")
    assert (await first.call("call:relay", {"call_id": first_id}))["ok"]
    # A second operator page (the panel may be shared) answers a second visitor.
    second, admin_b, second_id, second_cid, second_token = await answered_call(
        server, admin_token, "İki"
    )
    assert admin_a.events["call:incoming"][-1]["call_id"] == first_id, "a busy page is not rung"
    try:
        refused = await second.call("call:relay", {"call_id": second_id})
        assert refused["ok"] is False and refused["error"] == "relay_busy"
        assert "dolu" in refused["message"]
        for side in (second, admin_b):
            ended = await side.wait_for("call:ended", lambda m: m["call_id"] == second_id)
            assert ended["reason"] == "relay_busy"
        messages = await wait_system(server, second_token, second_cid, 1)
        assert [m["text"] for m in messages] == ["📞 Arama bağlanamadı (aktarıcı dolu)"], messages
        assert "aktarıcı dolu" in messages[0]["html"] and "0:00" not in messages[0]["html"]
        await first.call("call:end", {"call_id": first_id})
        await admin_a.wait_for("call:ended", lambda m: m["call_id"] == first_id)
        # After the first call ended its slot is free again.
        again, admin_c, again_id, _, _ = await answered_call(server, admin_token, "Dört")
        assert (await again.call("call:relay", {"call_id": again_id}))["ok"]
        await again.call("call:end", {"call_id": again_id})
        await close_peers(again, admin_c)
    finally:
        await close_peers(first, second, admin_a, admin_b)


async def test_busy_operator_means_busy(server: Server, admin_token: str) -> None:
    caller, admin, call_id, _, _ = await answered_call(server, admin_token, "Meşgul")
    other, token, cid = await calling_visitor(server.url, "Bekleyen")
    try:
        refused = await other.call("call:ring", {"chat_id": cid})
        assert refused["ok"] is False and refused["error"] == "operator_busy"
        assert "başka bir görüşmede" in refused["message"]
        assert admin.events["call:incoming"][-1]["call_id"] == call_id
        # The operator's page in a call cannot start another one either.
        assert (await admin.call("call:ring", {"chat_id": cid}))["error"] == "already_in_call"
    finally:
        await caller.call("call:end", {"call_id": call_id})
        await close_peers(caller, admin, other)
    texts = [m["text"] for m in await wait_system(server, token, cid, 1)]
    assert texts == ["📞 Cevapsız arama (meşgul)"], texts


async def test_decline_timeout_and_cancel_leave_messages(server: Server, admin_token: str) -> None:
    admin = await call_peer(server.url, "admin", admin_token)
    caller, token, cid = await calling_visitor(server.url, "Reddet")
    try:
        ring = await caller.call("call:ring", {"chat_id": cid})
        await admin.wait_for("call:incoming", lambda m: m["call_id"] == ring["call_id"])
        assert (await admin.call("call:decline", {"call_id": ring["call_id"]}))["ok"]
        declined = await caller.wait_for("call:declined")
        assert declined["call_id"] == ring["call_id"]
        ended = await caller.wait_for("call:ended", lambda m: m["call_id"] == ring["call_id"])
        assert ended["reason"] == "declined"

        # Nobody answers: CALL_RING_SECONDS=5, then both sides stop ringing.
        ring = await caller.call("call:ring", {"chat_id": cid})
        assert ring["ring_seconds"] == 5
        started = now()
        for side in (caller, admin):
            ended = await side.wait_for(
                "call:ended", lambda m: m["call_id"] == ring["call_id"], timeout=10
            )
            assert ended["reason"] == "timeout"
        assert 4.5 <= now() - started <= 9

        # The caller gives up while it rings.
        ring = await caller.call("call:ring", {"chat_id": cid})
        assert (await caller.call("call:end", {"call_id": ring["call_id"]}))["ok"]
        ended = await admin.wait_for("call:ended", lambda m: m["call_id"] == ring["call_id"])
        assert ended["reason"] == "hangup"
    finally:
        await close_peers(caller, admin)
    texts = [m["text"] for m in await wait_system(server, token, cid, 3)]
    assert texts == ["📞 Reddedilen arama", "📞 Cevapsız arama", "📞 Cevapsız arama"], texts


async def test_operator_calls_the_visitor(server: Server, admin_token: str) -> None:
    admin = await call_peer(server.url, "admin", admin_token)
    callee, _, cid = await calling_visitor(server.url, "Aranan")
    second_tab = await call_peer(server.url, "visitor", callee.cookie.split("=", 1)[1])
    try:
        ring = await admin.call("call:ring", {"chat_id": cid})
        assert ring["ok"] and ring["from"] == "admin"
        for tab in (callee, second_tab):
            incoming = await tab.wait_for("call:incoming")
            assert incoming["from"] == "admin" and incoming["name"] == "Destek"
        # A page reloaded while it rings learns of the call when it joins.
        reloaded = await call_peer(server.url, "visitor", callee.cookie.split("=", 1)[1])
        joined = await reloaded.call("join", {"chat_id": cid})
        assert joined["call"]["call_id"] == ring["call_id"] and joined["call"]["state"] == "ringing"
        await reloaded.close()
        assert (await callee.call("call:accept", {"call_id": ring["call_id"]}))["ok"]
        # The other tab stops ringing; only the answering tab is in the call.
        other = await second_tab.wait_for("call:ended")
        assert other["reason"] == "elsewhere"
        late = await second_tab.call("call:accept", {"call_id": ring["call_id"]})
        assert late["ok"] is False and late["error"] == "call_gone"
        accepted = await admin.wait_for("call:accepted")
        assert accepted["initiator"] is True and accepted["role"] == "admin"
        # A page that closes ends the call for the other side.
        await callee.close()
        ended = await admin.wait_for("call:ended", lambda m: m["call_id"] == ring["call_id"])
        assert ended["reason"] == "disconnected" and ended["by"] == "visitor"
    finally:
        await close_peers(admin, second_tab)


async def test_calling_an_absent_visitor_fails_clearly(server: Server, admin_token: str) -> None:
    _token, cid = await start_visitor(server.url, "Yok")
    admin = await call_peer(server.url, "admin", admin_token)
    try:
        refused = await admin.call("call:ring", {"chat_id": cid})
        assert refused["ok"] is False and refused["error"] == "callee_offline"
        assert "sayfada değil" in refused["message"]
    finally:
        await admin.close()


@pytest.mark.postgres
async def test_a_call_on_postgresql_leaves_its_message(
    private_net: str, silent_stun: str, tmp_path: Path
) -> None:
    """The same call, with the server on PostgreSQL (reached from inside the namespace)."""
    url, name = await create_pg_database()
    server = Server(
        database_url=url, workdir=tmp_path, env_extra=call_env(silent_stun, SELFTEST_SKIP="calls")
    )
    await server.start()
    try:
        token = await admin_login(server)
        caller, admin, call_id, cid, visitor_token = await answered_call(server, token, "Pg")
        visitor_media = Media(caller, call_id, VISITOR_HZ, ADMIN_HZ)
        admin_media = Media(admin, call_id, ADMIN_HZ, VISITOR_HZ)
        try:
            await asyncio.gather(visitor_media.offer(), admin_media.answer())
            await asyncio.gather(visitor_media.hear(), admin_media.hear())
            await caller.call("call:end", {"call_id": call_id})
            await admin.wait_for("call:ended", lambda m: m["call_id"] == call_id)
        finally:
            await close_peers(visitor_media, admin_media, caller, admin)
        messages = await wait_system(server, visitor_token, cid, 1)
        assert len(messages) == 1 and messages[0]["text"].startswith("📞 Arama, 0:0"), messages
    finally:
        server.stop()
        await drop_pg_database(name)


async def leg_connected(media: Media, timeout: float = 10) -> None:
    """Until the party's own peer connection (its leg to the server) is connected."""
    deadline = time.monotonic() + timeout
    while media.pc.connectionState != "connected":
        assert time.monotonic() < deadline, f"leg still {media.pc.connectionState}"
        await asyncio.sleep(0.02)


def told_active(*peers: Peer) -> list[tuple[str, Any]]:
    """Every event a party got that called the call active or connected."""
    return [
        (name, item)
        for peer in peers
        for name, items in peer.events.items()
        for item in items
        if name == "call:connected" or (isinstance(item, dict) and item.get("state") == "active")
    ]


async def test_a_relayed_call_is_active_once_both_legs_connect(
    server: Server, admin_token: str
) -> None:
    """The visitor's leg to the relay connecting is not the call connecting: only when the
    operator's leg connects too are both told, and the duration counts from then."""
    caller, admin, call_id, cid, token = await answered_call(server, admin_token, "İkiBacak")
    visitor_media = Media(caller, call_id, VISITOR_HZ, ADMIN_HZ)
    admin_media = Media(admin, call_id, ADMIN_HZ, VISITOR_HZ)
    try:
        assert (await caller.call("call:relay", {"call_id": call_id}))["ok"]
        await admin.wait_for("call:relay", lambda m: m["call_id"] == call_id)
        await visitor_media.offer()
        await leg_connected(visitor_media)
        joined = await caller.call("join", {"chat_id": cid})
        assert joined["call"]["state"] == "connecting", joined
        assert told_active(caller, admin) == [], "one leg is not a connected call"
        start = now()
        await admin_media.offer()
        for side in (caller, admin):
            connected = await side.wait_for("call:connected", lambda m: m["call_id"] == call_id)
            assert connected["state"] == "active" and connected["mode"] == "relay"
        heard = await asyncio.gather(visitor_media.hear(), admin_media.hear())
        print(
            f"\nrelay: second leg's offer to both tones heard {round((max(heard) - start) * 1000)} ms"
        )
        assert (await caller.call("join", {"chat_id": cid}))["call"]["state"] == "active"
        await caller.call("call:end", {"call_id": call_id})
        ended = await admin.wait_for("call:ended", lambda m: m["call_id"] == call_id)
        assert ended["reason"] == "hangup"
    finally:
        await close_peers(visitor_media, admin_media, caller, admin)
    texts = [m["text"] for m in await wait_system(server, token, cid, 1)]
    assert len(texts) == 1 and texts[0].startswith("📞 Arama, 0:0"), texts


async def test_a_relayed_call_whose_other_leg_never_connects_could_not_connect(
    server: Server, admin_token: str
) -> None:
    """The visitor reaches the relay, the operator's leg sends its offer and then never answers
    ICE: nobody is ever told the call is active, the server ends it at the media deadline, and
    the chat records a call that could not connect, with no duration."""
    caller, admin, call_id, cid, token = await answered_call(server, admin_token, "TekBacak")
    visitor_media = Media(caller, call_id, VISITOR_HZ, ADMIN_HZ)
    dead = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        assert (await caller.call("call:relay", {"call_id": call_id}))["ok"]
        moved_at = now()
        await admin.wait_for("call:relay", lambda m: m["call_id"] == call_id)
        await visitor_media.offer()
        await leg_connected(visitor_media)
        dead.addTransceiver("audio", direction="sendrecv")
        await dead.setLocalDescription(await dead.createOffer())
        offer = {"call_id": call_id, "type": "offer", "sdp": dead.localDescription.sdp}
        assert (await admin.call("rtc:offer", offer))["ok"]
        await dead.close()  # its ICE never answers the relay's checks
        # The server's media deadline (MEDIA_GRACE, 15 s from the move to the relay) ends it.
        for side in (caller, admin):
            ended = await side.wait_for("call:ended", lambda m: m["call_id"] == call_id, timeout=40)
            assert ended["reason"] == "media_failed" and ended["duration"] == 0, ended
        print(f"\nrelay with one dead leg: ended {now() - moved_at:.1f} s after the move")
        assert told_active(caller, admin) == [], told_active(caller, admin)
    finally:
        await close_peers(visitor_media, dead, caller, admin)
    messages = await wait_system(server, token, cid, 1)
    assert [m["text"] for m in messages] == ["📞 Arama bağlanamadı"], messages
    assert "bağlanamadı" in messages[0]["html"] and "Arama," not in messages[0]["html"]


async def test_a_p2p_call_is_active_when_a_page_says_its_connection_is_up(
    server: Server, admin_token: str
) -> None:
    caller, admin, call_id, cid, _ = await answered_call(server, admin_token, "Doğrudan")
    try:
        assert caller.events["call:accepted"][0]["state"] == "connecting"
        assert (await caller.call("join", {"chat_id": cid}))["call"]["state"] == "connecting"
        reported = await admin.call("call:connected", {"call_id": call_id})
        assert reported == {"ok": True, "state": "active"}
        for side in (caller, admin):
            told = await side.wait_for("call:connected", lambda m: m["call_id"] == call_id)
            assert told["mode"] == "p2p" and told["state"] == "active"
        assert (await caller.call("call:connected", {"call_id": call_id}))["ok"]
        assert len(caller.events["call:connected"]) == 1, "told once"
    finally:
        await caller.call("call:end", {"call_id": call_id})
        await close_peers(caller, admin)


async def relay_figures(server: Server, admin_token: str) -> tuple[float, float]:
    """The relay's (relayed calls, peer connections) from `/metrics`."""
    status, body = await call(server, "GET", "/metrics", {"Cookie": f"sohbet_admin={admin_token}"})
    assert status == 200, body
    figures = dict(
        line.rsplit(" ", 1) for line in body.splitlines() if line and not line.startswith("#")
    )
    return (
        float(figures["sohbet_relayed_calls"]),
        float(figures["sohbet_relay_peer_connections"]),
    )


class RelayLeg(Media):
    """A page's relay leg opened alongside its P2P connection (`rtc:offer {to: "server"}`)."""

    async def _send_description(self) -> None:
        local = self.pc.localDescription
        assert local is not None
        body = {"call_id": self.call_id, "type": "offer", "sdp": local.sdp, "to": "server"}
        ack = await self.peer.call("rtc:offer", body)
        assert ack["ok"], ack


async def test_the_relay_prepared_alongside_p2p_takes_the_call_only_if_first(
    server: Server, admin_token: str
) -> None:
    """A P2P call whose page opened a relay leg stays direct when P2P connects first (the
    leg's relay slot is freed); one whose two relay legs connect first moves to the relay."""
    caller, admin, call_id, _cid, _ = await answered_call(server, admin_token, "Yanyana")
    leg = RelayLeg(caller, call_id, VISITOR_HZ, ADMIN_HZ)
    try:
        assert caller.events["call:accepted"][0]["relay_after_ms"] < int(
            call_env("")["CALL_P2P_TIMEOUT_MS"]
        )
        calls_before, pcs_before = await relay_figures(server, admin_token)
        assert (await leg.offer())["from"] == "server"
        assert await relay_figures(server, admin_token) == (calls_before + 1, pcs_before + 1)
        assert (await admin.call("call:connected", {"call_id": call_id}))["state"] == "active"
        for side in (caller, admin):
            told = await side.wait_for("call:connected", lambda m: m["call_id"] == call_id)
            assert told["mode"] == "p2p", told
        # Direct won while the call goes on: its relay leg and slot are gone at once.
        assert await relay_figures(server, admin_token) == (calls_before, pcs_before)
        await caller.call("call:end", {"call_id": call_id})
    finally:
        await close_peers(leg, caller, admin)
    # The relay (one slot in these tests) was freed: the next call's legs take it and win.
    caller, admin, call_id, _cid, _ = await answered_call(server, admin_token, "Röle Önde")
    visitor_leg = RelayLeg(caller, call_id, VISITOR_HZ, ADMIN_HZ)
    admin_leg = RelayLeg(admin, call_id, ADMIN_HZ, VISITOR_HZ)
    try:
        start = now()
        await asyncio.gather(visitor_leg.offer(), admin_leg.offer())
        for side in (caller, admin):
            told = await side.wait_for("call:connected", lambda m: m["call_id"] == call_id)
            assert told["mode"] == "relay" and told["state"] == "active", told
        heard = await asyncio.gather(visitor_leg.hear(), admin_leg.hear())
        print(
            f"\nrelay alongside: offers to both tones heard {round((max(heard) - start) * 1000)} ms"
        )
        # P2P coming up late changes nothing: the call stays on the relay.
        assert (await caller.call("call:connected", {"call_id": call_id}))["state"] == "active"
        assert len(caller.events["call:connected"]) == 1
        await caller.call("call:end", {"call_id": call_id})
        ended = await admin.wait_for("call:ended", lambda m: m["call_id"] == call_id)
        assert ended["mode"] == "relay"
    finally:
        await close_peers(visitor_leg, admin_leg, caller, admin)


# Who may signal, and what ----------------------------------------------------------------------


async def test_only_participants_signal_and_bad_input_is_refused(
    server: Server, admin_token: str
) -> None:
    caller, admin, call_id, cid, _ = await answered_call(server, admin_token, "Güvenli")
    stranger, _, _other_cid = await calling_visitor(server.url, "Yabancı")
    try:
        # Someone else's conversation looks like one that does not exist.
        assert (await stranger.call("join", {"chat_id": cid}))["error"] == "bad_chat"
        assert (await stranger.call("call:ring", {"chat_id": cid}))["error"] == "bad_chat"
        for event in ("rtc:offer", "rtc:answer", "rtc:candidate", "call:end", "call:relay"):
            refused = await stranger.call(event, {"call_id": call_id, "sdp": "v=0\r\n"})
            assert refused["ok"] is False and refused["error"] == "call_gone", (event, refused)
        assert (await stranger.call("call:accept", {"call_id": call_id}))["error"] == "call_gone"
        assert stranger.events["rtc:offer"] == [] and admin.events["rtc:offer"] == []
        # Malformed signalling gets an error, never a crash.
        for bad in (
            "not a dict",
            {"call_id": call_id, "sdp": 42},
            {"call_id": call_id, "sdp": "garbage"},
            {"call_id": call_id, "sdp": "v=0\r\n" + "a" * 20_000},
        ):
            refused = await caller.call("rtc:offer", bad)
            assert refused["ok"] is False and refused["error"] in {"bad_payload", "bad_signal"}
        for bad_candidate in ({"candidate": 5}, {"candidate": "x" * 2000}, [1, 2]):
            refused = await caller.call(
                "rtc:candidate", {"call_id": call_id, "candidate": bad_candidate}
            )
            assert refused["error"] == "bad_signal", refused
        assert (await caller.call("call:accept", {"call_id": call_id}))["error"] == "call_gone"
        # The call survived all that.
        assert (await caller.call("rtc:candidate", {"call_id": call_id, "candidate": None}))["ok"]
    finally:
        await caller.call("call:end", {"call_id": call_id})
        await close_peers(caller, admin, stranger)


async def test_signalling_floods_are_cut(server: Server) -> None:
    caller, _, cid = await calling_visitor(server.url, "Sel")
    try:
        replies = [await caller.call("join", {"chat_id": cid}) for _ in range(210)]
        refused = [r for r in replies if not r["ok"]]
        assert refused and refused[0]["error"] == "rate_limited"
    finally:
        await caller.close()


async def test_an_operator_whose_session_ran_out_cannot_signal(
    server: Server, fake: FakeTelegram
) -> None:
    """The session ends while the `/call` socket is open: its next event is refused and the
    socket closed (as on `/chat`), and nobody is rung."""
    token = await login_via_telegram(server, fake)
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    await execute_sql(
        server,
        f"UPDATE admin_session SET expires_at = '{soon:%Y-%m-%d %H:%M:%S}+00:00' "
        f"WHERE token_hash = '{token_hash(token)}'",
    )
    admin = await call_peer(server.url, "admin", token)
    callee, _, cid = await calling_visitor(server.url, "Süre")
    try:
        assert (await admin.call("join", {"chat_id": cid}))["ok"], "valid until it runs out"
        await asyncio.sleep((soon - datetime.now(UTC)).total_seconds() + 0.5)
        await admin.sio.emit("call:ring", {"chat_id": cid}, namespace="/call")
        deadline = time.monotonic() + 10
        while "/call" in admin.sio.namespaces and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert "/call" not in admin.sio.namespaces, "the expired operator's socket was closed"
        assert callee.events["call:incoming"] == []
    finally:
        await close_peers(admin, callee)


async def test_unknown_sockets_are_refused(server: Server) -> None:
    client = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(server.url, namespaces=["/call"], transports=["websocket"])


# ICE servers --------------------------------------------------------------------------------


async def test_ice_servers_and_short_lived_turn_credentials(
    server: Server, admin_token: str, silent_stun: str
) -> None:
    caller, admin, call_id, cid, _ = await answered_call(server, admin_token, "Turn")
    try:
        for side, role in ((caller, "visitor"), (admin, "admin")):
            servers = side.events["call:accepted"][-1]["ice_servers"]
            assert servers[0] == {"urls": [silent_stun]}
            turn = servers[1]
            assert turn["urls"] == ["turn:turn.sohbet.test:3478?transport=udp"]
            expiry, user = turn["username"].split(":", 1)
            assert user == f"{cid}-{role}"
            assert 3500 < int(expiry) - time.time() <= 3600
            expected = hmac.new(TURN_SECRET.encode(), turn["username"].encode(), hashlib.sha1)
            assert turn["credential"] == base64.b64encode(expected.digest()).decode()
        # Only participants get them: joining tells nothing about ICE.
        joined = await admin.call("join", {"chat_id": cid})
        assert "ice_servers" not in joined
    finally:
        await caller.call("call:end", {"call_id": call_id})
        await close_peers(caller, admin)


# Test & Repair ----------------------------------------------------------------------------------


async def api(server: Server, admin_token: str, path: str) -> Any:
    """POST to the admin API as the operator (cookie and CSRF header)."""
    csrf = await admin_csrf(server.url, admin_token)
    status, body = await call(
        server, "POST", path, {"Cookie": f"sohbet_admin={admin_token}", "X-CSRF-Token": csrf}
    )
    assert status == 200, body
    return body


async def test_selftest_calls_the_echo_peer(server: Server, admin_token: str) -> None:
    """The echo call works; this server's TURN URL names a host that does not exist, and the
    check says so (a real TURN server passes: `..._allocates_on_the_turn_server`)."""
    report = await api(server, admin_token, "/api/test/run")
    calls = next(c for c in report["checks"] if c["name"] == "calls")
    assert "yankı" in calls["detail"] and " ms" in calls["detail"], calls
    assert calls["status"] == "fail", calls
    assert "TURN ayırması başarısız: turn:turn.sohbet.test:3478" in calls["detail"], calls
    print("\nself-test Calls:", calls["detail"])


async def test_selftest_fails_clearly_without_the_echo_peer(
    private_net: str, silent_stun: str, tmp_path: Path
) -> None:
    server = Server(
        database_url=f"sqlite://{tmp_path / 'sohbet.db'}",
        workdir=tmp_path,
        env_extra=call_env(silent_stun, ECHO_PEER="0"),
    )
    await server.start()
    try:
        token = await admin_login(server)
        report = await api(server, token, "/api/test/run")
    finally:
        server.stop()
    calls = next(c for c in report["checks"] if c["name"] == "calls")
    assert calls["status"] == "fail", calls
    assert "kapalı" in calls["detail"], calls
    assert report["ok"] is False


async def test_repair_ends_abandoned_calls_once(server: Server, admin_token: str) -> None:
    """An echo call whose page never sent its offer holds a slot until Repair ends it."""
    caller, _, cid = await calling_visitor(server.url, "Terk")
    try:
        ring = await caller.call("call:ring", {"chat_id": cid, "echo": True})
        assert ring["ok"]
        first = await api(server, admin_token, "/api/repair/run")
        assert first["counts"]["calls"] == 0, "a fresh call is not abandoned"
        await asyncio.sleep(16)  # MEDIA_GRACE (15 s) without media
        second = await api(server, admin_token, "/api/repair/run")
        assert second["counts"]["calls"] == 1, second
        ended = await caller.wait_for("call:ended")
        assert ended["reason"] == "abandoned"
        third = await api(server, admin_token, "/api/repair/run")
        assert third["counts"]["calls"] == 0, "idempotent"
        assert third["ok"] is True
    finally:
        await caller.close()


# Through a TURN server: the visitor's network drops UDP ----------------------------------------

NO_TURN = turn.unavailable()


@pytest.fixture(scope="module")
def udp_blocked(private_net: str) -> Iterator[turn.Topology]:
    with turn.udp_blocked_visitor() as topology:
        yield topology


@pytest.fixture(scope="module")
def coturn(
    udp_blocked: turn.Topology, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[turn.Coturn]:
    with turn.coturn(tmp_path_factory.mktemp("coturn"), TURN_SECRET) as running:
        yield running


@pytest.fixture(scope="module")
async def turn_server(
    coturn: turn.Coturn, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Server]:
    """A server whose only ICE server is coturn (TCP and TLS), with Sohbet's TURN REST
    credentials."""
    workdir = tmp_path_factory.mktemp("calls-turn")
    srv = Server(
        database_url=f"sqlite://{workdir / 'sohbet.db'}",
        workdir=workdir,
        env_extra={
            "ICE_SERVERS": "none",
            "TURN_URLS": f"{coturn.tcp_url} {coturn.tls_url}",
            "TURN_SECRET": TURN_SECRET,
            "CALL_RING_SECONDS": "5",
            "SELFTEST_SKIP": "",
            # The test's self-signed certificate stands in for a public CA's.
            "SSL_CERT_FILE": str(coturn.ca_file),
        },
    )
    await srv.start()
    yield srv
    srv.stop()


async def call_through_turn(
    server: Server,
    top: turn.Topology,
    coturn: turn.Coturn,
    scheme: str,
    transport: str,
    record_property: Any,
) -> None:
    """Ring, answer, and connect the visitor (no UDP) and the operator through the TURN URL of
    `scheme` that `call:accepted` names; both must hear each other. Prints and records (as
    `turn_<transport>_…_ms`) the milliseconds from the answer to both connected and to both
    tones heard."""
    admin_token = await admin_login(server)
    caller, admin, call_id, _cid, _ = await answered_call(server, admin_token, "Otel")
    accepted = caller.events["call:accepted"][0]
    assert accepted["mode"] == "p2p" and accepted["state"] == "connecting"
    (entry,) = accepted["ice_servers"]
    assert entry["urls"] == [coturn.tcp_url, coturn.tls_url] and ":" in entry["username"]
    answered_at = now()
    hz = (VISITOR_HZ, ADMIN_HZ)
    visitor_media, admin_media = turn.call_parties(top, caller, admin, call_id, hz, scheme)
    try:
        await asyncio.gather(visitor_media.offer(), admin_media.answer())
        # The visitor's only way out is its TURN allocation.
        assert "relay" in visitor_media.candidate_types(), visitor_media.pc.localDescription
        connected = await asyncio.wait_for(
            asyncio.gather(visitor_media.connected, admin_media.connected), 20
        )
        pair = visitor_media.pair()
        assert pair is not None and pair[0] == "relay", pair
        heard = await asyncio.gather(visitor_media.hear(), admin_media.hear())
        # The page says its connection is up: only now is the call active, for both sides.
        assert (await caller.call("call:connected", {"call_id": call_id}))["state"] == "active"
        await admin.wait_for("call:connected", lambda m: m["call_id"] == call_id)
        assert (await admin.call("call:end", {"call_id": call_id}))["ok"]
        await caller.wait_for("call:ended", lambda m: m["call_id"] == call_id)
    finally:
        await close_peers(visitor_media, admin_media, caller, admin)
    connect_ms = round((max(connected) - answered_at) * 1000)
    heard_ms = round((max(heard) - answered_at) * 1000)
    print(
        f"\nTURN/{transport.upper()}: answer to connected {connect_ms} ms, "
        f"to both tones heard {heard_ms} ms"
    )
    record_property(f"turn_{transport}_connected_ms", connect_ms)
    record_property(f"turn_{transport}_heard_ms", heard_ms)


@pytest.mark.skipif(NO_TURN is not None, reason=str(NO_TURN))
async def test_a_visitor_whose_network_drops_udp_calls_through_turn_over_tcp(
    turn_server: Server, udp_blocked: turn.Topology, coturn: turn.Coturn, record_property: Any
) -> None:
    """The visitor (no UDP in or out) and the operator (another network) connect through coturn
    over TCP with the credentials from `call:accepted`, and hear each other."""
    await call_through_turn(turn_server, udp_blocked, coturn, "turn:", "tcp", record_property)


@pytest.mark.skipif(NO_TURN is not None, reason=str(NO_TURN))
async def test_a_visitor_whose_network_drops_udp_calls_through_turns_on_443(
    turn_server: Server,
    udp_blocked: turn.Topology,
    coturn: turn.Coturn,
    record_property: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same through coturn's TLS listener on 443 (`turns:`), its certificate checked."""
    # The test's self-signed certificate stands in for a public CA's (OpenSSL reads this).
    monkeypatch.setenv("SSL_CERT_FILE", str(coturn.ca_file))
    await call_through_turn(turn_server, udp_blocked, coturn, "turns:", "tls", record_property)


@pytest.mark.skipif(NO_TURN is not None, reason=str(NO_TURN))
async def test_selftest_calls_allocates_on_the_turn_server(
    turn_server: Server, coturn: turn.Coturn
) -> None:
    """The Calls check takes a real allocation on each TURN URL, with Sohbet's credentials."""
    token = await admin_login(turn_server)
    report = await api(turn_server, token, "/api/test/run")
    calls = next(c for c in report["checks"] if c["name"] == "calls")
    assert calls["status"] == "pass", calls
    assert "yankı" in calls["detail"] and "TURN ayırması çalışıyor" in calls["detail"], calls
    for url in (coturn.tcp_url, coturn.tls_url):
        assert re.search(re.escape(url) + r" \(10\.77\.1\.1:\d+, \d+ ms\)", calls["detail"]), url
    print("\nself-test Calls:", calls["detail"])


# In the browser: Chromium pages call the echo peer and each other ---------------------------------


@pytest.fixture(scope="module")
async def chromium(
    private_net: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Browser]:
    tone = tone_wav(tmp_path_factory.mktemp("tone") / "tone.wav")
    args = [*CALL_CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={tone}"]
    async with launch_chromium(args) as browser:
        yield browser


async def call_page(browser: Browser, options: dict[str, Any]) -> tuple[Page, Watch]:
    context, page, watch = await open_page(browser, options)
    await context.grant_permissions(["microphone", "camera"])
    await context.add_init_script(CLICKED)
    return page, watch


async def both_on_the_conversation(
    visitor_page: Page, admin_page: Page, server: Server, admin_token: str, name: str
) -> None:
    """A visitor starts a chat and the operator opens it; returns once both can call."""
    cid = await start_chat(visitor_page, server.url, name)
    await sign_in_with(admin_page.context, server, admin_token)
    await admin_page.goto(server.url + f"/admin/c/{cid}")
    await expect(admin_page.locator("[data-call-chat]")).to_be_enabled()
    await expect(visitor_page.locator("#call-button")).to_be_enabled()


async def hears(page: Page, timeout_ms: int = 8000) -> dict[str, Any]:
    heard: dict[str, Any] = await page.evaluate(HEAR, timeout_ms)
    assert heard["rms"] > 0, "no sound arrived on the remote stream"
    return heard


async def setup_ms(page: Page, heard: dict[str, Any]) -> int:
    clicked = await page.evaluate("window.__callClickedAt")
    return round(heard["at"] - clicked)


@pytest.mark.browser
async def test_browser_visitor_tests_the_microphone_with_the_echo_peer(
    chromium: Browser, server: Server
) -> None:
    page, watch = await call_page(chromium, PHONE)
    try:
        await start_chat(page, server.url, "Mikrofon")
        test_button = page.locator("#call-test")
        await expect(test_button).to_be_visible()
        await test_button.click()
        call = page.locator("#call")
        await expect(call).to_have_attribute("data-mode", "echo")
        heard = await hears(page)
        await expect(call).to_have_attribute("data-state", "echo")
        print(f"\nbrowser -> echo: click to own sound back {await setup_ms(page, heard)} ms")
        await expect(page.locator("#call-quality-figures")).to_contain_text("ms", timeout=6000)
        await page.locator("#call-hangup").click()
        await expect(call).to_have_attribute("data-state", "ended")
        await expect(call).to_be_hidden(timeout=5000)
        watch.assert_clean()
    finally:
        await close_all(page)


@pytest.mark.browser
async def test_browser_visitor_and_operator_call_p2p(
    chromium: Browser, server: Server, admin_token: str
) -> None:
    visitor_page, visitor_watch = await call_page(chromium, PHONE)
    admin_page, admin_watch = await call_page(chromium, DESKTOP)
    try:
        cid = await start_chat(visitor_page, server.url, "Telefon")
        await sign_in_with(admin_page.context, server, admin_token)
        await admin_page.goto(server.url + "/admin")
        await expect(admin_page.locator(f"li.conv[data-chat-id='{cid}']")).to_be_visible()
        # The panel rings only once its /call socket is in (it then shows the mic test).
        await expect(admin_page.locator("#call-test")).to_be_visible()
        await expect(visitor_page.locator("#call-button")).to_be_enabled()
        await visitor_page.locator("#call-button").click()
        await expect(visitor_page.locator("#call")).to_have_attribute("data-state", "outgoing")
        # The panel rings: the incoming-call screen names the visitor.
        admin_call = admin_page.locator("#call")
        await expect(admin_call).to_have_attribute("data-state", "incoming")
        await expect(admin_page.locator("#call-name")).to_have_text("Telefon")
        await admin_page.locator("#call-accept").click()
        for page in (visitor_page, admin_page):
            await expect(page.locator("#call")).to_have_attribute("data-state", "active")
            await expect(page.locator("#call")).to_have_attribute("data-mode", "p2p")
        admin_heard: dict[str, Any]
        _, admin_heard = await asyncio.gather(hears(visitor_page), hears(admin_page))
        await assert_accessible(visitor_page, "call in progress, phone", "#call")
        await assert_accessible(admin_page, "call in progress, desktop", "#call")
        print(
            f"\nbrowser <-> browser P2P: accept to sound {await setup_ms(admin_page, admin_heard)} ms"
        )
        # The camera goes on during the call; the other side shows the video.
        await admin_page.locator("#call-camera").click()
        await expect(admin_page.locator("#call-local-video")).to_be_visible()
        await expect(visitor_page.locator("#call-remote-video")).to_be_visible()
        # Its frames arrive (the callee's camera goes out on the video transceiver the offer
        # negotiated, not on one of its own that was never negotiated).
        await visitor_page.wait_for_function(
            "() => document.getElementById('call-remote-video').videoWidth > 0", timeout=8000
        )
        await visitor_page.locator("#call-mute").click()
        await expect(visitor_page.locator("#call-mute")).to_have_attribute("aria-pressed", "true")
        await expect(visitor_page.locator("#call-timer")).not_to_have_text("0:00", timeout=3000)
        await visitor_page.locator("#call-hangup").click()
        await expect(admin_call).to_have_attribute("data-state", "ended")
        # Both conversations show the call with its duration.
        for page in (visitor_page, admin_page):
            if page is admin_page:
                await admin_page.goto(server.url + f"/admin/c/{cid}")
            await expect(page.locator("#messages li.msg--system").last).to_contain_text(
                "Arama, 0:0"
            )
        visitor_watch.assert_clean()
        admin_watch.assert_clean()
    finally:
        await close_all(visitor_page, admin_page)


@pytest.mark.browser
async def test_browser_call_falls_back_to_the_relay(
    chromium: Browser, server: Server, admin_token: str
) -> None:
    """P2P made to fail (the pages never see each other's ICE candidates): both sides move to
    the server's relay by themselves and hear each other through it."""
    visitor_page, _ = await call_page(chromium, PHONE)
    admin_page, _ = await call_page(chromium, DESKTOP)
    for page in (visitor_page, admin_page):
        await page.route_web_socket(re.compile(r".*/socket\.io/.*"), drop_peer_candidates)
    try:
        await both_on_the_conversation(visitor_page, admin_page, server, admin_token, "Röle")
        await admin_page.locator("[data-call-chat]").click()
        await expect(visitor_page.locator("#call")).to_have_attribute("data-state", "incoming")
        await visitor_page.locator("#call-accept").click()
        for page in (visitor_page, admin_page):
            await expect(page.locator("#call")).to_have_attribute(
                "data-mode", "relay", timeout=15000
            )
            await expect(page.locator("#call")).to_have_attribute("data-state", "active")
        # The relay was prepared alongside P2P: the P2P timeout was not waited out.
        p2p_timeout_ms = int(call_env("")["CALL_P2P_TIMEOUT_MS"])
        accept_to_connected = int(
            await visitor_page.locator("#call").get_attribute("data-setup-ms") or 0
        )
        print(f"\nbrowser <-> relay (P2P failing): accept to connected {accept_to_connected} ms")
        assert 0 < accept_to_connected < p2p_timeout_ms
        await asyncio.gather(hears(visitor_page), hears(admin_page))
        await expect(admin_page.locator(".call__via")).to_be_visible()
        await admin_page.locator("#call-hangup").click()
        await expect(visitor_page.locator("#call")).to_have_attribute("data-state", "ended")
    finally:
        await close_all(visitor_page, admin_page)


async def drop_peer_candidates(ws: WebSocketRoute) -> None:
    """Pass Socket.IO through, except what would let the two pages find each other directly."""
    server = ws.connect_to_server()

    def to_page(message: str | bytes) -> None:
        if isinstance(message, str) and message.startswith("42/call,"):
            event, *rest = json.loads(message[len("42/call,") :])
            body = rest[0] if rest else None
            if isinstance(body, dict) and body.get("from") in ("visitor", "admin"):
                if event == "rtc:candidate":
                    return
                if event in ("rtc:offer", "rtc:answer"):
                    body["sdp"] = "".join(
                        line for line in body["sdp"].splitlines(True) if "a=candidate" not in line
                    )
                    message = "42/call," + json.dumps([event, body])
        ws.send(message)

    server.on_message(to_page)
    ws.on_message(lambda message: server.send(message))


NO_WEBRTC = "delete window.RTCPeerConnection; delete window.webkitRTCPeerConnection;"


@pytest.mark.browser
async def test_browser_without_webrtc_says_so_instead_of_ringing(
    chromium: Browser, server: Server, admin_token: str
) -> None:
    """A browser without WebRTC never rings: the visitor reads why in their language, and the
    operator reads it in the conversation."""
    visitor_page, visitor_watch = await call_page(chromium, PHONE)
    admin_page, _ = await call_page(chromium, DESKTOP)
    await visitor_page.context.add_init_script(NO_WEBRTC)
    try:
        await both_on_the_conversation(
            visitor_page, admin_page, server, admin_token, "Eski Tarayıcı"
        )
        await visitor_page.locator("#call-button").click()
        call = visitor_page.locator("#call")
        await expect(call).to_have_attribute("data-state", "ended")
        await expect(visitor_page.locator("#call-ended-text")).to_have_text(
            "Tarayıcınız arama yapamıyor; bunun yerine sesli mesaj gönderin."
        )
        await expect(admin_page.locator("#messages li.msg--system").last).to_contain_text(
            "Arama başlatılamadı: ziyaretçinin tarayıcısı arama yapamıyor"
        )
        # It never rang: the panel's call screen stayed closed.
        assert await admin_page.locator("#call").get_attribute("data-state") in ("idle", None)
        assert await admin_page.locator("#call").is_hidden()
        # The operator calls back: the visitor's page says why at once instead of ringing.
        await admin_page.locator("[data-call-chat]").click()
        await expect(admin_page.locator("#call")).to_have_attribute("data-state", "ended")
        await expect(admin_page.locator("#call-ended-text")).to_have_text(
            "Karşı tarafın tarayıcısı arama yapamıyor."
        )
        assert visitor_watch.page_errors == []
    finally:
        await close_all(visitor_page, admin_page)


async def hold_connected(ws: WebSocketRoute, held: list[str], release: asyncio.Event) -> None:
    """Pass Socket.IO through, but hold the page's `call:connected` until `release` is set."""
    server = ws.connect_to_server()

    async def later(message: str) -> None:
        await release.wait()
        server.send(message)

    def to_server(message: str | bytes) -> None:
        if (
            isinstance(message, str)
            and message.startswith("42/call,")
            and '"call:connected"' in message
        ):
            held.append(message)
            asyncio.get_running_loop().create_task(later(message))
            return
        server.send(message)

    ws.on_message(to_server)
    server.on_message(lambda message: ws.send(message))


@pytest.mark.browser
async def test_browser_p2p_call_is_active_only_on_the_servers_word(
    chromium: Browser, server: Server, admin_token: str
) -> None:
    """The pages' P2P connection carries sound both ways, yet neither screen shows the call
    active until the server, told by a page, says `call:connected`."""
    visitor_page, visitor_watch = await call_page(chromium, PHONE)
    admin_page, admin_watch = await call_page(chromium, DESKTOP)
    held: list[str] = []
    release = asyncio.Event()
    for page in (visitor_page, admin_page):
        await page.route_web_socket(
            re.compile(r".*/socket\.io/.*"), lambda ws: hold_connected(ws, held, release)
        )
    try:
        await both_on_the_conversation(visitor_page, admin_page, server, admin_token, "Dürüst")
        await visitor_page.locator("#call-button").click()
        await expect(admin_page.locator("#call")).to_have_attribute("data-state", "incoming")
        await admin_page.locator("#call-accept").click()
        await asyncio.gather(hears(visitor_page), hears(admin_page))
        assert held, "no page said its P2P connection was up"
        for page in (visitor_page, admin_page):
            await expect(page.locator("#call")).to_have_attribute("data-state", "connecting")
        release.set()
        for page in (visitor_page, admin_page):
            await expect(page.locator("#call")).to_have_attribute("data-state", "active")
            await expect(page.locator("#call")).to_have_attribute("data-mode", "p2p")
        await visitor_page.locator("#call-hangup").click()
        await expect(admin_page.locator("#call")).to_have_attribute("data-state", "ended")
        assert visitor_watch.page_errors == [] and admin_watch.page_errors == []
    finally:
        await close_all(visitor_page, admin_page)


# What the page asked the browser's own setSinkId for (the call goes on to the real one).
SINK_IDS = """
window.__sinkIds = [];
const realSetSinkId = HTMLMediaElement.prototype.setSinkId;
HTMLMediaElement.prototype.setSinkId = function (id) {
  window.__sinkIds.push(id);
  return realSetSinkId.call(this, id);
};
"""


@pytest.mark.browser
async def test_browser_speaker_button_picks_a_real_output(
    chromium: Browser, server: Server
) -> None:
    """Chromium's fake outputs (a default and two devices): the speaker button moves the call's
    sound to one of the listed devices and back, and never says the browser cannot."""
    page, watch = await call_page(chromium, PHONE)
    await page.context.add_init_script(SINK_IDS)
    try:
        await start_chat(page, server.url, "Hoparlör")
        await page.locator("#call-test").click()
        await expect(page.locator("#call")).to_have_attribute("data-state", "echo")
        speaker = page.locator("#call-speaker")
        await expect(speaker).to_have_attribute("aria-pressed", "true")
        await speaker.click()
        await expect(speaker).to_have_attribute("aria-pressed", "false")
        outputs: list[str] = await page.evaluate(
            "async () => (await navigator.mediaDevices.enumerateDevices())"
            ".filter((d) => d.kind === 'audiooutput').map((d) => d.deviceId)"
        )
        asked: list[str] = await page.evaluate("window.__sinkIds")
        assert len(asked) == 1 and asked[0] in outputs, (asked, outputs)
        assert asked[0] not in ("", "default", "communications")
        assert (
            await page.evaluate("document.getElementById('call-remote-audio').sinkId") == asked[0]
        )
        await expect(page.locator("#call-notice")).to_be_hidden()
        await speaker.click()
        await expect(speaker).to_have_attribute("aria-pressed", "true")
        assert await page.evaluate("window.__sinkIds") == [asked[0], ""]
        await expect(page.locator("#call-notice")).to_be_hidden()
        await page.locator("#call-hangup").click()
        await expect(page.locator("#call")).to_have_attribute("data-state", "ended")
        assert watch.page_errors == []
    finally:
        await close_all(page)


BROKEN_ANSWERING = """
RTCPeerConnection.prototype.setRemoteDescription = function () {
  return Promise.reject(new DOMException("refused by the test", "OperationError"));
};
"""


@pytest.mark.browser
async def test_browser_a_failing_step_ends_the_call_with_a_message(
    chromium: Browser, server: Server, admin_token: str
) -> None:
    """The operator's browser refuses the visitor's offer (an engine error): the call ends on
    both sides with a message, and nothing is left as an uncaught rejection."""
    visitor_page, visitor_watch = await call_page(chromium, PHONE)
    admin_page, admin_watch = await call_page(chromium, DESKTOP)
    await admin_page.context.add_init_script(BROKEN_ANSWERING)
    try:
        await both_on_the_conversation(visitor_page, admin_page, server, admin_token, "Hata")
        await expect(admin_page.locator("#call-test")).to_be_visible()
        await visitor_page.locator("#call-button").click()
        await expect(admin_page.locator("#call")).to_have_attribute("data-state", "incoming")
        await admin_page.locator("#call-accept").click()
        await expect(admin_page.locator("#call")).to_have_attribute("data-state", "ended")
        await expect(admin_page.locator("#call-ended-text")).to_have_text(
            "Aramada bir sorun oluştu, bu yüzden arama sonlandırıldı."
        )
        await expect(visitor_page.locator("#call")).to_have_attribute("data-state", "ended")
        assert admin_watch.page_errors == [] and visitor_watch.page_errors == []
    finally:
        await close_all(visitor_page, admin_page)


# Through a TURN server: both parties behind symmetric NAT ---------------------------------------

# A direct path, where one exists, connects here in well under a second; none may within this.
DIRECT_BOUND = 5.0
NAT_STUN = f"stun:{turn.TURN_ADDRESS}:{turn.TURN_PORT}"
NAT_TURN = f"turn:{turn.TURN_ADDRESS}:{turn.TURN_PORT}?transport=udp"


@pytest.fixture(scope="module")
def symmetric_nat(coturn: turn.Coturn) -> Iterator[turn.NatTopology]:
    with turn.symmetric_nat() as topology:
        yield topology


@pytest.fixture(scope="module")
async def nat_server(
    coturn: turn.Coturn, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Server]:
    """A server that names coturn as its STUN server and as TURN over UDP, with Sohbet's TURN
    REST credentials."""
    workdir = tmp_path_factory.mktemp("calls-nat")
    srv = Server(
        database_url=f"sqlite://{workdir / 'sohbet.db'}",
        workdir=workdir,
        env_extra={
            "ICE_SERVERS": NAT_STUN,
            "TURN_URLS": NAT_TURN,
            "TURN_SECRET": TURN_SECRET,
            "CALL_RING_SECONDS": "5",
        },
    )
    await srv.start()
    yield srv
    srv.stop()


async def settled(pcs: tuple[RTCPeerConnection, ...], within: float) -> str:
    """The first of "connected" / "failed" any connection reaches, or "neither" after `within`."""
    reached: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    for pc in pcs:

        def changed(pc: RTCPeerConnection = pc) -> None:
            if pc.connectionState in ("connected", "failed") and not reached.done():
                reached.set_result(pc.connectionState)

        pc.on("connectionstatechange", changed)
        changed()
    try:
        return await asyncio.wait_for(reached, max(within, 0))
    except TimeoutError:
        return "neither"


@pytest.mark.skipif(NO_TURN is not None, reason=str(NO_TURN))
async def test_p2p_between_two_symmetric_nats_connects_through_turn(
    nat_server: Server, symmetric_nat: turn.NatTopology, record_property: Any
) -> None:
    """Visitor and operator each behind a symmetric NAT: their direct candidates can't meet, so
    the call connects through coturn's relay and both hear each other; the same two parties
    with STUN only (no TURN) do not connect, where the routers' own public addresses do."""
    top = symmetric_nat
    publics = (top.visitor_public, top.operator_public)
    # Symmetric: one socket shows a different public port to each destination.
    for ns, public in zip((top.visitor_ns, top.operator_ns), publics, strict=True):
        seen = turn.mapped_ports(ns, turn.TURN_ADDRESS)
        assert {a for a, _ in seen} == {public} and len({p for _, p in seen}) == len(seen), seen
    # Between the routers themselves (the public side, no NAT) a direct path connects.
    control = await turn.direct_attempt(top.routers(), [{"urls": [NAT_STUN]}])
    try:
        assert await settled(control, DIRECT_BOUND) == "connected", control
    finally:
        for pc in control:
            await pc.close()
    admin_token = await admin_login(nat_server)
    caller, admin, call_id, _cid, _ = await answered_call(nat_server, admin_token, "Kafe")
    servers = caller.events["call:accepted"][0]["ice_servers"]
    assert [s["urls"] for s in servers] == [[NAT_STUN], [NAT_TURN]], servers
    answered_at = now()
    hz = (VISITOR_HZ, ADMIN_HZ)
    visitor_media, admin_media = turn.call_parties(top, caller, admin, call_id, hz)
    direct: tuple[RTCPeerConnection, ...] = ()
    try:
        await asyncio.gather(visitor_media.offer(), admin_media.answer())
        for media in (visitor_media, admin_media):
            assert media.candidate_types() == {"host", "srflx", "relay"}, media.pc.localDescription
        connected = await asyncio.wait_for(
            asyncio.gather(visitor_media.connected, admin_media.connected), 20
        )
        pairs = (visitor_media.pair(), admin_media.pair())
        assert None not in pairs and "relay" in {p[0] for p in pairs if p}, pairs
        # While they talk, the same two networks with STUN only: every direct path is tried.
        direct_started = now()
        direct = await turn.direct_attempt(top, turn.without_turn(servers))
        for pc, public in zip(direct, publics, strict=True):
            assert ("srflx", public) in turn.sdp_candidates(pc), pc.localDescription
        heard = await asyncio.gather(visitor_media.hear(), admin_media.hear())
        assert (await caller.call("call:connected", {"call_id": call_id}))["state"] == "active"
        await admin.wait_for("call:connected", lambda m: m["call_id"] == call_id)
        assert (await admin.call("call:end", {"call_id": call_id}))["ok"]
        await caller.wait_for("call:ended", lambda m: m["call_id"] == call_id)
        outcome = await settled(direct, DIRECT_BOUND - (now() - direct_started))
        assert outcome != "connected", [pc.connectionState for pc in direct]
    finally:
        for pc in direct:
            await pc.close()
        await close_peers(visitor_media, admin_media, caller, admin)
    connect_ms = round((max(connected) - answered_at) * 1000)
    heard_ms = round((max(heard) - answered_at) * 1000)
    print(
        f"\nsymmetric NAT both sides, TURN/UDP: answer to connected {connect_ms} ms,"
        f" to both tones heard {heard_ms} ms; pairs {pairs}; direct attempt: {outcome}"
    )
    record_property("symmetric_nat_turn_connected_ms", connect_ms)
    record_property("symmetric_nat_turn_heard_ms", heard_ms)
