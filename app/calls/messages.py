"""The system messages calls leave in their conversation ("Missed call", "Call, 3:12").

The message's client id holds the facts ("call:<id>:<outcome>:<seconds>"), so each viewer
reads it in their own language; the stored text is in the server's default language.
"""

from __future__ import annotations

import logging
from typing import Any

from app.chat.service import ChatService
from app.i18n import N_, using_locale
from app.i18n import gettext as _

log = logging.getLogger("sohbet.calls")

CALL_OUTCOMES = {
    "missed": N_("Missed call"),
    "declined": N_("Declined call"),
    "busy": N_("Missed call (busy)"),
    "relay_busy": N_("Call could not connect (relay busy)"),
    # Answered, but its media never flowed both ways.
    "failed": N_("Call could not connect"),
    # A page that cannot take part in a call says why instead of ringing.
    "visitor_no_webrtc": N_("Call could not start: the visitor's browser cannot make calls"),
    "visitor_no_microphone": N_("Call could not start: the visitor's device has no microphone"),
    "admin_no_webrtc": N_("Call could not start: the operator's browser cannot make calls"),
    "admin_no_microphone": N_("Call could not start: the operator's device has no microphone"),
}


def clock_from_seconds(seconds: int) -> str:
    """A length in whole seconds as a clock reads it: "3:12", "1:02:03"."""
    minutes, secs = divmod(max(0, seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def call_text(outcome: str, seconds: int) -> str:
    """A call's system message in the current language: "Missed call", "Call, 3:12"."""
    if outcome == "ended":
        return "📞 " + _("Call, %(duration)s", duration=clock_from_seconds(seconds))
    return "📞 " + _(CALL_OUTCOMES.get(outcome, CALL_OUTCOMES["missed"]))


def call_label(message: Any) -> str:
    """The text of a call message for the viewer's language (its client id holds the facts)."""
    parts = str(getattr(message, "client_id", "")).split(":")
    if len(parts) == 4 and parts[0] == "call" and parts[3].isdigit():
        return call_text(parts[2], int(parts[3]))
    return str(getattr(message, "text", ""))


async def record_call(
    chat: ChatService, locale: str, conversation_id: int, call_id: str, outcome: str, seconds: int
) -> None:
    """Leave a call's system message through the chat's single write path (never raises)."""
    with using_locale(locale):
        text = call_text(outcome, seconds)
    try:
        await chat.post_message(
            conversation_id,
            role="system",
            kind="call",
            text=text,
            client_id=f"call:{call_id}:{outcome}:{seconds}",
            source="call",
        )
    except Exception:
        log.exception("could not record call %s", call_id)
