"""Accept a file by its content, never the browser's claim: decode it, then write our own copy.

Images are decoded with Pillow and re-encoded (JPEG, or PNG when they have transparency): this
drops EXIF and every other metadata block, and turns a polyglot (a GIF header followed by a
script) into plain pixels. Audio is probed with PyAV, every packet is decoded, and the stream is
copied into a fresh container of our choosing (Opus into Ogg, AAC into MP4, MP3 as MP3), or
transcoded to Opus when it is another codec. The content type we serve comes from here.

Everything here is CPU-bound and synchronous: callers run it in a worker thread.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass
from fractions import Fraction

import av
import av.error
from PIL import Image, ImageOps, UnidentifiedImageError

from app.errors import InvalidInput

log = logging.getLogger("sohbet.media.probe")

KINDS = ("photo", "voice", "audio")
# The formats a phone or a desktop browser produces; anything else Pillow can read is refused,
# so an exotic decoder's bugs are not reachable from the internet.
IMAGE_FORMATS = frozenset({"JPEG", "PNG", "GIF", "WEBP", "BMP"})
AUDIO_CODECS = frozenset(
    {"opus", "aac", "mp3", "mp3float", "vorbis", "flac", "pcm_s16le", "pcm_f32le"}
)
# Containers PyAV may open for us (by content); a text file never reaches a demuxer it sniffs.
AUDIO_CONTAINERS = frozenset({"ogg", "matroska,webm", "mov,mp4,m4a,3gp,3g2,mj2", "mp3", "wav"})
JPEG_QUALITY = 85
# A recording with damaged packets is kept when at least this share of it decodes: a phone's
# recorder that broke its last fragment still said most of what the visitor said.
KEEP_AT_LEAST = Fraction(1, 2)
# Less than this missing is a decoder's start-up, not a loss worth telling the sender about.
LOSS_TO_REPORT = Fraction(1, 10)


@dataclass(frozen=True)
class Processed:
    """Our own copy of an accepted file, and what the bubble shows about it."""

    kind: str
    data: bytes
    content_type: str
    ext: str
    width: int = 0
    height: int = 0
    duration_ms: int = 0
    # Audio that was in the file but could not be decoded (a damaged end), not in `data`.
    lost_ms: int = 0


def process(
    kind: str, data: bytes, *, max_pixels: int, max_side: int, max_seconds: int
) -> Processed:
    """Check and re-encode one upload; InvalidInput says what is wrong with it."""
    if kind not in KINDS:
        raise InvalidInput("media_bad_kind")
    if not data:
        raise InvalidInput("media_empty")
    if kind == "photo":
        return image(data, max_pixels=max_pixels, max_side=max_side)
    return audio(kind, data, max_seconds=max_seconds)


def image(data: bytes, *, max_pixels: int, max_side: int) -> Processed:
    """Decode an image (refusing decompression bombs), fix its orientation, shrink it, re-encode."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            source = Image.open(io.BytesIO(data), formats=sorted(IMAGE_FORMATS))
            width, height = source.size
            # Checked before any pixel is decoded: the header alone says how big it would be.
            if width * height > max_pixels or width < 1 or height < 1:
                raise InvalidInput("media_too_many_pixels", limit=_megapixels(max_pixels))
            source.seek(0)  # the first frame of an animation
            source.load()
    except InvalidInput:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidInput("media_too_many_pixels", limit=_megapixels(max_pixels)) from None
    except UnidentifiedImageError:
        raise InvalidInput("media_not_image") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports a cut-off file as OSError("image file is truncated ...").
        log.info("image refused: %s", exc)
        raise InvalidInput("media_broken_image") from None
    try:
        picture = ImageOps.exif_transpose(source)
    except (OSError, ValueError, SyntaxError):
        picture = source  # a malformed EXIF block: keep the pixels as they are
    alpha = picture.mode in ("RGBA", "LA", "PA") or (
        picture.mode == "P" and "transparency" in picture.info
    )
    picture = picture.convert("RGBA" if alpha else "RGB")
    if max(picture.size) > max_side:
        picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    # Plain encoders: optimize/progressive made a 2048 px JPEG 7x slower to write (44 -> 306 ms,
    # bench/media_probe.py) for a few percent of bytes.
    if alpha:
        picture.save(out, format="PNG")
        content_type, ext = "image/png", "png"
    else:
        picture.save(out, format="JPEG", quality=JPEG_QUALITY)
        content_type, ext = "image/jpeg", "jpg"
    return Processed(
        "photo", out.getvalue(), content_type, ext, width=picture.width, height=picture.height
    )


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1_000_000:g}"


