"""Telegram media both ways, through a real server and the fake Bot API (real wire format):
visitor photos go out as photos, voice messages as OGG/Opus voice notes, audio as audio; the
operator's photos, voice notes and audio are downloaded (getFile) and shown in the web chat; a
file too big to pass on is announced in both places."""

from __future__ import annotations

import io

import av
from PIL import Image

from tests.support.clients import VISITOR_COOKIE, admin_csrf, client_id, start_visitor, visitor_peer
from tests.support.fake_telegram import FakeTelegram, SentMessage
from tests.support.media_files import fetch, jpeg, tone, upload
from tests.support.server import Server
from tests.support.telegram import login_via_telegram, with_text

TELEGRAM_ENV = {"MEDIA_MAX_BYTES": str(5 * 1024 * 1024)}


def codec_of(data: bytes) -> tuple[str, str]:
    with av.open(io.BytesIO(data)) as container:
        return container.format.name, container.streams.audio[0].codec_context.name


async def test_visitor_media_goes_to_telegram_as_photo_voice_and_audio(
    tg_server: Server, fake: FakeTelegram
) -> None:
    token, cid = await start_visitor(tg_server.url, "Medya")
    await fake.wait_for_sent(with_text(f"[CID: {cid}]"))

    status, body = await upload(
        tg_server.url, chat_id=cid, client_id=client_id(), data=jpeg(1200, 900),
        text="Kırık parça <b>burada</b>", visitor_token=token,
    )  # fmt: skip
    assert status == 200, body
    photo = await fake.wait_for_sent(lambda m: m.media_kind == "photo" and cid in (m.text or ""))
    assert photo.method == "sendPhoto" and photo.chat_id == fake.admin_chat_id
    assert "<b>Medya</b>" in (photo.text or "") and "&lt;b&gt;burada&lt;/b&gt;" in (
        photo.text or ""
    )
    assert Image.open(io.BytesIO(photo.data or b"")).format == "JPEG"

    # Chrome's webm/opus and Safari's mp4/aac both arrive as real voice notes (OGG/Opus).
    for data in (tone("webm", "libopus", 2.0), tone("mp4", "aac", 2.0)):
        status, body = await upload(
            tg_server.url, chat_id=cid, client_id=client_id(), data=data, kind="voice",
            filename="voice", content_type="audio/webm", visitor_token=token,
        )  # fmt: skip
        assert status == 200, body
    voices = await _wait_count(fake, lambda m: m.method == "sendVoice" and cid in (m.text or ""), 2)
    for voice in voices:
        assert voice.media_kind == "voice", "Telegram shows it as a voice note, not a file"
        assert codec_of(voice.data or b"") == ("ogg", "opus")
        assert voice.message["voice"]["duration"] == 2

    status, body = await upload(
        tg_server.url, chat_id=cid, client_id=client_id(), data=tone("mp3", "libmp3lame", 1.0),
        kind="audio", filename="kayıt.mp3", content_type="audio/mpeg", visitor_token=token,
    )  # fmt: skip
    assert status == 200, body
    audio = await fake.wait_for_sent(lambda m: m.method == "sendAudio" and cid in (m.text or ""))
    assert audio.media_kind == "audio" and audio.message["audio"]["file_name"] == "kayıt.mp3"
    assert codec_of(audio.data or b"")[1] in ("mp3", "mp3float")


async def _wait_count(fake: FakeTelegram, predicate, count: int) -> list[SentMessage]:  # type: ignore[no-untyped-def]
    await fake.wait_for_sent(lambda m: len([s for s in fake.sent() if predicate(s)]) >= count)
    return [s for s in fake.sent() if predicate(s)]


