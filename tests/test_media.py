"""Photos and voice messages through the real server: accepted by content, stored once, served
only to the conversation's participants; every bad file refused with a clear error and nothing
stored."""

from __future__ import annotations

import asyncio
import io
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import av
from PIL import Image

from tests.support.clients import (
    ADMIN_COOKIE,
    VISITOR_COOKIE,
    admin_csrf,
    admin_peer,
    client_id,
    panel_action,
    start_visitor,
    visitor_peer,
)
from tests.support.media_files import (
    bomb_png,
    fetch,
    gif_polyglot,
    header_only_gif,
    jpeg,
    png,
    tone,
    upload,
)
from tests.support.server import Server

LIMIT = 300_000
SERVER_ENV = {"MEDIA_MAX_BYTES": str(LIMIT), "MEDIA_VISITOR_QUOTA": str(2 * LIMIT)}


def stored_files(server: Server) -> list[Path]:
    root = server.workdir / "media"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def visitor_upload(
    server: Server, token: str, cid: str, kind: str, data: bytes, filename: str, content_type: str
) -> tuple[int, dict[str, Any]]:
    """One file from the visitor's page, under a fresh client id."""
    return await upload(
        server.url, chat_id=cid, client_id=client_id(), data=data, kind=kind,
        filename=filename, content_type=content_type, visitor_token=token,
    )  # fmt: skip


async def oversized_upload(
    server: Server, token: str, cid: str, size: int
) -> tuple[int, dict[str, object]]:
    """Announce a huge multipart body, send its first 64 KiB only, and read the answer."""
    boundary = "sohbetboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="chat_id"\r\n\r\n{cid}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(
            (
                "POST /media/upload HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{server.port}\r\n"
                f"Cookie: {VISITOR_COOKIE}={token}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                f"Content-Length: {len(head) + size}\r\n\r\n"
            ).encode()
            + head
            + b"\xff" * 65536
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        data = await reader.readexactly(int(headers["content-length"]))
    finally:
        writer.close()
    return int(status_line.split()[1]), json.loads(data)


async def last_seq(server: Server, token: str, cid: str) -> int:
    peer = await visitor_peer(server.url, token)
    try:
        ack = await peer.call("join", {"chat_id": cid})
        return int(ack["last_seq"])
    finally:
        await peer.close()


async def test_photo_stored_once_shown_and_served_to_participants_only(
    server: Server, admin_token: str
) -> None:
    token, cid = await start_visitor(server.url, "Foto")
    admin = await admin_peer(server.url, admin_token)
    await admin.call("join", {"chat_id": cid})
    cid_ = client_id()
    before = set(stored_files(server))
    status, body = await upload(
        server.url,
        chat_id=cid,
        client_id=cid_,
        data=jpeg(3000, 1500, exif=True),
        visitor_token=token,
        filename="IMG_0001.jpg",
    )
    assert status == 200, body
    message = body["message"]
    assert body["ok"] and not body["duplicate"] and message["type"] == "photo"
    src = message["fileRef"]
    assert re.fullmatch(r"/media/[0-9a-f]{32}\.jpg", src)
    assert f'src="{src}"' in message["html"] and "<img" in message["html"]

    # The operator's open pane gets it live, rendered the same way.
    pushed = await admin.wait_for("chat:message", lambda m: m["client_id"] == cid_)
    assert f'src="{src}"' in pushed["html"]
    await admin.close()

    # A retry with the same client id (its answer was lost) stores nothing new.
    status, again = await upload(
        server.url, chat_id=cid, client_id=cid_, data=jpeg(3000, 1500), visitor_token=token
    )
    assert status == 200 and again["duplicate"] and again["message"]["seq"] == message["seq"]
    new_files = set(stored_files(server)) - before
    assert len(new_files) == 1

    # The visitor and the operator may see it: our content type, nosniff, our own re-encoding.
    status, data, headers = await fetch(server.url, src, f"{VISITOR_COOKIE}={token}")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in headers["Content-Security-Policy"]
    picture = Image.open(io.BytesIO(data))
    assert picture.format == "JPEG" and max(picture.size) == 2048  # downscaled on the server
    assert b"SecretCam" not in data and not picture.getexif()  # metadata stripped
    status, _, _ = await fetch(server.url, src, f"{ADMIN_COOKIE}={admin_token}")
    assert status == 200
    # Byte ranges (Safari's audio needs them).
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.get(
            server.url + src, headers={"Cookie": f"{VISITOR_COOKIE}={token}", "Range": "bytes=0-9"}
        ) as resp:
            assert resp.status == 206 and len(await resp.read()) == 10

    # Anyone else: 404, the same as a file that does not exist.
    other_token, _ = await start_visitor(server.url, "Başka")
    for cookie in (None, f"{VISITOR_COOKIE}={other_token}", f"{ADMIN_COOKIE}=forged"):
        status, data, _ = await fetch(server.url, src, cookie)
        assert status == 404 and b"\xff\xd8" not in data
    for path in (
        "/media/..%2F..%2Fetc%2Fpasswd",
        "/media/../app/config.py",
        "/media/" + "0" * 32 + ".jpg",
    ):
        status, _, _ = await fetch(server.url, path, f"{VISITOR_COOKIE}={token}")
        assert status == 404

    # The visitor's page shows it after a reload, from history.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.get(server.url + "/", headers={"Cookie": f"{VISITOR_COOKIE}={token}"}) as r:
            assert f'src="{src}"' in await r.text()