def audio(kind: str, data: bytes, *, max_seconds: int) -> Processed:
    """Probe audio with PyAV and write a clean copy: remux Opus/AAC/MP3, transcode the rest."""
    try:
        source = av.open(io.BytesIO(data), mode="r")
    except (av.error.FFmpegError, ValueError, OSError):
        raise InvalidInput("media_not_audio") from None
    try:
        if source.format.name not in AUDIO_CONTAINERS:
            raise InvalidInput("media_not_audio")
        streams = source.streams.audio
        if not streams or source.streams.video:
            raise InvalidInput("media_not_audio")
        stream = streams[0]
        codec = stream.codec_context.name
        if codec not in AUDIO_CODECS:
            raise InvalidInput("media_not_audio")
        if codec == "opus":
            # WebM, not Ogg: Safari (15 and later) plays Opus only in WebM.
            return _copy(source, stream, kind, "webm", "audio/webm", "webm", max_seconds)
        if codec == "aac":
            return _copy(source, stream, kind, "mp4", "audio/mp4", "m4a", max_seconds)
        if codec in ("mp3", "mp3float"):
            return _copy(source, stream, kind, "mp3", "audio/mpeg", "mp3", max_seconds)
        return _to_webm(_to_opus(source, stream, kind, max_seconds))
    except InvalidInput:
        raise
    except (av.error.FFmpegError, ValueError, OSError, IndexError) as exc:
        log.info("audio refused: %s", exc)
        raise InvalidInput("media_broken_audio") from None
    finally:
        source.close()


def _check_length(seconds: float, max_seconds: int) -> None:
    if seconds > max_seconds:
        raise InvalidInput("media_too_long", limit=max_seconds)


def _copy(
    source: av.container.InputContainer,
    stream: av.audio.stream.AudioStream,
    kind: str,
    container: str,
    content_type: str,
    ext: str,
    max_seconds: int,
) -> Processed:
    """Copy the packets into a new container after decoding each one; a recording whose end is
    damaged keeps what decodes when that is most of it (`lost_ms` says how much went)."""
    out = io.BytesIO()
    kept = Fraction(0)  # the length of the packets that decode and are copied
    end = Fraction(0)  # where the copied audio ends
    claimed = Fraction(0)  # where the file says its audio ends, damaged packets included
    damaged = False
    last_dts: int | None = None
    with av.open(out, mode="w", format=container) as target:
        copy = target.add_stream_from_template(stream)
        try:
            for packet in source.demux(stream):
                if packet.dts is None:
                    continue  # the demuxer's flush packet
                start, stop = _span(packet)
                claimed = max(claimed, stop)
                _check_length(float(claimed), max_seconds)
                try:
                    frames = packet.decode()
                except av.error.FFmpegError:
                    frames = []
                if not frames:
                    damaged = True  # bytes the decoder cannot make audio of
                    continue
                # A fragment written twice (WebKitGTK's recorder) repeats timestamps already copied.
                if last_dts is not None and packet.dts <= last_dts:
                    continue
                last_dts = packet.dts
                kept += stop - start
                end = max(end, stop)
                packet.stream = copy
                target.mux(packet)
        except av.error.FFmpegError as exc:
            # The file stops inside a fragment: what came before it is still audio.
            log.info("audio cut short after %.1f s: %s", float(end), exc)
            damaged = True
    if not kept or (damaged and kept < claimed * KEEP_AT_LEAST):
        raise InvalidInput("media_broken_audio")
    lost = max(Fraction(0), claimed - kept) if damaged else Fraction(0)
    if lost < LOSS_TO_REPORT:
        lost = Fraction(0)
    else:
        log.info("audio kept in part: %.1f of %.1f s", float(kept), float(claimed))
    return Processed(
        kind,
        out.getvalue(),
        content_type,
        ext,
        duration_ms=round(float(end) * 1000),
        lost_ms=round(float(lost) * 1000),
    )


