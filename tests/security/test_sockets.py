"""Socket.IO `/chat` under attack: other people's ids, forged roles, malformed and huge
payloads, and hypothesis fuzzing of every event and of the connect payload."""

from __future__ import annotations

import asyncio
import json
import unicodedata
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import socketio
import websockets
from hypothesis import given
from hypothesis import strategies as st

from tests.security.attack import (
    JSON,
    SUITE_ENV,
    LoopThread,
    fuzz_settings,
    handshake,
    message_count,
    visitor,
)
from tests.support.clients import (
    ADMIN_COOKIE,
    VISITOR_COOKIE,
    Peer,
    admin_peer,
    client_id,
    jarless,
    visitor_peer,
)
from tests.support.server import Server, query

SERVER_ENV = SUITE_ENV
EVENTS = ("join", "send", "typing", "leave", "read")
BIDI_AND_CONTROLS = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))} | {
    chr(c) for c in range(32) if c != 10
}


async def test_other_peoples_conversation_looks_like_no_conversation(server: Server) -> None:
    """Input: visitor B sends every event with visitor A's chat_id, and with an id that does
    not exist. Safe: both get the same answer (bad_chat, same text); A gets nothing (no
    message, no typing), nothing is stored in A's conversation."""
    token_a, cid_a = await visitor(server, "Ayla")
    token_b, _ = await visitor(server, "Berk")
    a = await visitor_peer(server.url, token_a)
    b = await visitor_peer(server.url, token_b)
    try:
        assert (await a.call("join", {"chat_id": cid_a}))["ok"]
        for event in EVENTS:
            payload = {"chat_id": cid_a, "text": "sneak", "client_id": client_id(), "last_seq": 0}
            theirs = await b.call(event, payload)
            nobody = await b.call(event, {**payload, "chat_id": "Nobody-0000"})
            assert theirs == nobody and theirs["ok"] is False, (event, theirs, nobody)
            if event != "read":  # read is the operator's only: refused before any lookup
                assert theirs["error"] == "bad_chat", (event, theirs)
        await asyncio.sleep(0.5)
        assert not a.events["chat:typing"] and not a.events["chat:message"]
        assert await message_count(server, cid_a) == 0
    finally:
        await a.close()
        await b.close()


async def test_operator_ids_that_do_not_exist_are_404(server: Server, admin_token: str) -> None:
    """Input: the operator asks for a CID that does not exist, over HTTP and the socket.
    Safe: 404 pages and bad_chat acks (and the same for a deleted conversation)."""
    cookie = {"Cookie": f"{ADMIN_COOKIE}={admin_token}"}
    admin = await admin_peer(server.url, admin_token)
    try:
        async with jarless() as http:
            for path in ("/admin/c/Nobody-0000", "/admin/c/Nobody-0000/older?before=3"):
                async with http.get(server.url + path, headers=cookie) as r:
                    assert r.status == 404, path
            long_id = "x" * 5000
            async with http.get(server.url + f"/admin/c/{long_id}", headers=cookie) as r:
                assert r.status in (404, 414), r.status
        for event in ("join", "send", "typing", "leave", "read"):
            ack = await admin.call(
                event, {"chat_id": "Nobody-0000", "text": "x", "client_id": client_id()}
            )
            assert ack["ok"] is False and ack["error"] == "bad_chat", (event, ack)
    finally:
        await admin.close()


async def test_visitor_cookie_opens_nothing_of_the_operator(server: Server) -> None:
    """Input: a visitor's cookie on the panel, its partials, the test page and API, and a
    socket asking to be the operator. Safe: login page / 401 / refusal; no operator data."""
    token, cid = await visitor(server, "Mallory")
    cookie = f"{VISITOR_COOKIE}={token}"
    async with jarless() as http:
        for path in ("/admin", f"/admin/c/{cid}", "/admin/conversations", "/test"):
            async with http.get(
                server.url + path, headers={"Cookie": cookie}, allow_redirects=False
            ) as r:
                body = await r.text()
                assert r.status in (200, 303, 401), path
                assert "conversation-list" not in body and "Mallory" not in body, path
        async with http.get(server.url + "/api/test/runs", headers={"Cookie": cookie}) as r:
            assert r.status == 401
    assert not await handshake(server.url, cookie, auth={"as": "admin"})
    # Both cookies at once, asking to be the visitor: the visitor it is, never the operator.
    peer = await Peer(server.url, cookie, "visitor").connect()
    try:
        ack = await peer.call("read", {"chat_id": cid})
        assert ack["ok"] is False and ack["error"] == "forbidden"
    finally:
        await peer.close()