async def test_voice_and_audio_are_probed_and_remuxed(server: Server) -> None:
    token, cid = await start_visitor(server.url, "Ses")
    cookie = f"{VISITOR_COOKIE}={token}"
    cases = [
        ("voice", tone("webm", "libopus", 2.0), "voice.webm", "audio/webm", "audio/webm"),  # Chrome
        ("audio", tone("wav", "pcm_s16le", 2.0), "memo.wav", "audio/wav", "audio/webm"),  # → Opus
        ("voice", tone("mp4", "aac", 2.0), "voice.mp4", "audio/mp4", "audio/mp4"),  # Safari
        (
            "audio",
            tone("mp3", "libmp3lame", 2.0),
            "şarkı <img src=x onerror=alert(1)>.mp3",
            "audio/mpeg",
            "audio/mpeg",
        ),
    ]
    for kind, data, name, claimed, served in cases:
        status, body = await visitor_upload(server, token, cid, kind, data, name, claimed)
        assert status == 200, body
        message = body["message"]
        assert message["type"] == kind
        html = message["html"]
        assert "<audio" in html and "0:02" in html  # played in the bubble, with its length
        status, stored, headers = await fetch(server.url, message["fileRef"], cookie)
        assert status == 200 and headers["Content-Type"] == served
        with av.open(io.BytesIO(stored)) as container:
            assert container.streams.audio and not container.streams.video
        if name.endswith(".mp3"):
            # The file name is display text, escaped.
            assert "şarkı &lt;img src=x onerror=alert(1)&gt;.mp3" in html and "<img" not in html, (
                re.findall(r"msg__audio-label.*", html)
            )


