"""Fragmented MP4/AAC recordings as browsers' MediaRecorder writes them, clean and damaged.

Safari writes clean fragmented MP4 (`ftyp moov` then `moof mdat` pairs, offsets relative to each
`moof`). WebKitGTK's recorder (GStreamer) writes the same layout but often breaks the last
fragment: its `moof` is written twice (`moof moof mdat`), and that last `mdat`'s audio does not
decode. These builders start from a clean file made with PyAV and damage it the same way.
"""

from __future__ import annotations

import struct

from tests.support.media_files import tone


def fragmented_aac(seconds: float = 4.0, fragment_seconds: float = 1.0, rate: int = 44100) -> bytes:
    """A clean fragmented MP4 with AAC: a 440 Hz tone, one fragment per `fragment_seconds`."""
    options = {
        "movflags": "frag_keyframe+empty_moov+default_base_moof",
        "frag_duration": str(int(fragment_seconds * 1_000_000)),
    }
    data = tone("mp4", "aac", seconds, rate, options)
    # FFmpeg ends a fragmented file with an `mfra` index; a browser's recorder writes none.
    return b"".join(data[o : o + n] for kind, o, n in boxes(data) if kind != "mfra")


def boxes(data: bytes) -> list[tuple[str, int, int]]:
    """The top-level boxes of an MP4 file: (type, offset, size)."""
    found = []
    offset = 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:
            size = struct.unpack(">Q", data[offset + 8 : offset + 16])[0]
        size = size or len(data) - offset
        found.append((kind.decode("latin-1"), offset, size))
        offset += size
    return found


def last_moof_twice(data: bytes) -> bytes:
    """The last fragment's `moof` written twice, as WebKitGTK does (`moof moof mdat`)."""
    _, offset, size = [b for b in boxes(data) if b[0] == "moof"][-1]
    return data[: offset + size] + data[offset:]


def garble_mdat(data: bytes, *which: int) -> bytes:
    """The audio of the given fragments (indexes into the `mdat` boxes, -1 the last) replaced by
    bytes no decoder makes sound of, the boxes' sizes kept."""
    mdats = [b for b in boxes(data) if b[0] == "mdat"]
    out = bytearray(data)
    for index in which:
        _, offset, size = mdats[index]
        out[offset + 8 : offset + size] = bytes(size - 8)
    return bytes(out)


def webkit_broken_tail(data: bytes) -> bytes:
    """What WebKitGTK's recorder writes: the last `moof` twice and its audio undecodable."""
    return last_moof_twice(garble_mdat(data, -1))


def cut_in_last_fragment(data: bytes) -> bytes:
    """The file ends in the middle of its last fragment's audio (a recorder stopped mid-write)."""
    _, offset, size = [b for b in boxes(data) if b[0] == "mdat"][-1]
    return data[: offset + size // 2]