async def test_forged_role_and_source_are_ignored(server: Server, admin_token: str) -> None:
    """Input: a visitor's send claiming role admin/system and source telegram. Safe: stored
    and shown as the visitor's message."""
    token, cid = await visitor(server, "Forge")
    peer = await visitor_peer(server.url, token)
    try:
        for role in ("admin", "system"):
            ack = await peer.call(
                "send",
                {
                    "chat_id": cid,
                    "role": role,
                    "source": "telegram",
                    "text": f"as {role}",
                    "client_id": client_id(),
                },
            )
            assert ack["ok"] and ack["message"]["role"] == "visitor", ack
        rows = await query(
            server,
            "SELECT m.role, m.source FROM message m JOIN conversation c "
            f"ON c.id = m.conversation_id WHERE c.cid = '{cid}'",
        )
        assert rows == [("visitor", "web"), ("visitor", "web")]
    finally:
        await peer.close()


async def raw_chat_socket(server: Server, token: str) -> websockets.ClientConnection:
    """A bare WebSocket speaking the Engine.IO/Socket.IO wire format, joined to /chat."""
    ws = await websockets.connect(
        server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket",
        additional_headers={"Cookie": f"{VISITOR_COOKIE}={token}"},
        max_size=None,
    )
    assert str(await ws.recv()).startswith("0{")
    await ws.send("40/chat,")
    assert str(await ws.recv()).startswith("40/chat,")
    return ws


async def test_huge_and_deep_payloads_are_refused_and_the_server_lives(server: Server) -> None:
    """Input: raw Socket.IO frames: a 1 MB string in `send`, a `send` whose payload is a list
    nested 5,000 deep (Python's JSON parser recurses), and broken JSON. Safe: each is refused
    (`too_large`, `bad_packet`) in its ack and with `chat:error`, nothing is stored, no
    traceback, the connection still works, other visitors are unaffected."""
    token, cid = await visitor(server, "Huge")
    bystander_token, bystander_cid = await visitor(server, "Calm")
    bystander = await visitor_peer(server.url, bystander_token)
    huge_id = client_id()
    frames = [
        (
            "42/chat,1"
            + json.dumps(["send", {"chat_id": cid, "text": "A" * 1_000_000, "client_id": huge_id}]),
            "too_large",
        ),
        ('42/chat,2["send",' + "[" * 5000 + "]" * 5000 + "]", "bad_packet"),
        ('42/chat,3["send",{"chat_id":', "bad_packet"),
    ]
    log_before = len(server.log())
    ws = await raw_chat_socket(server, token)
    try:
        for number, (frame, error) in enumerate(frames, start=1):
            await ws.send(frame)
            answers: list[str] = []
            async with asyncio.timeout(10):
                while not any(a.startswith(f"43/chat,{number}[") for a in answers):
                    answers.append(str(await ws.recv()))
            ack = json.loads(
                next(a for a in answers if a.startswith("43/chat,"))[len(f"43/chat,{number}") :]
            )
            assert ack[0]["ok"] is False and ack[0]["error"] == error and ack[0]["message"], ack
            events = [json.loads(a[len("42/chat,") :]) for a in answers if a.startswith("42/chat,")]
            assert ["chat:error", ack[0]] in events, answers
            if error == "too_large":
                assert ack[0]["client_id"] == huge_id, ack
        # The connection is still there and still works.
        await ws.send('42/chat,9["typing",{"chat_id":"' + cid + '"}]')
        async with asyncio.timeout(10):
            while not str(await ws.recv()).startswith('43/chat,9[{"ok":true'):
                pass
        assert await message_count(server, cid) == 0
        ack = await bystander.call(
            "send", {"chat_id": bystander_cid, "text": "still fine", "client_id": client_id()}
        )
        assert ack["ok"]
        assert "Traceback" not in server.log()[log_before:]
    finally:
        await ws.close()
        await bystander.close()


WRONG_TYPES: list[tuple[str, dict[str, Any]]] = [
    ("chat_id int", {"chat_id": 5}),
    ("chat_id list", {"chat_id": ["x"]}),
    ("chat_id dict", {"chat_id": {"$ne": None}}),
    ("text dict", {"text": {"html": "<b>"}}),
    ("text list", {"text": ["a", "b"]}),
    ("text number", {"text": 12}),
    ("text null", {"text": None}),
    ("text only bidi", {"text": "\u202e\u2066\u200b"}),
    ("client_id dict", {"client_id": {"a": 1}}),
    ("client_id short", {"client_id": "x"}),
    ("client_id 10k", {"client_id": "c" * 10_000}),
    ("type photo", {"type": "photo"}),
    ("last_seq negative", {"last_seq": -1}),
    ("last_seq string", {"last_seq": "5"}),
    ("last_seq huge", {"last_seq": 10**30}),
    ("last_seq bool", {"last_seq": True}),
    ("last_seq float", {"last_seq": 1.5}),
]


