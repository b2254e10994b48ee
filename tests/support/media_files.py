"""Real media files made on the spot (Pillow, PyAV), and uploads through the real HTTP route."""

from __future__ import annotations

import array
import io
import math
from typing import Any

import aiohttp
import av
from av.audio.stream import AudioStream
from PIL import Image

from tests.support.clients import ADMIN_COOKIE, VISITOR_COOKIE


def jpeg(width: int = 640, height: int = 480, *, exif: bool = False) -> bytes:
    img = Image.new("RGB", (width, height), (30, 120, 200))
    for x in range(0, width, 64):  # some detail, so the encoder has work to do
        for y in range(0, height, 64):
            img.putpixel((x, y), (255, 255, 0))
    out = io.BytesIO()
    kwargs: dict[str, Any] = {}
    if exif:
        info = Image.Exif()
        info[0x010F] = "SecretCam"  # Make
        info[0x8825] = {2: (41.0, 0.0, 0.0)}  # GPS latitude
        kwargs["exif"] = info
    img.save(out, "JPEG", quality=90, **kwargs)
    return out.getvalue()


def png(width: int = 64, height: int = 64, *, alpha: bool = False) -> bytes:
    img = Image.new(
        "RGBA" if alpha else "RGB", (width, height), (10, 200, 10, 128)[: 4 if alpha else 3]
    )
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def gif_polyglot() -> bytes:
    """A real GIF followed by a script: sniffers call it image/gif."""
    out = io.BytesIO()
    Image.new("P", (8, 8)).save(out, "GIF")
    return out.getvalue() + b"<script>alert(document.cookie)</script>"


def header_only_gif() -> bytes:
    """A GIF header and then HTML: no image behind the magic bytes."""
    return b"GIF89a" + b"<html><script>alert(1)</script></html>"


def bomb_png(side: int = 20000) -> bytes:
    """A small file that would decode to side*side pixels."""
    out = io.BytesIO()
    Image.new("1", (side, side)).save(out, "PNG")
    return out.getvalue()


def tone(
    fmt: str = "webm",
    codec: str = "libopus",
    seconds: float = 1.5,
    rate: int = 48000,
    options: dict[str, str] | None = None,
) -> bytes:
    """A sine tone encoded by FFmpeg (PyAV): webm/opus as Chrome records, mp4/aac as Safari."""
    out = io.BytesIO()
    with av.open(out, "w", format=fmt, options=options or {}) as container:
        stream = container.add_stream(codec, rate=rate)
        assert isinstance(stream, AudioStream)
        stream.layout = "mono"
        n = int(rate * seconds)
        pcm = array.array(
            "h", (int(math.sin(2 * math.pi * 440 * i / rate) * 8000) for i in range(n))
        )
        frame = av.AudioFrame(format="s16", layout="mono", samples=n)
        frame.planes[0].update(pcm.tobytes())
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


async def upload(
    base_url: str,
    *,
    chat_id: str,
    client_id: str,
    data: bytes,
    kind: str = "photo",
    filename: str = "photo.jpg",
    content_type: str = "image/jpeg",
    visitor_token: str | None = None,
    admin_token: str | None = None,
    csrf: str | None = None,
    text: str = "",
    hold: bool = False,
) -> tuple[int, dict[str, Any]]:
    """POST /media/upload as the browser does (multipart); returns (status, JSON)."""
    form = aiohttp.FormData(quote_fields=False)  # raw UTF-8 names, as browsers send them
    form.add_field("chat_id", chat_id)
    form.add_field("client_id", client_id)
    form.add_field("type", kind)
    if text:
        form.add_field("text", text)
    if hold:
        form.add_field("hold", "1")
    headers: dict[str, str] = {}
    if admin_token is not None:
        form.add_field("as", "admin")
        headers["Cookie"] = f"{ADMIN_COOKIE}={admin_token}"
        if csrf:
            headers["X-CSRF-Token"] = csrf
    elif visitor_token is not None:
        headers["Cookie"] = f"{VISITOR_COOKIE}={visitor_token}"
    form.add_field("file", data, filename=filename, content_type=content_type)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.post(base_url + "/media/upload", data=form, headers=headers) as resp:
            return resp.status, await resp.json()


async def fetch(base_url: str, path: str, cookie: str | None = None) -> tuple[int, bytes, Any]:
    """GET a media URL with a cookie (or none); returns (status, body, headers)."""
    headers = {"Cookie": cookie} if cookie else {}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.get(base_url + path, headers=headers) as resp:
            return resp.status, await resp.read(), resp.headers
