"""Media tracks the relay and the echo peer send: received Opus passed on undecoded, and
outgoing tracks that play another leg's audio with one continuous timeline (silence between).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from typing import Any

from aiortc import RTCPeerConnection
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, Packet

SILENCE_RATE = 48_000
SILENCE_SAMPLES = 960
OPUS_RATE = 48_000
OPUS_BASE = fractions.Fraction(1, OPUS_RATE)
PACKET_QUEUE = 50  # one second of 20 ms packets; older ones are dropped when a reader lags


class PacketTrack(MediaStreamTrack):
    """A received Opus track as encoded packets (no decoding), for one reader."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._queue: asyncio.Queue[Packet[Any] | None] = asyncio.Queue(PACKET_QUEUE)

    def push(self, data: bytes | None, timestamp: int = 0) -> None:
        if data is None:
            item = None
        else:
            item = Packet(data)
            item.pts = timestamp
            item.time_base = OPUS_BASE
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(item)

    async def recv(self) -> Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        item = await self._queue.get()
        if item is None:
            self.stop()
            raise MediaStreamError
        return item


class _OpusTap:
    """Stands in for a receiver's decoder queue: Opus frames go to a PacketTrack undecoded.

    aiortc decodes every received frame (and a relay would encode it again): forwarding the
    Opus packets instead costs a fraction of that. Anything else (another codec, the end
    marker) still reaches the decoder thread, which keeps its own reference to the real queue.
    """

    def __init__(self, decoder_queue: Any, track: PacketTrack) -> None:
        self.decoder_queue = decoder_queue
        self.track = track

    def get(self, *args: Any, **kwargs: Any) -> Any:
        """The decoder thread, when it starts after the tap is in place, reads the real queue."""
        return self.decoder_queue.get(*args, **kwargs)

    def put(self, item: Any) -> None:
        if item is None:
            self.track.push(None)
            self.decoder_queue.put(None)
            return
        codec, frame = item
        if getattr(codec, "name", "").lower() == "opus":
            self.track.push(frame.data, frame.timestamp)
        else:
            self.decoder_queue.put(item)


class ArrivalOrderBuffer:
    """Stands in for a receiver's audio jitter buffer: each packet goes on as it arrives.

    aiortc's audio buffer holds four frames before it lets the first one out (80 ms on every
    packet, and on the first sound of every call), and stalls on a lost packet until sixteen
    have piled up. A relay or echo hop needs neither: the browser that finally plays the audio
    has a jitter buffer of its own that smooths and conceals. One RTP packet is one audio
    frame; a late or repeated packet is dropped (timestamps must not go back).
    """

    def __init__(self) -> None:
        self._last: int | None = None

    def add(self, packet: Any) -> tuple[bool, JitterFrame | None]:
        number = packet.sequence_number
        if self._last is not None and not 0 < (number - self._last) % 65536 < 32768:
            return False, None
        self._last = number
        return False, JitterFrame(data=packet._data, timestamp=packet.timestamp)


def tap_opus(pc: RTCPeerConnection, track: MediaStreamTrack) -> PacketTrack | None:
    """The encoded packets of a received audio track, or None where aiortc does not allow it."""
    for receiver in pc.getReceivers():
        if receiver.track is not track:
            continue
        name = "_RTCRtpReceiver__decoder_queue"
        buffer = "_RTCRtpReceiver__jitter_buffer"
        original = getattr(receiver, name, None)
        if original is None or not hasattr(original, "put") or not hasattr(receiver, buffer):
            return None
        packets = PacketTrack()
        setattr(receiver, name, _OpusTap(original, packets))
        setattr(receiver, buffer, ArrivalOrderBuffer())
        return packets
    return None


class ForwardTrack(MediaStreamTrack):
    """An outgoing track that plays another leg's incoming track once it exists.

    Its timestamps run on without a jump when it switches from silence to the other party (or
    back): a receiver drops audio whose RTP timestamps go backwards.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._source: MediaStreamTrack | None = None
        self._attached = asyncio.Event()
        self._start: float | None = None
        self._silence_pts = 0
        self._out_pts = 0
        self._last_source_pts: int | None = None

    def attach(self, source: MediaStreamTrack) -> None:
        self._source = source
        self._attached.set()

    async def recv(self) -> Any:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            source = self._source
            if source is not None:
                try:
                    item = await source.recv()
                except MediaStreamError:
                    # The other party left (or renegotiates): fall back to silence.
                    if self._source is source:
                        self._source = None
                        self._attached.clear()
                        self._last_source_pts = None
                    continue
                if self.kind == "audio":
                    self._retime(item)
                return item
            if self.kind != "audio":
                await self._attached.wait()
                continue
            frame = await self._silence()
            self._retime(frame, own=True)
            return frame

    def _retime(self, item: Any, own: bool = False) -> None:
        """Give audio one continuous 48 kHz timeline, keeping the source's own gaps."""
        step = SILENCE_SAMPLES
        if not own and item.pts is not None:
            pts = int(item.pts * item.time_base * OPUS_RATE)
            if self._last_source_pts is not None and 0 < pts - self._last_source_pts < OPUS_RATE:
                step = pts - self._last_source_pts
            self._last_source_pts = pts
        else:
            self._last_source_pts = None
        self._out_pts += step
        item.pts = self._out_pts
        item.time_base = OPUS_BASE

    async def _silence(self) -> AudioFrame:
        now = time.monotonic()
        if self._start is None:
            self._start = now
        wait = self._start + self._silence_pts / SILENCE_RATE - now
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._attached.wait(), wait)
        frame = AudioFrame(format="s16", layout="mono", samples=SILENCE_SAMPLES)
        frame.planes[0].update(bytes(frame.planes[0].buffer_size))
        frame.pts = self._silence_pts
        frame.sample_rate = SILENCE_RATE
        frame.time_base = fractions.Fraction(1, SILENCE_RATE)
        self._silence_pts += SILENCE_SAMPLES
        return frame