@pytest.mark.parametrize(("label", "override"), WRONG_TYPES, ids=[w[0] for w in WRONG_TYPES])
async def test_wrong_types_get_a_clear_error(
    server: Server, label: str, override: dict[str, Any]
) -> None:
    """Input: `send` and `join` with one field of the wrong type or shape. Safe: an ack with
    ok false and a translated message (never a crash, never a stored message)."""
    token, cid = await visitor(server, "Types")
    peer = await visitor_peer(server.url, token)
    try:
        base = {"chat_id": cid, "text": "ok", "client_id": client_id()}
        event = "join" if "last_seq" in override else "send"
        ack = await peer.call(event, {**base, **override})
        assert ack["ok"] is False and isinstance(ack["error"], str), (label, ack)
        assert isinstance(ack["message"], str) and ack["message"], (label, ack)
        assert await message_count(server, cid) == 0
    finally:
        await peer.close()


# Hypothesis ------------------------------------------------------------------------------------

FIELDS = ("chat_id", "text", "client_id", "last_seq", "type", "role", "name", "time", "fileRef")


def payloads(own_cid: str, other_cid: str) -> st.SearchStrategy[Any]:
    """Anything JSON, and dicts of the real field names with hostile values."""
    field_value = st.one_of(
        JSON,
        st.sampled_from([own_cid, other_cid, own_cid.lower(), own_cid + " ", "", "*"]),
        st.text(min_size=1, max_size=300),
        st.from_regex(r"[A-Za-z0-9_.:-]{8,64}", fullmatch=True),
    )
    shaped = st.dictionaries(st.sampled_from(FIELDS), field_value, max_size=len(FIELDS))
    return st.one_of(JSON, shaped)


class Fuzz:
    """One visitor's socket (in its own loop thread), reconnected if the server drops it."""

    def __init__(self, server: Server, token: str) -> None:
        self.server = server
        self.token = token
        self.thread = LoopThread()
        self.peer: Peer | None = None

    def emit(self, event: str, data: Any) -> Any:
        async def go() -> Any:
            if self.peer is None or not self.peer.sio.connected:
                self.peer = await visitor_peer(self.server.url, self.token)
            return await self.peer.call(event, data, timeout=15)

        return self.thread.run(go())

    def close(self) -> None:
        if self.peer is not None:
            self.thread.run(self.peer.close())
        self.thread.close()


@pytest.fixture(scope="module")
async def fuzz_targets(server: Server) -> dict[str, str]:
    token, cid = await visitor(server, "Fuzz")
    _, victim = await visitor(server, "Victim")
    return {"token": token, "cid": cid, "victim": victim}


@pytest.fixture
def fuzz(server: Server, fuzz_targets: dict[str, str]) -> Iterator[Fuzz]:
    f = Fuzz(server, fuzz_targets["token"])
    yield f
    f.close()


def check_ack(event: str, ack: Any) -> None:
    assert isinstance(ack, dict) and isinstance(ack.get("ok"), bool), (event, ack)
    if not ack["ok"]:
        assert isinstance(ack.get("error"), str) and ack["error"], (event, ack)
        assert isinstance(ack.get("message"), str) and ack["message"], (event, ack)
    elif event == "send":
        text = ack["message"]["text"]
        assert text and text == text.strip() and len(text) <= 4000, ack
        assert not (set(text) & BIDI_AND_CONTROLS), ack
        assert unicodedata.normalize("NFKC", text) == text, ack
        html = ack["message"]["html"]
        assert "<script" not in html.lower(), ack
        if "<" in text:
            assert "&lt;" in html, ack


@pytest.mark.parametrize("event", EVENTS)
def test_fuzz_every_event(
    event: str, server: Server, fuzz: Fuzz, fuzz_targets: dict[str, str]
) -> None:
    """Input: hypothesis-made payloads for one event (anything JSON, and the real field names
    with hostile values: other CIDs, controls, bidi, wrong types). Safe: every call gets a
    well-formed ack (ok, or an error code with a message), stored text is clean, and the
    victim's conversation never gets a message."""

    @fuzz_settings(25)
    @given(data=payloads(fuzz_targets["cid"], fuzz_targets["victim"]))
    def attack(data: Any) -> None:
        check_ack(event, fuzz.emit(event, data))

    attack()
    assert fuzz.thread.run(message_count(server, fuzz_targets["victim"])) == 0