async def test_bad_files_are_refused_clearly_and_nothing_is_stored(
    server: Server, admin_token: str
) -> None:
    token, cid = await start_visitor(server.url, "Kötü")
    before_files = stored_files(server)
    big = jpeg(200, 200)
    at_limit = big + b"\0" * (LIMIT - len(big))  # bytes after a JPEG's end are ignored
    cases = [
        # (kind, data, filename, content type, expected error code)
        (
            "photo",
            b"just some text, not a picture\n" * 20,
            "photo.jpg",
            "image/jpeg",
            "media_not_image",
        ),
        ("photo", header_only_gif(), "cat.gif", "image/gif", "media_not_image"),
        ("photo", jpeg(800, 600)[:3000], "cut.jpg", "image/jpeg", "media_broken_image"),
        ("photo", at_limit + b"\0", "big.jpg", "image/jpeg", "media_too_large"),
        ("photo", bomb_png(), "bomb.png", "image/png", "media_too_many_pixels"),
        ("photo", b"", "empty.jpg", "image/jpeg", "media_empty"),
        ("voice", jpeg(), "voice.webm", "audio/webm", "media_not_audio"),
        ("voice", b"OggS" + b"\0" * 400, "voice.ogg", "audio/ogg", "media_not_audio"),
        ("video", jpeg(), "x.jpg", "image/jpeg", "media_bad_kind"),
    ]
    for kind, data, filename, content_type, code in cases:
        status, body = await visitor_upload(server, token, cid, kind, data, filename, content_type)
        assert status in (400, 413) and body["error"] == code, (filename, status, body)
        assert body["message"] and "media_" not in body["message"]  # a sentence, in Turkish
    status, body = await upload(
        server.url,
        chat_id=cid,
        client_id=client_id(),
        data=big + b"\0" * 10,
        filename="big.jpg",
        visitor_token=token,
    )
    assert status == 200
    status, body = await upload(
        server.url,
        chat_id=cid,
        client_id=client_id(),
        data=at_limit,
        filename="limit.jpg",
        visitor_token=token,
    )
    assert status == 200, body  # exactly at the limit is fine; one byte more is not
    assert await last_seq(server, token, cid) == 2  # only the two good ones
    assert len(stored_files(server)) == len(before_files) + 2

    # A body far over the limit is refused from its Content-Length, before it is read: the
    # answer comes while most of the body has not even been sent.
    status, body = await oversized_upload(server, token, cid, 30 * LIMIT)
    assert status == 400 and body["error"] == "media_too_large", body

    # The polyglot: accepted as the picture it also is, served as our own clean JPEG.
    status, body = await upload(
        server.url,
        chat_id=cid,
        client_id=client_id(),
        data=gif_polyglot(),
        filename="x.gif",
        content_type="image/gif",
        visitor_token=token,
    )
    assert status == 200, body
    status, data, headers = await fetch(
        server.url, body["message"]["fileRef"], f"{VISITOR_COOKIE}={token}"
    )
    assert headers["Content-Type"] in ("image/jpeg", "image/png") and b"<script" not in data

    # Path-traversal names are display text only: the object name is the server's.
    status, body = await visitor_upload(
        server, token, cid, "audio", tone("mp3", "libmp3lame", 1.0),
        "../../../etc/passwd\\..\\x.mp3", "audio/mpeg",
    )  # fmt: skip
    assert status == 200, body
    assert re.fullmatch(r"/media/[0-9a-f]{32}\.mp3", body["message"]["fileRef"])
    assert "x.mp3" in body["message"]["html"] and "etc/passwd" not in body["message"]["html"]
    assert all(p.is_relative_to(server.workdir / "media") for p in stored_files(server))

    # Someone else's conversation: refused as if it did not exist, nothing stored.
    _, other_cid = await start_visitor(server.url, "Diğer")
    status, body = await upload(
        server.url, chat_id=other_cid, client_id=client_id(), data=jpeg(), visitor_token=token
    )
    assert status == 404 and body["error"] == "bad_chat"
    status, body = await upload(server.url, chat_id=cid, client_id=client_id(), data=jpeg())
    assert status == 404  # no cookie at all

    # The operator needs the CSRF token.
    status, body = await upload(
        server.url, chat_id=cid, client_id=client_id(), data=jpeg(), admin_token=admin_token
    )
    assert status == 403 and body["error"] == "csrf"
    csrf = await admin_csrf(server.url, admin_token)
    status, body = await upload(
        server.url,
        chat_id=cid,
        client_id=client_id(),
        data=png(alpha=True),
        filename="a.png",
        content_type="image/png",
        admin_token=admin_token,
        csrf=csrf,
    )
    assert status == 200 and body["message"]["role"] == "admin"
    assert body["message"]["fileRef"].endswith(".png")  # transparency kept


async def test_visitor_quota(server: Server) -> None:
    token, cid = await start_visitor(server.url, "Kota")
    noisy = Image.effect_noise((450, 450), 120).convert("RGB")
    out = io.BytesIO()
    noisy.save(out, "JPEG", quality=90)
    data = out.getvalue()
    assert len(data) < LIMIT
    statuses = []
    for _ in range(8):
        status, body = await upload(
            server.url, chat_id=cid, client_id=client_id(), data=data, visitor_token=token
        )
        statuses.append(body.get("error") or status)
        if status != 200:
            break
    assert statuses[-1] == "media_quota" and statuses[0] == 200, statuses


async def test_deleting_a_media_message_removes_its_file(server: Server, admin_token: str) -> None:
    token, cid = await start_visitor(server.url, "Sil")
    status, body = await upload(
        server.url, chat_id=cid, client_id=client_id(), data=jpeg(), visitor_token=token
    )
    assert status == 200
    src, seq = body["message"]["fileRef"], body["message"]["seq"]
    key = src.rsplit("/", 1)[1]
    assert any(p.name == key for p in stored_files(server))
    csrf = await admin_csrf(server.url, admin_token)
    status, page = await panel_action(
        server.url, admin_token, csrf, f"/admin/c/{cid}/messages/delete", {"seq": str(seq)}
    )
    assert status == 200, page
    status, _, _ = await fetch(server.url, src, f"{VISITOR_COOKIE}={token}")
    assert status == 404
    assert not any(p.name == key for p in stored_files(server))


