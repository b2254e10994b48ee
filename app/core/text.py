"""User text rules: normalised, stripped of control and bidi-override characters, length-capped."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from app.errors import InvalidInput

# Bidi embedding/override/isolate controls and zero-width marks that can disguise text.
_INVISIBLE = [
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
    *(0x200B, 0x200E, 0x200F, 0x2028, 0x2029, 0xFEFF),
]
# Control characters (Unicode category Cc is exactly U+0000-U+001F and U+007F-U+009F) are
# dropped, tabs and carriage returns become spaces; newlines are kept in messages only.
# A regex finds whether a text has any (most have none); only then one str.translate. The
# per-character loop this replaces cost ~3 % of a message's CPU under load.
_CONTROLS: dict[int, str | None] = {
    cp: None for cp in [*range(0x00, 0x20), *range(0x7F, 0xA0), *_INVISIBLE]
}
_CONTROLS.update({ord("\t"): " ", ord("\r"): " "})
_KEEP_LINES = str.maketrans({**_CONTROLS, ord("\n"): "\n"})
_JOIN_LINES = str.maketrans({**_CONTROLS, ord("\n"): " "})


def _any_of(codepoints: Iterable[int]) -> re.Pattern[str]:
    """One regex character class for these characters, built from the table above so the two
    can never disagree."""
    return re.compile("[" + "".join(f"\\u{cp:04x}" for cp in sorted(codepoints)) + "]")


_ANY_CONTROL = _any_of(_CONTROLS)
_ANY_CONTROL_BUT_NEWLINE = _any_of(cp for cp in _CONTROLS if cp != ord("\n"))
_SPACES = re.compile(r"[ \t]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def _drop_controls(text: str, keep_newlines: bool) -> str:
    if not (_ANY_CONTROL_BUT_NEWLINE if keep_newlines else _ANY_CONTROL).search(text):
        return text
    return text.translate(_KEEP_LINES if keep_newlines else _JOIN_LINES)


def clean_message(raw: object, max_chars: int) -> str:
    """Return the message text to store, or raise InvalidInput with the reason."""
    if not isinstance(raw, str):
        raise InvalidInput("message_not_text")
    text = unicodedata.normalize("NFKC", raw.replace("\r\n", "\n"))
    text = _drop_controls(text, keep_newlines=True)
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
    name = _SPACES.sub(" ", _drop_controls(name, keep_newlines=False)).strip()
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