def _span(packet: av.packet.Packet[av.audio.stream.AudioStream]) -> tuple[Fraction, Fraction]:
    """When a packet's audio starts and stops, in seconds."""
    if packet.pts is None or packet.time_base is None:
        return Fraction(0), Fraction(0)
    start = packet.pts * packet.time_base
    return start, start + (packet.duration or 0) * packet.time_base


def _to_opus(
    source: av.container.InputContainer,
    stream: av.audio.stream.AudioStream,
    kind: str,
    max_seconds: int,
) -> Processed:
    out = io.BytesIO()
    samples = 0
    with av.open(out, mode="w", format="ogg") as target:
        encoder = target.add_stream("libopus", rate=48000)
        encoder.bit_rate = 64000
        resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
        encoder.layout = "mono"
        for frame in source.decode(stream):
            for chunk in resampler.resample(frame):
                samples += chunk.samples
                _check_length(samples / 48000, max_seconds)
                for packet in encoder.encode(chunk):
                    target.mux(packet)
        for chunk in resampler.resample(None):
            samples += chunk.samples
            for packet in encoder.encode(chunk):
                target.mux(packet)
        for packet in encoder.encode(None):
            target.mux(packet)
    if not samples:
        raise InvalidInput("media_broken_audio")
    return Processed(
        kind, out.getvalue(), "audio/ogg", "ogg", duration_ms=round(samples * 1000 / 48000)
    )


def _to_webm(processed: Processed) -> Processed:
    """Transcoded Opus moved from Ogg into WebM (what every browser plays)."""
    with av.open(io.BytesIO(processed.data), mode="r") as source:
        stream = source.streams.audio[0]
        webm = _copy(source, stream, processed.kind, "webm", "audio/webm", "webm", 24 * 3600)
    return Processed(
        processed.kind, webm.data, webm.content_type, webm.ext, duration_ms=processed.duration_ms
    )


def voice_note(data: bytes) -> bytes:
    """An OGG/Opus copy of stored audio, as Telegram wants voice notes (remux or transcode)."""
    day = 24 * 3600
    with av.open(io.BytesIO(data), mode="r") as source:
        stream = source.streams.audio[0]
        if stream.codec_context.name == "opus":
            return _copy(source, stream, "voice", "ogg", "audio/ogg", "ogg", day).data
        return _to_opus(source, stream, "voice", day).data


def describe(kind: str, data: bytes) -> Processed:
    """What the bubble shows about a file this server already checked and wrote (no re-encode)."""
    if kind == "photo":
        with Image.open(io.BytesIO(data), formats=["JPEG", "PNG"]) as picture:
            fmt, (width, height) = picture.format, picture.size
        if fmt == "PNG":
            return Processed(kind, data, "image/png", "png", width=width, height=height)
        return Processed(kind, data, "image/jpeg", "jpg", width=width, height=height)
    with av.open(io.BytesIO(data), mode="r") as source:
        stream = source.streams.audio[0]
        end = Fraction(0)
        for packet in source.demux(stream):
            if packet.pts is not None and packet.time_base is not None:
                end = max(end, (packet.pts + (packet.duration or 0)) * packet.time_base)
        name = source.format.name
    content_type, ext = {
        "matroska,webm": ("audio/webm", "webm"),
        "mov,mp4,m4a,3gp,3g2,mj2": ("audio/mp4", "m4a"),
        "mp3": ("audio/mpeg", "mp3"),
        "ogg": ("audio/ogg", "ogg"),
    }[name]
    return Processed(kind, data, content_type, ext, duration_ms=round(float(end) * 1000))
