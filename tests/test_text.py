"""The text rules of app/core/text.py, called directly (the same rules through real clients:
tests/security/test_xss.py)."""

from __future__ import annotations

import pytest

from app.core.text import clean_message, clean_name

# Every range of Unicode's Default_Ignorable_Code_Point, by its first and last code point.
IGNORABLE = [
    "\u00ad", "\u034f", "\u061c", "\u115f", "\u1160", "\u17b4", "\u17b5", "\u180b", "\u180f",
    "\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u202a", "\u202e", "\u2060", "\u2064",
    "\u2066", "\u206f", "\u3164", "\ufe00", "\ufe0f", "\ufeff", "\uffa0", "\ufff0", "\ufff8",
    "\U0001bca0", "\U0001bca3", "\U0001d173", "\U0001d17a", "\U000e0000", "\U000e0041",
    "\U000e0fff",
]  # fmt: skip


@pytest.mark.parametrize("ch", IGNORABLE, ids=[f"U+{ord(c):04X}" for c in IGNORABLE])
def test_names_drop_every_default_ignorable(ch: str) -> None:
    assert clean_name(f"Eda{ch}-7F3C", 40) == "Eda-7F3C"
    assert clean_message(f"Eda{ch}-7F3C", 4000) == "Eda-7F3C"


@pytest.mark.parametrize(
    "emoji",
    [
        "👨\u200d👩\u200d👧",  # family: ZWJ between emoji
        "🏳\ufe0f\u200d🌈",  # rainbow flag: selector then ZWJ
        "❤\ufe0f",  # emoji presentation
        "1\ufe0f\u20e3",  # keycap
        "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",  # Scotland's flag
        "👍🏽",  # skin tone
    ],
)
def test_messages_keep_emoji_sequences(emoji: str) -> None:
    assert clean_message(f"ok {emoji} ok", 4000) == f"ok {emoji} ok"


def test_messages_drop_joiners_between_letters() -> None:
    assert clean_message("a\u200db 👍\u200dx y\u200d👍", 4000) == "ab 👍x y👍"
