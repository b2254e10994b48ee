"""A test tone to send, and a detector that hears it in received audio (echo checks)."""

from __future__ import annotations

import asyncio
import fractions
import math
import time
from array import array

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

RATE = 48_000
PTIME = 0.02
SAMPLES = int(RATE * PTIME)


class ToneTrack(MediaStreamTrack):
    """A sine tone, 20 ms frames at 48 kHz mono, paced in real time."""

    kind = "audio"

    def __init__(self, frequency: float = 880.0, amplitude: float = 0.4) -> None:
        super().__init__()
        self.frequency = frequency
        self.amplitude = amplitude
        self._sent = 0
        self._start: float | None = None

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            wait = self._start + self._sent / RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        step = 2 * math.pi * self.frequency / RATE
        peak = 32767 * self.amplitude
        samples = array(
            "h", (int(peak * math.sin(step * (self._sent + i))) for i in range(SAMPLES))
        )
        frame = AudioFrame(format="s16", layout="mono", samples=SAMPLES)
        frame.planes[0].update(samples.tobytes())
        frame.pts = self._sent
        frame.sample_rate = RATE
        frame.time_base = fractions.Fraction(1, RATE)
        self._sent += SAMPLES
        return frame


def tone_ratio(frame: AudioFrame, frequency: float) -> float:
    """The share of a frame's energy at `frequency` (Goertzel on the first channel), 0..1."""
    raw = array("h")
    raw.frombytes(bytes(frame.planes[0])[: frame.samples * 2 * len(frame.layout.channels)])
    channels = len(frame.layout.channels) if frame.format.is_packed else 1
    samples = raw[::channels]
    n = len(samples)
    if n == 0:
        return 0.0
    coeff = 2 * math.cos(2 * math.pi * frequency / frame.sample_rate)
    s1 = s2 = 0.0
    energy = 0.0
    for x in samples:
        s0 = x + coeff * s1 - s2
        s2, s1 = s1, s0
        energy += x * x
    if energy < n * 100.0:  # silence (below about -50 dBFS)
        return 0.0
    power = s1 * s1 + s2 * s2 - coeff * s1 * s2
    return min(1.0, 2 * power / (n * energy))


class ToneDetector:
    """Reads a received track until the tone has been heard in `needed` consecutive frames."""

    def __init__(self, frequency: float = 880.0, threshold: float = 0.5, needed: int = 5) -> None:
        self.frequency = frequency
        self.threshold = threshold
        self.needed = needed
        self.frames = 0
        self.heard_at: float | None = None

    async def listen(self, track: MediaStreamTrack) -> float:
        """Return the monotonic time the tone was first heard (of the run that confirmed it)."""
        run = 0
        first: float | None = None
        while True:
            frame = await track.recv()
            self.frames += 1
            if (
                isinstance(frame, AudioFrame)
                and tone_ratio(frame, self.frequency) >= self.threshold
            ):
                first = first if run else time.monotonic()
                run += 1
                if run >= self.needed and first is not None:
                    self.heard_at = first
                    return first
            else:
                run = 0
