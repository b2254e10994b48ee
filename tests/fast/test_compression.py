"""Content-coding negotiation (RFC 9110 12.5.3), on the header values browsers and tools send."""

from __future__ import annotations

import pytest

from app.compression import accepted_encoding


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("gzip, deflate, br, zstd", "br"),  # Chromium
        ("gzip, deflate, br", "br"),  # Firefox, Safari
        ("gzip", "gzip"),
        ("GZIP", "gzip"),
        ("deflate", None),
        ("", None),
        ("identity", None),
        ("*", "br"),
        ("*;q=0", None),
        ("br;q=0, *", "gzip"),
        ("br;q=0.5, gzip", "gzip"),
        ("br;q=1, gzip;q=0.9", "br"),
        ("gzip;q=0, br;q=0", None),
        ("gzip; q=0.000", None),
        ("gzip;q=abc", None),
        (" , ,gzip", "gzip"),
    ],
)
def test_accepted_encoding(header: str, expected: str | None) -> None:
    assert accepted_encoding(header) == expected
