"""Voice messages as each engine records them: Safari's clean fragmented MP4/AAC, and
WebKitGTK's with a broken last fragment (`moof moof mdat`), through the real upload route.

A recording whose end is damaged keeps what decodes when that is most of it, and the answer
says how much was lost; a recording that is mostly damaged is refused, as before.
"""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path

import av
import pytest
from playwright.async_api import Browser, Page, expect

from tests.support.browser import phone
from tests.support.clients import VISITOR_COOKIE, client_id, start_visitor
from tests.support.media_files import fetch, upload
from tests.support.recordings import (
    boxes,
    cut_in_last_fragment,
    fragmented_aac,
    garble_mdat,
    webkit_broken_tail,
)
from tests.support.server import Server, sqlite_server_fixture

server = sqlite_server_fixture("recordings")


async def send_voice(server: Server, data: bytes) -> tuple[int, dict[str, object], str, str]:
    token, cid = await start_visitor(server.url, "Ses")
    status, body = await upload(
        server.url,
        chat_id=cid,
        client_id=client_id(),
        data=data,
        kind="voice",
        filename="voice.m4a",
        content_type="audio/mp4",
        visitor_token=token,
    )
    return status, body, token, cid


async def stored_seconds(server: Server, token: str, ref: object) -> float:
    """The stored copy's length, every packet of it decoded (the copy has no damage)."""
    status, data, headers = await fetch(server.url, str(ref), f"{VISITOR_COOKIE}={token}")
    assert status == 200 and headers["Content-Type"] == "audio/mp4"
    samples = 0
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.audio[0]
        for packet in container.demux(stream):
            for frame in packet.decode():  # raises on a damaged packet
                samples += frame.samples
        rate = stream.codec_context.sample_rate
    return samples / rate


async def test_safari_fragmented_mp4_is_kept_whole(server: Server) -> None:
    clean = fragmented_aac(4.0)
    assert [b[0] for b in boxes(clean)][:4] == ["ftyp", "moov", "moof", "mdat"]
    status, body, token, _ = await send_voice(server, clean)
    assert status == 200 and body["ok"], body
    assert "notice" not in body
    message = body["message"]
    assert isinstance(message, dict) and "0:04" in message["html"]
    assert await stored_seconds(server, token, message["fileRef"]) >= 3.9


async def test_webkit_recording_with_a_broken_last_fragment_keeps_what_decodes(
    server: Server,
) -> None:
    broken = webkit_broken_tail(fragmented_aac(4.0))
    assert [b[0] for b in boxes(broken)][-3:] == ["moof", "moof", "mdat"]  # as WebKitGTK writes
    status, body, token, _ = await send_voice(server, broken)
    assert status == 200 and body["ok"], body
    message = body["message"]
    assert isinstance(message, dict)
    # Three of the four one-second fragments decode: they are sent, and the sender is told.
    assert "0:03" in message["html"]
    assert body["notice"] == "Kaydın sonu bozuktu: 0:03 gönderildi, 0:01 okunamadı.", body
    assert 2.9 <= await stored_seconds(server, token, message["fileRef"]) <= 3.1


async def test_recording_cut_inside_its_last_fragment_is_kept(server: Server) -> None:
    status, body, token, _ = await send_voice(server, cut_in_last_fragment(fragmented_aac(4.0)))
    assert status == 200 and body["ok"], body
    message = body["message"]
    assert isinstance(message, dict) and "0:03" in message["html"]
    assert await stored_seconds(server, token, message["fileRef"]) >= 3.0


async def test_mostly_damaged_recording_is_refused(server: Server) -> None:
    mostly = garble_mdat(fragmented_aac(4.0), 1, 2, 3)  # only the first second decodes
    status, body, _, _ = await send_voice(server, mostly)
    assert status == 400 and body["error"] == "media_broken_audio", (status, body)
    assert body["message"] == "Ses kaydı bozuk ya da eksik."


# In the page ----------------------------------------------------------------------------------

# The engine's recorder, writing the bytes the test queues (as WebKitGTK's writes its own): the
# page, the upload and the server's checks are the real ones.
RECORDER = """
(() => {
  const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  window.__recordings = [];
  class QueuedRecorder extends EventTarget {
    static isTypeSupported(type) { return type === "audio/mp4"; }
    constructor(stream) { super(); this.stream = stream; this.mimeType = "audio/mp4"; this.state = "inactive"; }
    start() { this.state = "recording"; }
    stop() {
      this.state = "inactive";
      const event = new Event("dataavailable");
      event.data = new Blob([bytes(window.__recordings.shift())], { type: "audio/mp4" });
      this.dispatchEvent(event);
      this.dispatchEvent(new Event("stop"));
    }
  }
  window.MediaRecorder = QueuedRecorder;
})();
"""


async def record(page: Page, data: bytes) -> None:
    await page.evaluate("(b64) => window.__recordings.push(b64)", base64.b64encode(data).decode())
    await page.locator("#composer [data-record]").click()
    await expect(page.locator("#recorder")).to_be_visible()
    await page.locator("#recorder [data-recorder=send]").click()


@pytest.mark.browser
async def test_a_refused_recording_stays_on_the_page(browser: Browser, server: Server) -> None:
    context = await browser.new_context(**phone(390, 844), accept_downloads=True)
    context.set_default_timeout(10_000)
    await context.add_init_script(RECORDER)
    page = await context.new_page()
    try:
        await page.goto(server.url + "/")
        await page.locator("#visitor-name").fill("Kayıt")
        await page.locator("#start-form button[type=submit]").click()
        await expect(page.locator("#conversation[data-chat-id]")).to_be_visible()

        # Mostly damaged: the server refuses it, and the recording stays with its reason, a
        # retry and a download of exactly what was recorded.
        mostly = garble_mdat(fragmented_aac(4.0), 1, 2, 3)
        await record(page, mostly)
        kept = page.locator("#messages li.msg--upload.msg--failed")
        await expect(kept).to_have_count(1)
        await expect(kept.locator(".msg__state")).to_have_text("Ses kaydı bozuk ya da eksik.")
        await expect(kept.locator("[data-upload=retry]")).to_be_visible()
        download = kept.locator("a[data-upload=download]")
        await expect(download).to_have_text("İndir")
        await expect(download).to_have_attribute("download", "voice.m4a")
        async with page.expect_download() as saving:
            await download.click()
        saved = await (await saving.value).path()
        assert await asyncio.to_thread(Path(saved).read_bytes) == mostly
        await expect(page.locator("#messages li.msg[data-seq]")).to_have_count(0)

        # Trying again is refused again: the recording is still there.
        async with page.expect_response("**/media/upload") as answer:
            await kept.locator("[data-upload=retry]").click()
        assert (await answer.value).status == 400
        await expect(kept).to_have_count(1)
        await expect(kept.locator("a[data-upload=download]")).to_have_count(1)

        # A damaged end (WebKitGTK's): sent without it, and the visitor is told how much.
        await record(page, webkit_broken_tail(fragmented_aac(4.0)))
        voice = page.locator("#messages li.msg[data-seq] .msg__audio audio")
        await expect(voice).to_have_count(1)
        await expect(page.locator("#composer-error")).to_have_text(
            "Kaydın sonu bozuktu: 0:03 gönderildi, 0:01 okunamadı."
        )
        await expect(kept).to_have_count(1)  # the refused one is untouched
    finally:
        await context.close()
