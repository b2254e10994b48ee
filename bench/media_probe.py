"""How long the media checks take: what one upload costs the server's CPU (app/media/probe.py).

Every upload is decoded and re-encoded (photos) or decoded and remuxed/transcoded (audio) in a
worker thread, at most two at once. This prints the median and worst time of each step over a
few runs, on files made here: a 12-megapixel phone photo, a PNG screenshot, a minute of voice as
Chrome (webm/opus) and Safari (mp4/aac) record it, and the OGG/Opus voice note made for Telegram
(a remux from Opus, a transcode from AAC: the two in the same run, so their ratio is fair).

    .venv/bin/python -m bench.media_probe [--runs 5]
"""

from __future__ import annotations

import argparse
import array
import io
import json
import math
import os
import statistics
import time
from collections.abc import Callable

import av
from av.audio.stream import AudioStream
from PIL import Image

from app.media import probe

LIMITS = {"max_pixels": 40_000_000, "max_side": 2048, "max_seconds": 600}


def phone_photo() -> bytes:
    """4032x3024 with real detail (noise and gradients), as a camera JPEG at quality 92."""
    noise = Image.effect_noise((1008, 756), 40).convert("RGB").resize((4032, 3024))
    gradient = Image.linear_gradient("L").resize((4032, 3024)).convert("RGB")
    out = io.BytesIO()
    Image.blend(noise, gradient, 0.5).save(out, "JPEG", quality=92)
    return out.getvalue()


def screenshot() -> bytes:
    img = Image.new("RGBA", (1170, 2532), (245, 245, 250, 255))
    for y in range(0, 2532, 40):
        img.paste((60, 60, 200, 255), (40, y, 1130, y + 12))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def speech_like(fmt: str, codec: str, seconds: float) -> bytes:
    """A minute of a varying tone (not silence: silence compresses to nothing)."""
    rate = 48000
    out = io.BytesIO()
    with av.open(out, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate)
        assert isinstance(stream, AudioStream)
        stream.layout = "mono"
        step = rate // 10
        for start in range(0, int(rate * seconds), step):
            freq = 200 + (start // step % 7) * 60
            pcm = array.array(
                "h",
                (
                    int(math.sin(2 * math.pi * freq * (start + i) / rate) * 9000)
                    for i in range(step)
                ),
            )
            frame = av.AudioFrame(format="s16", layout="mono", samples=step)
            frame.planes[0].update(pcm.tobytes())
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def measure(name: str, runs: int, fn: Callable[[], object], size: int) -> dict[str, object]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    row = {
        "step": name,
        "input_kib": round(size / 1024),
        "median_ms": round(statistics.median(times), 1),
        "worst_ms": round(max(times), 1),
    }
    print(
        f"{name:<46} {row['input_kib']:>7} KiB  "
        f"median {row['median_ms']:>7} ms  worst {row['worst_ms']:>7} ms"
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    photo, png = phone_photo(), screenshot()
    chrome = speech_like("webm", "libopus", 60)
    safari = speech_like("mp4", "aac", 60)
    stored_chrome = probe.process("voice", chrome, **LIMITS).data
    stored_safari = probe.process("voice", safari, **LIMITS).data
    rows = [
        measure("photo 4032x3024 JPEG -> 2048 JPEG", args.runs,
                lambda: probe.process("photo", photo, **LIMITS), len(photo)),
        measure("screenshot 1170x2532 PNG (alpha) -> PNG", args.runs,
                lambda: probe.process("photo", png, **LIMITS), len(png)),
        measure("voice 60 s webm/opus (Chrome) -> webm remux", args.runs,
                lambda: probe.process("voice", chrome, **LIMITS), len(chrome)),
        measure("voice 60 s mp4/aac (Safari) -> mp4 remux", args.runs,
                lambda: probe.process("voice", safari, **LIMITS), len(safari)),
        measure("Telegram voice note from Opus (remux)", args.runs,
                lambda: probe.voice_note(stored_chrome), len(stored_chrome)),
        measure("Telegram voice note from AAC (transcode)", args.runs,
                lambda: probe.voice_note(stored_safari), len(stored_safari)),
    ]  # fmt: skip
    remux, transcode = rows[4]["median_ms"], rows[5]["median_ms"]
    assert isinstance(remux, float) and isinstance(transcode, float)
    print(f"transcode / remux for a Telegram voice note: {transcode / remux:.1f}x")
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(json.dumps({"runs": args.runs, "rows": rows}))


if __name__ == "__main__":
    main()
