"""How a message reads in one line: the conversation list's preview and media labels."""

from __future__ import annotations

from app.models import Message

PREVIEW_CHARS = 120


def audio_length_text(duration_ms: int) -> str:
    """A recording's length from milliseconds as m:ss, in whole seconds as audio players show."""
    seconds = max(1, duration_ms // 1000) if duration_ms > 0 else 0
    return f"{seconds // 60}:{seconds % 60:02d}"


def media_label(kind: str, duration_ms: int, name: str) -> str:
    """What the conversation list shows for a media message: an icon, and a length or a name."""
    if kind == "photo":
        return "📷"
    if kind == "voice":
        return f"🎤 {audio_length_text(duration_ms)}"
    if kind == "audio":
        return f"🎵 {name or audio_length_text(duration_ms)}"
    return ""


def preview(text: str) -> str:
    """Text on one line, cut to the list's width."""
    line = " ".join(text.split())
    return line if len(line) <= PREVIEW_CHARS else line[: PREVIEW_CHARS - 1] + "…"


def message_preview(message: Message) -> str:
    """The list's preview of a stored message."""
    label = media_label(message.kind, message.media_duration_ms, message.media_name)
    return preview(" ".join(filter(None, [label, message.text])))
