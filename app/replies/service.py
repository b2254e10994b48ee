"""The saved replies' one service: every create, update and delete goes through `SavedReplies`,
and so does what the composer and Telegram read (search, the filled-in text)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from tortoise.exceptions import IntegrityError

from app.audit.trail import Origin, record
from app.core.text import clean_message
from app.core.transactions import transaction
from app.errors import InvalidInput, NotFound, SohbetError
from app.models import Conversation, SavedReply
from app.timefmt import utcnow

SHORTCUT_MAX = 32
PLACEHOLDERS = ("name", "cid")
_PLACEHOLDER = re.compile(r"\{([^{}\s]{1,32})\}")
# Shortcut characters besides letters: ASCII digits, "-" and "_" (no spaces: "/r kargo" and
# the composer's "/kargo" end the shortcut at the first space).
_EXTRA = frozenset("0123456789-_")
# Turkish has two i's; an operator on a non-Turkish keyboard types "iade" for "İade" and "i"
# for "ı". A shortcut matches whichever they type, so all four fold to one "i".
_FOLD_I = str.maketrans({"İ": "i", "I": "i", "ı": "i"})


def shortcut_key(shortcut: str) -> str:
    """The form two shortcuts are compared in: NFKC, the Turkish i's as one, case-folded."""
    return unicodedata.normalize("NFKC", shortcut).translate(_FOLD_I).casefold()


def fold(text: str) -> str:
    """Text as the search compares it (the same folding as shortcuts)."""
    return shortcut_key(text)


@dataclass(frozen=True)
class ReplyInput:
    """What the management form sends, as typed (kept to show again beside an error)."""

    shortcut: str = ""
    text_tr: str = ""
    text_en: str = ""


class ReplyError(SohbetError):
    """A saved reply the form cannot store; `field` names the input to mark."""

    def __init__(self, code: str, field: str, **params: object) -> None:
        super().__init__(code, **params)
        self.field = field