async def test_the_seeds_two_step_send_with_a_file_ref(server: Server, admin_token: str) -> None:
    """`send {type: "photo", fileRef}` after an upload with hold=1 (the contract's shape)."""
    token, cid = await start_visitor(server.url, "İkiAdım")
    status, held = await upload(
        server.url, chat_id=cid, client_id=client_id(), data=jpeg(), visitor_token=token, hold=True
    )
    assert status == 200 and held["ok"] and held["fileRef"].startswith("upload:"), held
    assert await last_seq(server, token, cid) == 0, "held, not sent yet"
    status, voice = await upload(
        server.url, chat_id=cid, client_id=client_id(), data=tone("webm", "libopus", 1.0),
        kind="voice", filename="v.webm", content_type="audio/webm", visitor_token=token, hold=True,
    )  # fmt: skip
    assert status == 200, voice

    admin = await admin_peer(server.url, admin_token)
    await admin.call("join", {"chat_id": cid})
    visitor = await visitor_peer(server.url, token)
    await visitor.call("join", {"chat_id": cid})
    try:
        send_id = client_id()
        payload = {"chat_id": cid, "role": "visitor", "type": "photo", "fileRef": held["fileRef"],
                   "text": "Fatura", "time": "2026-01-01T00:00:00Z", "client_id": send_id}  # fmt: skip
        ack = await visitor.call("send", payload)
        assert ack["ok"] and not ack["duplicate"], ack
        message = ack["message"]
        assert message["type"] == "photo" and message["text"] == "Fatura"
        assert re.fullmatch(r"/media/[0-9a-f]{32}\.jpg", message["fileRef"])
        pushed = await admin.wait_for("chat:message", lambda m: m["client_id"] == send_id)
        assert pushed["fileRef"] == message["fileRef"]
        status, _, headers = await fetch(
            server.url, message["fileRef"], f"{VISITOR_COOKIE}={token}"
        )
        assert status == 200 and headers["Content-Type"] == "image/jpeg"

        again = await visitor.call("send", payload)  # a retry after a lost ack
        assert again["ok"] and again["duplicate"] and again["message"]["seq"] == message["seq"]
        reused = await visitor.call("send", {**payload, "client_id": client_id()})
        assert reused["error"] == "media_bad_ref", "one file, one message"

        ack = await visitor.call(
            "send",
            {
                "chat_id": cid,
                "type": "voice",
                "fileRef": voice["fileRef"],
                "client_id": client_id(),
            },
        )
        assert ack["ok"] and ack["message"]["type"] == "voice" and "0:01" in ack["message"]["html"]

        # Refused: the wrong kind, a forged signature, another conversation's reference.
        _, other = await upload(
            server.url,
            chat_id=cid,
            client_id=client_id(),
            data=jpeg(),
            visitor_token=token,
            hold=True,
        )
        wrong_kind = await visitor.call(
            "send",
            {
                "chat_id": cid,
                "type": "voice",
                "fileRef": other["fileRef"],
                "client_id": client_id(),
            },
        )
        forged = other["fileRef"][:-4] + "0000"
        bad_sig = await visitor.call(
            "send", {"chat_id": cid, "type": "photo", "fileRef": forged, "client_id": client_id()}
        )
        other_token, other_cid = await start_visitor(server.url, "Başkası")
        stranger = await visitor_peer(server.url, other_token)
        await stranger.call("join", {"chat_id": other_cid})
        stolen = await stranger.call(
            "send",
            {
                "chat_id": other_cid,
                "type": "photo",
                "fileRef": other["fileRef"],
                "client_id": client_id(),
            },
        )
        await stranger.close()
        for refused in (wrong_kind, bad_sig, stolen):
            assert refused["ok"] is False and refused["error"] == "media_bad_ref", refused
            assert "yeniden yükleyin" in refused["message"]
        ok = await visitor.call(
            "send",
            {
                "chat_id": cid,
                "type": "photo",
                "fileRef": other["fileRef"],
                "client_id": client_id(),
            },
        )
        assert ok["ok"], "still usable by its owner"
    finally:
        await admin.close()
        await visitor.close()


async def test_one_visitor_cannot_flood_the_decoders(server: Server) -> None:
    token, cid = await start_visitor(server.url, "Sel")
    small = png(8, 8)
    answers = []
    for _ in range(31):
        status, body = await upload(
            server.url, chat_id=cid, client_id=client_id(), data=small, filename="a.png",
            content_type="image/png", visitor_token=token,
        )  # fmt: skip
        answers.append((status, body.get("error")))
    assert answers[:30] == [(200, None)] * 30
    assert answers[30] == (429, "rate_limited")
    other_token, other_cid = await start_visitor(server.url, "Komşu")
    status, _ = await upload(
        server.url, chat_id=other_cid, client_id=client_id(), data=small, visitor_token=other_token
    )
    assert status == 200, "a budget per visitor, not for everyone"
