"""A conversation's transcript for the operator: plain text, or a small PDF written here.

The PDF needs no library: one built-in font (Helvetica, which every reader has) is enough for
text. Its encoding is Windows-1254, the Turkish code page: WinAnsi with six letters changed
(Ğ İ Ş ğ ı ş), declared through a /Differences array so readers and text extractors map the
bytes back to the right characters. Characters outside that code page (emoji, other scripts)
are printed as "?"; the text export keeps everything.
"""

from __future__ import annotations

import textwrap
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

PAGE_W, PAGE_H = 595, 842  # A4 in points
MARGIN = 50
FONT_SIZE = 10
LEADING = 14
# Helvetica averages ~0.5 em per character in mixed text: 96 of them fill the text width.
WRAP = 96
# Windows-1254 positions that differ from WinAnsi, with their standard glyph names.
DIFFERENCES = "208 /Gbreve 221 /Idotaccent 222 /Scedilla 240 /gbreve 253 /dotlessi 254 /scedilla"


@dataclass(frozen=True)
class Line:
    """One transcript entry: when, who, what."""

    moment: datetime
    author: str
    text: str


def render_text(title: str, header: Sequence[str], lines: Iterable[Line], zone: ZoneInfo) -> str:
    """The transcript as UTF-8 text, one message per paragraph."""
    out = [title, *header, ""]
    for line in lines:
        stamp = line.moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")
        body = line.text.replace("\r\n", "\n").replace("\n", "\n    ")
        out.append(f"[{stamp}] {line.author}: {body}")
    return "\n".join(out) + "\n"


def _pdf_string(text: str) -> bytes:
    raw = text.encode("cp1254", errors="replace")
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def _wrap(text: str) -> list[str]:
    rows: list[str] = []
    for paragraph in text.splitlines() or [""]:
        rows.extend(textwrap.wrap(paragraph, WRAP, subsequent_indent="    ") or [""])
    return rows


def render_pdf(title: str, text: str) -> bytes:
    """A minimal, valid PDF 1.4 of the given text (A4, Helvetica, wrapped, paginated)."""
    rows = _wrap(text)
    per_page = (PAGE_H - 2 * MARGIN) // LEADING
    pages = [rows[i : i + per_page] for i in range(0, len(rows), per_page)] or [[]]

    objects: list[bytes] = []  # object n is objects[n - 1]

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    catalog = add(b"")  # filled in once the page tree's number is known
    tree = add(b"")
    font = add(
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding << /Type /Encoding "
        b"/BaseEncoding /WinAnsiEncoding /Differences [" + DIFFERENCES.encode() + b"] >> >>"
    )
    # Document info strings are not in the font's encoding: UTF-16 with a byte order mark.
    title_hex = ("\ufeff" + title).encode("utf-16-be").hex().upper()
    info = add(f"<< /Title <{title_hex}> /Producer (Sohbet) >>".encode())
    kids = []
    for number, page_rows in enumerate(pages, start=1):
        ops = [b"BT", f"/F1 {FONT_SIZE} Tf {LEADING} TL".encode()]
        ops.append(f"{MARGIN} {PAGE_H - MARGIN} Td".encode())
        for row in page_rows:
            ops.append(_pdf_string(row) + b" Tj T*")
        ops.append(b"ET")
        footer = f"{number} / {len(pages)}"
        ops.append(f"BT /F1 8 Tf {PAGE_W - MARGIN - 30} {MARGIN // 2} Td".encode())
        ops.append(_pdf_string(footer) + b" Tj ET")
        stream = zlib.compress(b"\n".join(ops))
        content = add(
            f"<< /Length {len(stream)} /Filter /FlateDecode >>\nstream\n".encode()
            + stream
            + b"\nendstream"
        )
        kids.append(
            add(
                f"<< /Type /Page /Parent {tree} 0 R /MediaBox [0 0 {PAGE_W} {PAGE_H}] "
                f"/Resources << /Font << /F1 {font} 0 R >> >> /Contents {content} 0 R >>".encode()
            )
        )
    objects[catalog - 1] = f"<< /Type /Catalog /Pages {tree} 0 R >>".encode()
    refs = " ".join(f"{k} 0 R" for k in kids)
    objects[tree - 1] = f"<< /Type /Pages /Kids [{refs}] /Count {len(kids)} >>".encode()

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root {catalog} 0 R /Info {info} 0 R >>\n"
        f"startxref\n{xref}\n%%EOF\n"
    ).encode()
    return bytes(out)
