"""User text rules: normalised, stripped of control and invisible characters, length-capped."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from app.errors import InvalidInput

# Unicode's Default_Ignorable_Code_Point set (DerivedCoreProperties.txt): characters that render
# as nothing, so they can make one text look like another ("Eda\u200d-7F3C" like a CID). Bidi
# embeddings, overrides and isolates are in it too.
_DEFAULT_IGNORABLE = [
    0x00AD,
    0x034F,
    0x061C,
    0x115F,
    0x1160,
    0x17B4,
    0x17B5,
    *range(0x180B, 0x1810),
    *range(0x200B, 0x2010),
    *range(0x202A, 0x202F),
    *range(0x2060, 0x2070),
    0x3164,
    *range(0xFE00, 0xFE10),
    0xFEFF,
    0xFFA0,
    *range(0xFFF0, 0xFFF9),
    *range(0x1BCA0, 0x1BCA4),
    *range(0x1D173, 0x1D17B),
    *range(0xE0000, 0xE1000),
]
_ZWJ = "\u200d"
_VARIATION = frozenset("\ufe0e\ufe0f")
_BLACK_FLAG = "\U0001f3f4"
_KEYCAP_BASES = frozenset("0123456789#*")
# Control characters (Unicode category Cc is exactly U+0000-U+001F and U+007F-U+009F) and the
# line/paragraph separators are dropped, tabs and carriage returns become spaces; newlines are
# kept in messages only. A regex finds whether a text has any (most have none); only then one
# str.translate. The per-character loop this replaces cost ~3 % of a message's CPU under load.
_CONTROLS: dict[int, str | None] = {
    cp: None for cp in [*range(0x00, 0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]
}
_CONTROLS.update({ord("\t"): " ", ord("\r"): " "})
_KEEP_LINES = str.maketrans({**_CONTROLS, ord("\n"): "\n"})
_JOIN_LINES = str.maketrans({**_CONTROLS, ord("\n"): " "})
_DROP_IGNORABLE = str.maketrans(dict.fromkeys(_DEFAULT_IGNORABLE))


def _any_of(codepoints: Iterable[int]) -> re.Pattern[str]:
    """One regex character class for these characters, built from the table above so the two
    can never disagree. Runs of consecutive code points become ranges: listed one by one, the
    4,000-odd tag characters made a class whose every search cost ~100 µs per message."""
    runs: list[list[int]] = []
    for cp in sorted(set(codepoints)):
        if runs and cp == runs[-1][1] + 1:
            runs[-1][1] = cp
        else:
            runs.append([cp, cp])
    parts = (f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in runs)
    return re.compile("[" + "".join(parts) + "]")


_ANY_CONTROL = _any_of(_CONTROLS)
_ANY_CONTROL_BUT_NEWLINE = _any_of(cp for cp in _CONTROLS if cp != ord("\n"))
_ANY_IGNORABLE = _any_of(_DEFAULT_IGNORABLE)
_SPACES = re.compile(r"[ \t]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def _drop_controls(text: str, keep_newlines: bool) -> str:
    if not (_ANY_CONTROL_BUT_NEWLINE if keep_newlines else _ANY_CONTROL).search(text):
        return text
    return text.translate(_KEEP_LINES if keep_newlines else _JOIN_LINES)


def _is_emoji(ch: str) -> bool:
    """A pictograph, a regional indicator or a skin tone: what a ZWJ sequence joins."""
    cp = ord(ch)
    return (
        0x1F000 <= cp <= 0x1FAFF
        or 0x2600 <= cp <= 0x27BF
        or 0x2300 <= cp <= 0x23FF
        or (0x2B00 <= cp <= 0x2BFF)
    )


def _keep_emoji_joiners(text: str) -> str:
    """Drop every default-ignorable character except those an emoji sequence needs: a ZWJ
    between two emoji, an emoji or keycap presentation selector, the tags of a subdivision flag."""
    if not _ANY_IGNORABLE.search(text):
        return text
    out: list[str] = []
    for i, ch in enumerate(text):
        if not _ANY_IGNORABLE.match(ch):
            out.append(ch)
            continue
        prev = out[-1] if out else ""
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if ch == _ZWJ:
            keep = bool(prev) and (_is_emoji(prev) or prev in _VARIATION) and bool(nxt)
            keep = keep and _is_emoji(nxt)
        elif ch in _VARIATION:
            keep = bool(prev) and (_is_emoji(prev) or prev in _KEYCAP_BASES)
        elif 0xE0020 <= ord(ch) <= 0xE007F:
            keep = prev == _BLACK_FLAG or (bool(prev) and 0xE0020 <= ord(prev) <= 0xE007E)
        else:
            keep = False
        if keep:
            out.append(ch)
    return "".join(out)


def clean_message(raw: object, max_chars: int) -> str:
    """Return the message text to store, or raise InvalidInput with the reason."""
    if not isinstance(raw, str):
        raise InvalidInput("message_not_text")
    text = unicodedata.normalize("NFKC", raw.replace("\r\n", "\n"))
    text = _keep_emoji_joiners(_drop_controls(text, keep_newlines=True))
    text = "\n".join(_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    text = _BLANK_LINES.sub("\n\n", text).strip()
    if not text:
        raise InvalidInput("message_empty")
    if len(text) > max_chars:
        raise InvalidInput("message_too_long", limit=max_chars)
    return text


def clean_name(raw: object, max_chars: int) -> str:
    """Return a visitor's display name, or raise InvalidInput with the reason."""
    if not isinstance(raw, str):
        raise InvalidInput("name_empty")
    name = unicodedata.normalize("NFKC", raw)
    name = _drop_controls(name, keep_newlines=False).translate(_DROP_IGNORABLE)
    name = _SPACES.sub(" ", name).strip()
    if not name:
        raise InvalidInput("name_empty")
    if len(name) > max_chars:
        raise InvalidInput("name_too_long", limit=max_chars)
    return name


def cid_prefix(name: str) -> str:
    """The readable part of a conversation id: the name's first word, letters and digits only."""
    first = name.split(" ", 1)[0]
    prefix = "".join(ch for ch in first if ch.isalnum())[:20]
    return prefix or "Misafir"


_CLIENT_ID = re.compile(r"^[A-Za-z0-9_.:-]{8,64}$")


def check_client_id(raw: object) -> str:
    """A client-generated message id: 8 to 64 characters of a safe alphabet."""
    if not isinstance(raw, str) or not _CLIENT_ID.match(raw):
        raise InvalidInput("bad_client_id")
    return raw
