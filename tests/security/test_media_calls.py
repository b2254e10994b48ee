"""Uploads and calls under attack: XSS in file names and captions, uploads into someone else's
conversation, HTML/SVG posing as photos, oversize files; `/call` room hijack, cross-site
handshakes and hypothesis fuzzing of every `/call` event (malformed SDP included)."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from playwright.async_api import Browser, expect

from tests.security.attack import (
    JSON,
    SUITE_ENV,
    LoopThread,
    Requests,
    fuzz_settings,
    handshake,
    message_count,
    visitor,
)
from tests.support.calls import call_peer
from tests.support.clients import ADMIN_COOKIE, Peer, admin_csrf, client_id
from tests.support.media_files import fetch, jpeg, tone, upload
from tests.support.pages import (
    Watch,
    admin_panel,
    close_all,
    open_conversation,
    visitor_page,
)
from tests.support.server import Server

SERVER_ENV = {
    **SUITE_ENV,
    "MEDIA_MAX_BYTES": str(2 * 1024 * 1024),
    # Signalling only: no STUN to wait for, and a ringing call that outlives the fuzzing.
    "ICE_SERVERS": "none",
    "CALL_RING_SECONDS": "600",
}
EVIL_NAME = "<img src=x onerror=alert(1)>.webm"  # a path part would be cut off
EVIL_CAPTION = (
    '<script>fetch("/xss-canary/c1")</script><b hx-get="/xss-canary/c2" hx-trigger="load">x</b>'
)


@pytest.mark.browser
async def test_xss_in_file_names_and_captions_is_inert(
    browser: Browser,
    server: Server,
    admin_token: str,
) -> None:
    """Input: an audio file named like an <img onerror> tag and photos captioned with a script
    and htmx attributes, from the visitor and from the operator. Safe: both pages show the
    literal text; no dialog, CSP violation, script error or content-made request."""
    token, cid = await visitor(server, "Dosya")
    csrf = await admin_csrf(server.url, admin_token)
    for sender in ("visitor", "admin"):
        who: dict[str, Any] = (
            {"visitor_token": token}
            if sender == "visitor"
            else {"admin_token": admin_token, "csrf": csrf}
        )
        status, body = await upload(
            server.url, chat_id=cid, client_id=client_id(), data=tone(), kind="audio",
            filename=EVIL_NAME, content_type="audio/webm", **who,
        )  # fmt: skip
        assert status == 200 and body["ok"], body
        status, body = await upload(
            server.url, chat_id=cid, client_id=client_id(), data=jpeg(), text=EVIL_CAPTION, **who
        )
        assert status == 200 and body["ok"], body
    requests = Requests(server.url)
    admin_watch = Watch()
    admin = await admin_panel(browser, server, admin_token, admin_watch)
    page, watch = await visitor_page(browser, server, token)
    try:
        for p in (admin, page):
            requests.attach(p)
        await open_conversation(admin, cid)
        for p in (admin, page):
            await expect(p.locator("#messages")).to_contain_text(EVIL_CAPTION)
            await expect(p.locator("#messages")).to_contain_text(EVIL_NAME)
            await p.reload()
            await expect(p.locator("#messages")).to_contain_text(EVIL_CAPTION)
        await asyncio.sleep(1)
        for p in (admin, page):
            live = "#messages script, #messages [hx-get], #messages b, img[src='x']"
            assert await p.locator(live).count() == 0
        for w in (admin_watch, watch):
            assert w.dialogs == [], w.dialogs
            w.assert_clean()
        assert requests.suspicious == [], requests.suspicious
    finally:
        await close_all(admin, page)


async def test_uploads_into_someone_elses_conversation_are_404(
    server: Server, admin_token: str
) -> None:
    """Input: visitor B uploads into visitor A's conversation (and into one that does not
    exist); an upload claiming `as=admin` with a forged cookie, and with the real cookie but no
    CSRF token. Safe: 404 the same as a missing conversation, 403 without the token; nothing
    stored; B's own upload then works, and A's file is not served to B."""
    token_a, cid_a = await visitor(server, "Sahip")
    token_b, cid_b = await visitor(server, "Davetsiz")
    photo = jpeg()
    answers = []
    for chat_id in (cid_a, "Nobody-0000"):
        answers.append(
            await upload(server.url, chat_id=chat_id, client_id=client_id(), data=photo,
                         visitor_token=token_b)
        )  # fmt: skip
    assert answers[0] == answers[1] and answers[0][0] == 404, answers
    status, _ = await upload(
        server.url, chat_id=cid_a, client_id=client_id(), data=photo, admin_token="forged"
    )
    assert status == 404
    status, body = await upload(
        server.url, chat_id=cid_a, client_id=client_id(), data=photo, admin_token=admin_token
    )
    assert status == 403 and body["error"] == "csrf", body
    assert await message_count(server, cid_a) == 0
    status, body = await upload(
        server.url, chat_id=cid_a, client_id=client_id(), data=photo, visitor_token=token_a
    )
    assert status == 200, body
    url = body["message"]["html"].split('src="', 1)[1].split('"', 1)[0]
    assert (await fetch(server.url, url, f"sohbet_visitor={token_a}"))[0] == 200
    assert (await fetch(server.url, url, f"sohbet_visitor={token_b}"))[0] == 404
    assert (
        await fetch(
            server.url, url.rsplit("/", 1)[0] + "/guessed.jpg", f"{ADMIN_COOKIE}={admin_token}"
        )
    )[0] == 404
    status, body = await upload(
        server.url, chat_id=cid_b, client_id=client_id(), data=photo, visitor_token=token_b
    )
    assert status == 200, body


HOSTILE_FILES = [
    (
        "svg with script",
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        "x.svg",
        "image/svg+xml",
    ),
    ("html as jpeg", b"<!doctype html><script>alert(1)</script>", "x.jpg", "image/jpeg"),
    (
        "jpeg header then html",
        b"\xff\xd8\xff\xe0" + b"<script>alert(1)</script>" * 50,
        "x.jpg",
        "image/jpeg",
    ),
    ("pdf", b"%PDF-1.4\n1 0 obj<</JS (app.alert(1))>>endobj", "x.pdf", "application/pdf"),
    ("oversize", b"\xff\xd8\xff" + b"\0" * (2 * 1024 * 1024 + 1), "big.jpg", "image/jpeg"),
]


@pytest.mark.parametrize(
    ("label", "data", "filename", "content_type"), HOSTILE_FILES, ids=[h[0] for h in HOSTILE_FILES]
)
async def test_hostile_files_posing_as_photos_are_refused(
    server: Server, label: str, data: bytes, filename: str, content_type: str
) -> None:
    """Input: SVG with script, HTML or PDF with an image name and type, a JPEG header
    followed by HTML, a file over MEDIA_MAX_BYTES. Safe: refused with a translated message,
    nothing stored."""
    token, cid = await visitor(server, "Kotu")
    status, body = await upload(
        server.url, chat_id=cid, client_id=client_id(), data=io.BytesIO(data),  # type: ignore[arg-type]
        filename=filename,
        content_type=content_type, visitor_token=token,
    )  # fmt: skip
    assert status in (400, 413) and body["ok"] is False, (label, status, body)
    assert body["error"].startswith("media_") and body["message"], body
    assert await message_count(server, cid) == 0


# /call ---------------------------------------------------------------------------------------

CALL_EVENTS = (
    "join", "call:ring", "call:accept", "call:decline", "call:end", "call:relay", "call:media",
    "rtc:offer", "rtc:answer", "rtc:candidate",
)  # fmt: skip
SDPS = [
    "v=0\r\n",
    "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
    "v=0\r\n" + "a=candidate:" + "9" * 900 + "\r\n",
    "v=0\r\nm=" + "audio " * 2000,
    "v=0\r\n\x00\x01\x02",
]


@pytest.fixture(scope="module")
async def ringing(server: Server, admin_token: str) -> Any:
    """Visitor A ringing the operator: a live call whose id the attacker knows."""
    token, cid = await visitor(server, "Arayan")
    caller = await call_peer(server.url, "visitor", token)
    operator = await call_peer(server.url, "admin", admin_token)
    assert (await caller.call("join", {"chat_id": cid}))["ok"]
    rung = await caller.call("call:ring", {"chat_id": cid})
    assert rung["ok"], rung
    await operator.wait_for("call:incoming")
    attacker_token, attacker_cid = await visitor(server, "Korsan")
    yield {
        "call_id": rung["call_id"], "cid": cid, "caller": caller, "operator": operator,
        "attacker_token": attacker_token, "attacker_cid": attacker_cid,
    }  # fmt: skip
    await caller.call("call:end", {"call_id": rung["call_id"]})
    await caller.close()
    await operator.close()


def call_payloads(call_id: str, cid: str) -> st.SearchStrategy[Any]:
    value = st.one_of(
        JSON,
        st.sampled_from([call_id, cid, call_id + "x", "", None]),
        st.sampled_from(SDPS),
        st.text(max_size=300).map(lambda t: "v=0\r\n" + t),
    )
    keys = st.sampled_from(
        ["call_id", "chat_id", "sdp", "candidate", "to", "video", "echo", "camera", "type"]
    )
    return st.one_of(JSON, st.dictionaries(keys, value, max_size=6))


@pytest.mark.parametrize("event", CALL_EVENTS)
def test_fuzz_every_call_event(event: str, server: Server, ringing: Any) -> None:
    """Input: hypothesis-made payloads for one `/call` event from another visitor, using the
    ringing call's real id and conversation id, malformed SDP and candidates. Safe: a
    well-formed ack every time, never ok on the victim's call; the caller and the operator
    receive nothing from the attacker; the call still rings."""
    thread = LoopThread()
    peers: list[Peer] = []

    async def emit(data: Any) -> Any:
        if not peers or not peers[-1].sio.connected:
            peers.append(await call_peer(server.url, "visitor", ringing["attacker_token"]))
        return await peers[-1].call(event, data, timeout=15)

    @fuzz_settings(20)
    @given(data=call_payloads(ringing["call_id"], ringing["cid"]))
    def attack(data: Any) -> None:
        ack = thread.run(emit(data))
        assert isinstance(ack, dict) and isinstance(ack.get("ok"), bool), ack
        if not ack["ok"]:
            assert ack["error"] and ack["message"], ack
        elif isinstance(data, dict):
            assert data.get("call_id") != ringing["call_id"], (data, ack)
            assert data.get("chat_id") != ringing["cid"], (data, ack)

    try:
        attack()
    finally:
        for peer in peers:
            thread.run(peer.close())
        thread.close()
    caller, operator = ringing["caller"], ringing["operator"]
    for name in (
        "rtc:offer",
        "rtc:answer",
        "rtc:candidate",
        "call:media",
        "call:ended",
        "call:accepted",
    ):
        assert caller.events[name] == [], (name, caller.events[name])
        assert operator.events[name] == [], (name, operator.events[name])


async def test_the_victims_call_survived_the_fuzzing(server: Server, ringing: Any) -> None:
    """Input: a burst of its own from another visitor: every `/call` event aimed at the ringing
    call (its real call id and conversation id, each malformed SDP, a huge candidate). Safe:
    every ack refuses, the caller and the operator receive nothing, the call is still
    ringing, unchanged, and no handler logged a crash (here or in any attack before)."""
    call_id, cid = ringing["call_id"], ringing["cid"]
    aimed: list[dict[str, Any]] = [
        {"call_id": call_id},
        {"chat_id": cid},
        {"call_id": call_id, "chat_id": cid, "candidate": {"candidate": "a" * 5000}},
        *({"call_id": call_id, "sdp": sdp, "type": "offer"} for sdp in SDPS),
    ]
    attacker = await call_peer(server.url, "visitor", ringing["attacker_token"])
    try:
        for event in CALL_EVENTS:
            for data in aimed:
                ack = await attacker.call(event, data, timeout=15)
                assert ack["ok"] is False and ack["error"] and ack["message"], (event, data, ack)
    finally:
        await attacker.close()
    joined = await ringing["caller"].call("join", {"chat_id": cid})
    assert joined["ok"] and joined["call"]["call_id"] == call_id, joined
    for name in ("rtc:offer", "rtc:answer", "rtc:candidate", "call:ended", "call:accepted"):
        assert ringing["caller"].events[name] == [], (name, ringing["caller"].events[name])
        assert ringing["operator"].events[name] == [], (name, ringing["operator"].events[name])
    assert "call handler failed" not in server.log()


async def test_cross_site_call_handshake_with_admin_cookie_is_refused(
    server: Server, admin_token: str
) -> None:
    """Input: a `/call` handshake from a foreign origin with the operator's cookie. Safe:
    refused (the same engine.io origin check as `/chat`)."""
    cookie = f"{ADMIN_COOKIE}={admin_token}"
    assert not await handshake(server.url, cookie, origin="https://evil.example", namespace="/call")
    assert await handshake(server.url, cookie, origin=server.url, namespace="/call")
