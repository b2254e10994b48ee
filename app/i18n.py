"""Turkish by default, English available: Babel .po catalogs read at start-up.

Source strings are English; `app/translations/<locale>/LC_MESSAGES/messages.po` translates them.
The current locale lives in a context variable so realtime pushes can render in the audience's
language, outside any request.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from babel.messages.pofile import read_po

LOCALES = ("tr", "en")
_current: ContextVar[str] = ContextVar("sohbet_locale", default="tr")
_catalogs: dict[str, dict[str, str]] = {}


def N_(message: str) -> str:
    """Mark a string for extraction; it is translated later, where it is shown."""
    return message


# Messages for SohbetError codes; the text itself is translated like any other string.
ERRORS: dict[str, str] = {
    "message_not_text": N_("The message must be text."),
    "message_empty": N_("Write a message first."),
    "message_too_long": N_("The message is too long (at most %(limit)s characters)."),
    "name_empty": N_("Please type your name."),
    "name_too_long": N_("The name is too long (at most %(limit)s characters)."),
    "bad_client_id": N_("The message has no valid id; reload the page."),
    "bad_payload": N_("The request is malformed."),
    "bad_chat": N_("No such conversation."),
    "not_found": N_("Not found."),
    "forbidden": N_("You are not allowed to do this."),
    "unauthorized": N_("Please sign in again."),
    "wrong_password": N_("Wrong password."),
    "code_invalid": N_("The code is wrong or has expired. Ask for a new one."),
    "code_tries": N_("Too many wrong codes. Ask for a new one."),
    "too_many_codes": N_("Too many codes were requested. Try again in %(minutes)s minutes."),
    "too_many_attempts": N_("Too many attempts. Try again in %(minutes)s minutes."),
    "csrf": N_("The form has expired. Reload the page and try again."),
    "rate_limited": N_("You are sending too fast. Wait a moment."),
    "media_bad_kind": N_("This kind of file cannot be sent."),
    "media_missing": N_("Choose a file first."),
    "media_empty": N_("The file is empty."),
    "media_too_large": N_("The file is too large (at most %(limit)s)."),
    "media_too_many_pixels": N_("The image is too large (at most %(limit)s megapixels)."),
    "media_not_image": N_("This file is not a photo we can show (JPEG, PNG, WebP or GIF)."),
    "media_broken_image": N_("The photo is damaged or incomplete."),
    "media_not_audio": N_("This file is not a recording we can play."),
    "media_broken_audio": N_("The recording is damaged or incomplete."),
    "media_too_long": N_("The recording is too long (at most %(limit)s seconds)."),
    "media_quota": N_("You have sent too many files (at most %(limit)s in all)."),
    "media_storage": N_("The file could not be stored just now. Please try again."),
    "media_bad_ref": N_("That file reference is not valid here; upload the file again."),
    "media_expired": N_("The uploaded file is no longer there; upload it again."),
    "handoff_expired": N_(
        "This link has expired or was already used. Ask for a new one on the other device."
    ),
    "too_many_messages": N_(
        "You are sending too fast. Your message goes out in %(seconds)s seconds."
    ),
    "too_many_conversations": N_(
        "Too many new conversations from this connection. Try again in %(minutes)s minutes."
    ),
    "blocked": N_("You can no longer send messages in this chat."),
    "blocked_address": N_("New conversations cannot be started from this connection."),
    "audit_bad_date": N_("Write dates as YYYY-MM-DD."),
    "audit_bad_range": N_("The start date is after the end date."),
    "audit_bad_action": N_("There is no such action."),
    "audit_bad_address": N_("That is not an IP address (for example 203.0.113.7 or 2001:db8::1)."),
    "reply_shortcut_empty": N_("Type a shortcut, for example kargo."),
    "reply_shortcut_too_long": N_("The shortcut is too long (at most %(limit)s characters)."),
    "reply_shortcut_invalid": N_(
        "A shortcut is one word: letters, digits, - and _ only (no spaces or other signs)."
    ),
    "reply_shortcut_taken": N_("There is already a saved reply with the shortcut /%(shortcut)s."),
    "reply_text_missing": N_("Write the reply in Turkish, in English, or in both."),
    "reply_text_too_long": N_("The reply is too long (at most %(limit)s characters)."),
    "reply_placeholder_unknown": N_(
        "{%(placeholder)s} is not a placeholder. Use {name} for the visitor's name and {cid} "
        "for the conversation's id."
    ),
    "reply_not_found": N_("This saved reply no longer exists."),
}


def load_catalogs(root: Path) -> None:
    """Read every locale's .po file once (English needs none: it is the source language)."""
    for locale in LOCALES:
        po = root / locale / "LC_MESSAGES" / "messages.po"
        if not po.is_file():
            _catalogs[locale] = {}
            continue
        with po.open("rb") as fh:
            catalog = read_po(fh, locale=locale)
        _catalogs[locale] = {
            str(m.id): str(m.string) for m in catalog if m.id and m.string and not m.fuzzy
        }


def catalog(locale: str) -> dict[str, str]:
    """The translations of one locale (tests use it to find untranslated strings)."""
    return _catalogs.get(locale, {})


def gettext(message: str, **params: Any) -> str:
    """Translate to the current locale, then fill `%(name)s` params."""
    text = _catalogs.get(_current.get(), {}).get(message, message)
    return text % params if params else text


def ngettext(singular: str, plural: str, n: int, **params: Any) -> str:
    """Plural-aware translation (Turkish does not inflect for number after a numeral)."""
    chosen = singular if n == 1 else plural
    params.setdefault("num", n)
    return gettext(chosen, **params)


def error_text(code: str, params: dict[str, Any]) -> str:
    """The translated message for an error code."""
    return gettext(ERRORS.get(code, ERRORS["bad_payload"]), **params)


def current_locale() -> str:
    return _current.get()


def set_locale(locale: str) -> None:
    """Set the locale for the rest of this task (a request or a socket event)."""
    _current.set(locale if locale in LOCALES else LOCALES[0])


@contextmanager
def using_locale(locale: str) -> Iterator[None]:
    """Render in one locale for a block, then restore the previous one."""
    token = _current.set(locale if locale in LOCALES else LOCALES[0])
    try:
        yield
    finally:
        _current.reset(token)


def negotiate(cookie: str | None, accept_language: str | None, default: str) -> str:
    """Pick the locale: the cookie, else the browser's first match, else default."""
    if cookie in LOCALES:
        return str(cookie)
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()[:2]
        if tag in LOCALES:
            return tag
    return default
