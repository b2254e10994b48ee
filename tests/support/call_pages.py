"""Call pages in Chromium: launch flags for WebRTC on loopback, a steady fake microphone, and
page scripts that note the click and hear the remote audio (tests/test_calls.py, bench/call_bench.py).
"""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path

from tests.support.browser import CHROMIUM_ARGS

# Chromium offers loopback addresses to WebRTC only when told; the namespace's media address is
# 127.0.0.2. Audio may start without a gesture so the test can measure it with WebAudio.
CALL_CHROMIUM_ARGS = [
    *CHROMIUM_ARGS,
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
]

# Resolves when the remote stream carries sound (RMS over a WebAudio analyser); Chromium feeds
# WebRTC audio into WebAudio only because the stream is also attached to the <audio> element.
HEAR = """
async (timeoutMs) => {
  const el = document.getElementById("call-remote-audio");
  const deadline = performance.now() + timeoutMs;
  while (!(el.srcObject && el.srcObject.getAudioTracks().length)) {
    if (performance.now() > deadline) return {rms: 0, at: null};
    await new Promise((r) => setTimeout(r, 2));
  }
  const ctx = new AudioContext();
  await ctx.resume();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 256;
  ctx.createMediaStreamSource(el.srcObject).connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  const listening = performance.now();
  while (performance.now() < deadline) {
    analyser.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const x of buf) sum += x * x;
    const rms = Math.sqrt(sum / buf.length);
    if (rms > 0.005) { ctx.close(); return {rms, at: performance.now(), listening}; }
    await new Promise((r) => setTimeout(r, 2));
  }
  ctx.close();
  return {rms: 0, at: null, listening};
}
"""
CLICKED = "window.__callClickedAt = 0; document.addEventListener('click', () => { window.__callClickedAt = performance.now(); }, true);"


def tone_wav(path: Path, hz: float = 440.0, seconds: int = 5) -> Path:
    """A continuous tone for Chromium's fake microphone (its default beeps once a second,
    which would blur the measured setup times by up to a second)."""
    rate = 48_000
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(
            b"".join(
                struct.pack("<h", int(12000 * math.sin(2 * math.pi * hz * i / rate)))
                for i in range(rate * seconds)
            )
        )
    return path
