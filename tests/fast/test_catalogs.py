"""The translation catalogs: each message once (Babel reads a duplicate silently, the last wins,
so a merge that brings the same text twice could change a translation without anyone seeing)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

CATALOGS = sorted((Path(__file__).resolve().parents[2] / "app" / "translations").glob("*/*/*.po"))
# A msgid (with its msgctxt, if any) may span several quoted lines.
ENTRY = re.compile(r'(?:^msgctxt ("(?:.*)"\n)+)?^msgid ((?:".*"\n)+)', re.M)


def test_there_are_catalogs() -> None:
    assert CATALOGS


def test_each_message_is_translated_once() -> None:
    for catalog in CATALOGS:
        ids = Counter(m.group(0) for m in ENTRY.finditer(catalog.read_text(encoding="utf-8")))
        ids.pop('msgid ""\n', None)  # the header
        repeated = [entry for entry, n in ids.items() if n > 1]
        assert not repeated, (catalog.name, repeated)
