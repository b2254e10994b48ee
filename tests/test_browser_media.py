"""Photos and voice messages in Debian's headless Chromium, against the real server.

The visitor picks a photo (shrunk in the page before upload), records a voice message with
Chromium's fake microphone, sees a refused file's reason, and retries a failed upload without
a duplicate; the operator's panel shows them live and sends a photo back.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from PIL import Image
from playwright.async_api import Browser, Page, Request, Route, expect

from tests.support.media_files import jpeg
from tests.support.pages import (  # the browser-test helpers, shared
    DESKTOP,
    PHONE,
    admin_sign_in,
    close_all,
    open_conversation,
    open_page,
    start_chat,
)
from tests.support.server import Server

pytestmark = pytest.mark.browser

PHOTOS = "#messages li.msg[data-seq] .msg__photo img"
VOICES = "#messages li.msg[data-seq] .msg__audio audio"


async def loaded_image_width(page: Page, selector: str) -> int:
    img = page.locator(selector).last
    await expect(img).to_be_visible()
    await page.wait_for_function(
        "(img) => img.complete && img.naturalWidth > 0", arg=await img.element_handle()
    )
    return int(await img.evaluate("(img) => img.naturalWidth"))


async def test_photos_and_voice_both_ways(browser: Browser, server: Server, tmp_path: Path) -> None:
    _, visitor, visitor_watch = await open_page(browser, PHONE)
    _, admin, admin_watch = await open_page(browser, DESKTOP)
    uploads: list[int] = []
    scripts: list[str] = []

    def seen(request: Request) -> None:
        if request.url.endswith("/media/upload"):
            uploads.append(len(request.post_data_buffer or b""))
        if "/static/js/" in request.url:
            scripts.append(request.url)

    visitor.on("request", seen)
    try:
        await admin_sign_in(admin, server)
        cid = await start_chat(visitor, server.url, "Resim")
        # The first load does not fetch the media code.
        assert not [s for s in scripts if "media.js" in s], scripts

        # A big photo from the gallery: shrunk in the page, then shown in both pages.
        big = tmp_path / "IMG_4032.jpg"
        big.write_bytes(jpeg(4000, 3000))
        await visitor.locator("#composer .attach summary").click()
        await visitor.locator("input[data-media=photo]:not([capture])").set_input_files(str(big))
        await expect(visitor.locator(PHOTOS)).to_have_count(1)
        assert await loaded_image_width(visitor, PHOTOS) == 2048
        assert [s for s in scripts if "media.js" in s], "loaded on first use"
        assert uploads and uploads[-1] < big.stat().st_size
        await expect(visitor.locator("#messages li.msg--pending")).to_have_count(0)

        await open_conversation(admin, cid)
        assert await loaded_image_width(admin, PHOTOS) == 2048
        row = admin.locator(f"#conversation-list li.conv[data-chat-id='{cid}'] .conv__preview")
        await expect(row).to_contain_text("📷")

        # A text file with a .jpg name: refused, with the reason in Turkish, nothing shown.
        fake = tmp_path / "photo.jpg"
        fake.write_text("not a picture at all")
        await visitor.locator("input[data-media=photo]:not([capture])").set_input_files(str(fake))
        error = visitor.locator("#composer-error")
        await expect(error).to_be_visible()
        await expect(error).to_contain_text("fotoğraf değil")
        await expect(visitor.locator("#messages li.msg--upload")).to_have_count(0)
        await expect(visitor.locator(PHOTOS)).to_have_count(1)

        # A voice message from the (fake) microphone: timer, then sent and playable.
        await visitor.locator("#composer [data-record]").click()
        recorder = visitor.locator("#recorder")
        await expect(recorder).to_be_visible()
        await expect(visitor.locator("#composer")).to_be_hidden()
        await expect(visitor.locator("#recorder-time")).to_have_text(re.compile(r"0:0[2-9]"))
        await recorder.locator("[data-recorder=send]").click()
        await expect(visitor.locator(VOICES)).to_have_count(1)
        await expect(visitor.locator("#composer")).to_be_visible()
        duration = await visitor.locator(VOICES).evaluate(
            """(audio) => new Promise((resolve) => {
                if (audio.readyState >= 1) resolve(audio.duration);
                audio.addEventListener("loadedmetadata", () => resolve(audio.duration));
                audio.load();
            })"""
        )
        assert 1.0 < duration < 30.0, duration
        await expect(admin.locator(VOICES)).to_have_count(1)
        await expect(admin.locator("#messages .msg__duration")).to_have_text(re.compile(r"0:0\d"))

        # A cancelled recording sends nothing.
        await visitor.locator("#composer [data-record]").click()
        await expect(recorder).to_be_visible()
        await recorder.locator("[data-recorder=cancel]").click()
        await expect(recorder).to_be_hidden()

        # The connection drops during an upload: the bubble offers a retry, which stores it once.
        async def drop(route: Route) -> None:
            await route.abort("connectionreset")

        await visitor.route("**/media/upload", drop)
        small = tmp_path / "small.jpg"
        small.write_bytes(jpeg(300, 200))
        await visitor.locator("input[data-media=photo]:not([capture])").set_input_files(str(small))
        failed = visitor.locator("#messages li.msg--upload.msg--failed")
        await expect(failed).to_have_count(1)
        await visitor.unroute("**/media/upload", drop)
        await failed.locator("[data-upload=retry]").click()
        await expect(visitor.locator(PHOTOS)).to_have_count(2)
        await expect(visitor.locator("#messages li.msg--upload")).to_have_count(0)
        await expect(admin.locator(PHOTOS)).to_have_count(2)

        # The operator sends a photo from the panel; the phone shows it.
        reply = tmp_path / "reply.png"
        img = Image.new("RGB", (500, 400), (200, 50, 50))
        out = io.BytesIO()
        img.save(out, "PNG")
        reply.write_bytes(out.getvalue())
        await admin.locator("#pane input[data-media=photo]:not([capture])").set_input_files(
            str(reply)
        )
        await expect(admin.locator(PHOTOS)).to_have_count(3)
        await expect(visitor.locator(PHOTOS)).to_have_count(3)
        assert await loaded_image_width(visitor, PHOTOS) == 500
        theirs = visitor.locator("#messages li.msg[data-seq]").last
        await expect(theirs).to_have_class(re.compile(r"\bmsg--theirs\b"))

        # After a reload everything is there, once, in order.
        await visitor.reload()
        await expect(visitor.locator(PHOTOS)).to_have_count(3)
        await expect(visitor.locator(VOICES)).to_have_count(1)
        # The refused and the cut upload are logged by Chromium itself; nothing else may be.
        visitor_watch.console_errors = [
            e for e in visitor_watch.console_errors if "/media/upload" not in e
        ]
        visitor_watch.assert_clean()
        admin_watch.assert_clean()
    finally:
        await close_all(visitor, admin)