class SavedReplies:
    """Create, change, delete, find and fill saved replies (the one place that writes them)."""

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars

    # Writes -------------------------------------------------------------------------------------

    async def create(self, data: ReplyInput, by: Origin | None = None) -> SavedReply:
        """Store a new saved reply; a shortcut already used (in any case) is refused. `by`: who,
        for the audit trail (written in the same transaction)."""
        shortcut, text_tr, text_en = self._checked(data)
        now = utcnow()
        try:
            async with transaction() as tx:
                reply = await SavedReply.create(
                    using_db=tx,
                    shortcut=shortcut,
                    shortcut_key=shortcut_key(shortcut),
                    text_tr=text_tr,
                    text_en=text_en,
                    created_at=now,
                    updated_at=now,
                )
                if by is not None:
                    await record("reply_create", by=by, target=shortcut, using_db=tx)
                return reply
        except IntegrityError:
            raise ReplyError("reply_shortcut_taken", "shortcut", shortcut=shortcut) from None

    async def update(self, reply_id: int, data: ReplyInput, by: Origin | None = None) -> SavedReply:
        """Change a saved reply's shortcut and texts (all checked as for a new one)."""
        shortcut, text_tr, text_en = self._checked(data)
        try:
            async with transaction() as tx:
                reply = await SavedReply.get_or_none(id=reply_id, using_db=tx)
                if reply is None:
                    raise NotFound("reply_not_found")
                before = reply.shortcut
                reply.shortcut = shortcut
                reply.shortcut_key = shortcut_key(shortcut)
                reply.text_tr = text_tr
                reply.text_en = text_en
                reply.updated_at = utcnow()
                await reply.save(using_db=tx)
                if by is not None:
                    renamed = {"was": before} if before != shortcut else None
                    await record(
                        "reply_update", by=by, target=shortcut, detail=renamed, using_db=tx
                    )
                return reply
        except IntegrityError:
            raise ReplyError("reply_shortcut_taken", "shortcut", shortcut=shortcut) from None

    async def delete(self, reply_id: int, by: Origin | None = None) -> SavedReply:
        """Delete a saved reply; returns what was deleted."""
        async with transaction() as tx:
            reply = await SavedReply.get_or_none(id=reply_id, using_db=tx)
            if reply is None:
                raise NotFound("reply_not_found")
            await reply.delete(using_db=tx)
            if by is not None:
                await record("reply_delete", by=by, target=reply.shortcut, using_db=tx)
            return reply

    def _checked(self, data: ReplyInput) -> tuple[str, str, str]:
        """The shortcut and both texts as stored, or a `ReplyError` naming the first problem."""
        shortcut = unicodedata.normalize("NFKC", data.shortcut).strip().removeprefix("/")
        if not shortcut:
            raise ReplyError("reply_shortcut_empty", "shortcut")
        if len(shortcut) > SHORTCUT_MAX:
            raise ReplyError("reply_shortcut_too_long", "shortcut", limit=SHORTCUT_MAX)
        if not all(ch.isalpha() or ch in _EXTRA for ch in shortcut):
            raise ReplyError("reply_shortcut_invalid", "shortcut")
        cleaned: dict[str, str] = {}
        for field, raw in (("text_tr", data.text_tr), ("text_en", data.text_en)):
            try:
                cleaned[field] = clean_message(raw, self.max_chars)
            except InvalidInput as exc:
                if exc.code != "message_too_long":
                    cleaned[field] = ""  # blank (or only invisible characters): not written
                    continue
                raise ReplyError("reply_text_too_long", field, limit=self.max_chars) from exc
            unknown = [p for p in _PLACEHOLDER.findall(cleaned[field]) if p not in PLACEHOLDERS]
            if unknown:
                raise ReplyError("reply_placeholder_unknown", field, placeholder=unknown[0])
        if not any(cleaned.values()):
            raise ReplyError("reply_text_missing", "text_tr")
        return shortcut, cleaned["text_tr"], cleaned["text_en"]

    # Reads --------------------------------------------------------------------------------------

    async def get(self, reply_id: int) -> SavedReply:
        reply = await SavedReply.get_or_none(id=reply_id)
        if reply is None:
            raise NotFound("reply_not_found")
        return reply

    async def by_shortcut(self, shortcut: str) -> SavedReply | None:
        """The saved reply a shortcut names, whatever its case ("/Kargo" finds "kargo")."""
        key = shortcut_key(shortcut.strip().removeprefix("/"))
        return await SavedReply.get_or_none(shortcut_key=key) if key else None

    async def search(self, query: str = "", limit: int | None = None) -> list[SavedReply]:
        """Saved replies matching a query, best first (see `search`)."""
        return await search(query, limit)


async def search(query: str = "", limit: int | None = None) -> list[SavedReply]:
    """Saved replies matching a query by shortcut or text, best first: shortcuts that start with
    it, then shortcuts that contain it, then texts that do.

    A team keeps tens or hundreds of them, so they are matched here rather than in SQL, whose
    LIKE folds only ASCII letters on SQLite ("İADE" would not find "iade")."""
    replies = await SavedReply.all().order_by("shortcut_key")
    wanted = fold(query.strip().removeprefix("/"))
    if not wanted:
        return replies[:limit] if limit else replies
    ranked: list[tuple[int, SavedReply]] = []
    for reply in replies:
        if reply.shortcut_key.startswith(wanted):
            ranked.append((0, reply))
        elif wanted in reply.shortcut_key:
            ranked.append((1, reply))
        elif wanted in fold(reply.text_tr) or wanted in fold(reply.text_en):
            ranked.append((2, reply))
    ranked.sort(key=lambda pair: pair[0])  # stable: alphabetical within a rank
    found = [reply for _, reply in ranked]
    return found[:limit] if limit else found


def text_for(reply: SavedReply, locale: str) -> str:
    """The reply in a conversation's language, or in the other one where it has none."""
    if locale == "en":
        return reply.text_en or reply.text_tr
    return reply.text_tr or reply.text_en


def fill(reply: SavedReply, conv: Conversation) -> str:
    """The text to send in this conversation: its language, `{name}` and `{cid}` filled in.

    Only the known placeholders are replaced (not `str.format`: other braces stay as text)."""
    values = {"name": conv.visitor_name, "cid": conv.cid}
    # One pass: a visitor called "{cid}" keeps that name.
    return _PLACEHOLDER.sub(
        lambda m: values.get(m.group(1), m.group(0)), text_for(reply, conv.locale)
    )