async def test_operator_media_from_telegram_reaches_the_visitor(
    tg_server: Server, fake: FakeTelegram
) -> None:
    token, cid = await start_visitor(tg_server.url, "Cevap")
    peer = await visitor_peer(tg_server.url, token)
    await peer.call("join", {"chat_id": cid})
    cookie = f"{VISITOR_COOKIE}={token}"
    try:
        notice = await fake.wait_for_sent(with_text(f"[CID: {cid}]"))

        await fake.admin_photo(jpeg(800, 600), caption="İşte fatura", reply_to=notice)
        got = await peer.wait_for("chat:message", lambda m: m["type"] == "photo")
        assert got["role"] == "admin" and got["text"] == "İşte fatura" and got["fileRef"]
        status, data, headers = await fetch(tg_server.url, got["fileRef"], cookie)
        assert status == 200 and headers["Content-Type"] == "image/jpeg"
        assert Image.open(io.BytesIO(data)).size == (800, 600)
        assert [c for c in fake.calls("getFile")] and [c for c in fake.calls("download")]

        await fake.admin_voice(tone("ogg", "libopus", 3.0), duration=3, reply_to=notice)
        got = await peer.wait_for("chat:message", lambda m: m["type"] == "voice")
        assert "0:03" in got["html"]
        status, data, headers = await fetch(tg_server.url, got["fileRef"], cookie)
        assert status == 200 and headers["Content-Type"] == "audio/webm"

        await fake.admin_audio(tone("mp3", "libmp3lame", 1.0), 1, "müzik.mp3", reply_to=notice)
        got = await peer.wait_for("chat:message", lambda m: m["type"] == "audio")
        assert "müzik.mp3" in got["html"]

        # Written as the operator's, never sent back to Telegram.
        assert not [s for s in fake.sent() if s.media_kind and cid in (s.text or "")]

        # Too big for the bot (over Telegram's 20 MB) or for the chat (over MEDIA_MAX_BYTES):
        # a clear notice in Telegram and in the visitor's chat, nothing downloaded.
        downloads = len(fake.calls("download"))
        big = await fake.admin_document(
            b"x" * 100, "video.mp3", reply_to=notice, size=25 * 1024 * 1024
        )
        reply = await fake.wait_for_sent(with_text("20 MB"))
        assert reply.reply_to_message_id == big.message["message_id"]
        system = await peer.wait_for("chat:message", lambda m: m["role"] == "system")
        assert "kadar büyük" in system["text"] and "20 MB" not in system["text"]
        await fake.admin_photo(jpeg(100, 100) + b"\0" * (6 * 1024 * 1024), reply_to=notice)
        await fake.wait_for_sent(with_text("5 MB"))
        # The visitor's notice comes on its own time: wait for it before counting messages.
        await peer.wait_for(
            "chat:message", lambda m: m["role"] == "system" and m["seq"] > system["seq"]
        )
        assert len(fake.calls("download")) == downloads

        # Not a picture behind a photo: the operator is told why, nothing reaches the visitor.
        before = len(peer.events["chat:message"])
        await fake.admin_photo(b"this is no jpeg", reply_to=notice)
        await fake.wait_for_sent(with_text("fotoğraf değil"))
        assert len(peer.events["chat:message"]) == before
        # A video (or any file that is not a picture or a recording): the operator is told.
        await fake.admin_document(b"\0" * 100, "clip.mp4", reply_to=notice)
        await fake.wait_for_sent(with_text("yalnızca fotoğraf"))
        assert len(peer.events["chat:message"]) == before
    finally:
        await peer.close()


async def test_panel_photo_goes_to_telegram(tg_server: Server, fake: FakeTelegram) -> None:
    _, cid = await start_visitor(tg_server.url, "Panel")
    await fake.wait_for_sent(with_text(f"[CID: {cid}]"))
    admin = await login_via_telegram(tg_server, fake)
    csrf = await admin_csrf(tg_server.url, admin)
    status, body = await upload(
        tg_server.url, chat_id=cid, client_id=client_id(), data=jpeg(), admin_token=admin, csrf=csrf
    )
    assert status == 200, body
    sent = await fake.wait_for_sent(lambda m: m.media_kind == "photo" and cid in (m.text or ""))
    assert "Panelden yanıt" in (sent.text or "")