def test_fuzz_the_connect_payload(server: Server, fuzz_targets: dict[str, str]) -> None:
    """Input: hypothesis-made `auth` payloads on connect with a visitor's cookie (including
    {"as": "admin"} and look-alikes). Safe: connected as that visitor or refused, never as the
    operator (the operator-only `read` is refused)."""
    thread = LoopThread()
    cookie = f"{VISITOR_COOKIE}={fuzz_targets['token']}"

    connected: list[Any] = []

    async def connect(auth: Any) -> Peer | None:
        """The visitor's socket with this auth, or None when the server refused it (a
        connection that failed for any other reason, e.g. a timeout under load, is retried)."""
        for _ in range(3):
            peer = Peer(server.url, cookie, "visitor")
            try:
                await peer.sio.connect(
                    server.url,
                    namespaces=["/chat"],
                    headers={"Cookie": cookie},
                    auth=auth,
                    transports=["websocket"],
                    wait_timeout=10,
                )
                return peer
            except socketio.exceptions.ConnectionError as exc:
                if peer.sio.eio.http is not None:
                    await peer.sio.eio.http.close()
                # The server's refusal (a CONNECT_ERROR packet) is the only answer that counts.
                if str(exc).startswith("One or more namespaces failed to connect"):
                    return None
        raise AssertionError(f"no answer to a connect with auth {auth!r}")

    async def attempt(auth: Any) -> None:
        # Only {"as": "admin"} asks for a role this cookie cannot have; anything else must
        # reach the visitor's own session (refusing everything would be no defence).
        may_refuse = isinstance(auth, dict) and auth.get("as") == "admin"
        peer = await connect(auth)
        if peer is None:
            assert may_refuse, f"the visitor was refused with auth {auth!r}"
            return
        connected.append(auth)
        try:
            ack = await peer.call("read", {"chat_id": fuzz_targets["cid"]})
            assert ack["ok"] is False and ack["error"] == "forbidden", (auth, ack)
            joined = await peer.call("join", {"chat_id": fuzz_targets["cid"]})
            assert joined["ok"] is True, (auth, joined)
        finally:
            await peer.close()

    @fuzz_settings(30)
    @given(auth=st.one_of(JSON, st.fixed_dictionaries({"as": JSON}), st.just({"as": "admin"})))
    def attack(auth: Any) -> None:
        # Room for connect's three tries of up to 10 s each on a loaded machine; a shorter
        # limit turns one slow handshake into a failure that hypothesis then shrinks for minutes.
        thread.run(attempt(auth), timeout=90)

    try:
        attack()
        thread.run(attempt({"as": "visitor"}))
    finally:
        thread.close()
    assert connected, "no connection was accepted"


HOSTILE: list[Any] = [
    None,
    [],
    "x",
    5,
    {"chat_id": None},
    {"chat_id": "*", "text": "hi"},
    {"chat_id": "{cid}", "text": {"a": 1}},
    {"chat_id": "{cid}", "text": "\u202e" * 10, "client_id": "c" * 10_000},
    {"chat_id": "{cid}", "last_seq": -1},
    {"chat_id": "{other}", "text": "hi", "client_id": "0123456789abcdef"},
]
BROKEN_FRAMES = ['42/chat,7["send",' + "[" * 5000 + "]" * 5000 + "]", '42/chat,8["join",{']


async def drop_after(server: Server, token: str, frame: str) -> None:
    """Send one raw frame on a fresh /chat socket and wait until the server has dealt with it
    (dropped the connection, or answered)."""
    ws = await raw_chat_socket(server, token)
    await ws.send(frame)
    try:
        async with asyncio.timeout(5):
            async for answer in ws:
                if answer == "1" or str(answer).startswith("43/chat,"):
                    break
    except (TimeoutError, websockets.ConnectionClosed):
        pass
    await ws.close()


async def test_server_is_healthy_after_the_attacks(server: Server) -> None:
    """Input: a burst of attacks of its own: every event with hostile payloads (wrong types,
    another visitor's CID, oversize ids, bidi text) and frames that break the parser. Safe:
    each gets a well-formed ack or a dropped connection, /health answers, a bystander's
    message is stored, and no handler logged a crash (here or in any attack before)."""
    token, cid = await visitor(server, "Burst")
    _, other = await visitor(server, "Other")
    bystander_token, bystander_cid = await visitor(server, "Calm")
    peer = await visitor_peer(server.url, token)
    try:
        for event in EVENTS:
            for data in HOSTILE:
                if isinstance(data, dict):
                    data = {
                        k: v.format(cid=cid, other=other) if isinstance(v, str) else v
                        for k, v in data.items()
                    }
                check_ack(event, await peer.call(event, data))
    finally:
        await peer.close()
    for frame in BROKEN_FRAMES:
        await drop_after(server, token, frame)
    assert await message_count(server, other) == 0
    async with aiohttp.ClientSession() as http, http.get(server.url + "/health") as r:
        assert r.status == 200
    bystander = await visitor_peer(server.url, bystander_token)
    try:
        ack = await bystander.call(
            "send", {"chat_id": bystander_cid, "text": "still fine", "client_id": client_id()}
        )
        assert ack["ok"], ack
    finally:
        await bystander.close()
    assert await message_count(server, bystander_cid) == 1
    assert "chat handler failed" not in server.log()
    assert "Traceback" not in server.log()
