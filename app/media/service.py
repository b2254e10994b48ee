"""Media messages: check an upload, store our own copy, then post it through the chat write path.

Order matters for "nothing half-stored": the file is checked first (a refusal stores nothing),
then written to storage, then the message row is committed. If the commit fails the object is
deleted again; if the process dies in between, the object has no row and Repair's orphan step
removes it. A retried upload (same client id) returns the stored message and stores nothing.
"""

from __future__ import annotations

import asyncio
import logging
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from tortoise.functions import Sum

from app.chat.service import ChatService
from app.chat.writer import Attachment, Posted
from app.config import MediaSettings
from app.core.text import check_client_id
from app.errors import InvalidInput, SohbetError
from app.media import probe
from app.media.storage import MediaStore, StorageError, new_key
from app.models import Conversation, Message

log = logging.getLogger("sohbet.media")

# Decoding is CPU-bound: at most this many at once, so uploads never starve the event loop's
# thread pool (or the machine's two cores).
DECODERS = 2
NAME_CHARS = 120


class StorageUnavailable(SohbetError):
    """Media storage could not take or give the file; the user may try again."""

    status = 503


@dataclass(frozen=True)
class Orphans:
    seen: int
    removed: int


def display_name(raw: object) -> str:
    """The sender's file name as display text: its last path part, no control characters."""
    if not isinstance(raw, str):
        return ""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    return unicodedata.normalize("NFKC", name).strip()[:NAME_CHARS]


class MediaService:
    """Uploads in, media out, and the clean-up of objects no message uses."""

    def __init__(self, settings: MediaSettings, store: MediaStore, chat: ChatService) -> None:
        self.settings = settings
        self.store = store
        self.chat = chat
        self._decoders = asyncio.Semaphore(DECODERS)
        chat.forget_media = self.remove

    async def post(
        self,
        conversation_id: int,
        *,
        role: str,
        kind: str,
        data: bytes,
        client_id: object,
        filename: object = "",
        caption: object = "",
        source: str = "web",
        origin_sid: str | None = None,
    ) -> Posted:
        """Check an upload, keep our own copy, and post it as a message (once per client id)."""
        cid = check_client_id(client_id)
        if kind not in probe.KINDS:
            raise InvalidInput("media_bad_kind")
        stored = await Message.get_or_none(conversation_id=conversation_id, client_id=cid)
        if stored is not None:
            # A retry of an upload that was committed (its answer was lost): nothing new.
            conv = await Conversation.get(id=conversation_id)
            return Posted(stored, conv, False)
        if len(data) > self.settings.max_bytes:
            raise InvalidInput("media_too_large", limit=size_text(self.settings.max_bytes))
        if role == "visitor":
            await self._check_quota(conversation_id, len(data))
        async with self._decoders:
            processed = await asyncio.to_thread(
                probe.process,
                kind,
                data,
                max_pixels=self.settings.max_pixels,
                max_side=self.settings.max_side,
                max_seconds=self.settings.max_seconds,
            )
        key = new_key(processed.ext)
        try:
            await self.store.put(key, processed.data, processed.content_type)
        except StorageError as exc:
            log.error("media storage refused %s: %s", key, exc)
            raise StorageUnavailable("media_storage") from exc
        attachment = Attachment(
            key=key,
            content_type=processed.content_type,
            size=len(processed.data),
            width=processed.width,
            height=processed.height,
            duration_ms=processed.duration_ms,
            name=display_name(filename) if kind == "audio" else "",
        )
        try:
            posted = await self.chat.post_message(
                conversation_id,
                role=role,
                text=caption if isinstance(caption, str) else "",
                client_id=cid,
                source=source,
                kind=kind,
                origin_sid=origin_sid,
                media=attachment,
            )
        except BaseException:
            await self._discard(key)
            raise
        if not posted.created:
            await self._discard(key)  # a concurrent retry won: its copy is the one kept
        return posted

    async def _check_quota(self, conversation_id: int, incoming: int) -> None:
        rows = (
            await Message.filter(
                conversation_id=conversation_id, role="visitor", media_key__isnull=False
            )
            .annotate(total=Sum("media_size"))
            .values_list("total", flat=True)
        )
        used = int(rows[0] or 0) if rows else 0  # type: ignore[arg-type]
        if used + incoming > self.settings.visitor_quota:
            raise InvalidInput("media_quota", limit=size_text(self.settings.visitor_quota))

    async def _discard(self, key: str) -> None:
        try:
            await self.store.delete(key)
        except StorageError:
            log.warning("could not remove %s (Repair removes it later)", key)

    async def remove(self, keys: list[str]) -> None:
        """Delete objects whose messages are gone."""
        for key in keys:
            await self._discard(key)

    async def read(self, key: str) -> bytes:
        """An object's bytes for serving; KeyError if it is missing."""
        try:
            return await self.store.get(key)
        except StorageError as exc:
            log.error("media storage could not give %s: %s", key, exc)
            raise StorageUnavailable("media_storage") from exc

    async def remove_orphans(self, older_than: datetime) -> Orphans:
        """Delete objects no message refers to (an upload still committing is younger)."""
        seen = removed = 0
        batch: list[str] = []

        async def sweep() -> int:
            used = {
                str(key)
                for key in await Message.filter(media_key__in=batch).values_list(
                    "media_key", flat=True
                )
            }
            gone = [key for key in batch if key not in used]
            for key in gone:
                await self.store.delete(key)
            batch.clear()
            return len(gone)

        async for item in self.store.objects():
            seen += 1
            if item.modified < older_than:
                batch.append(item.key)
            if len(batch) >= 500:
                removed += await sweep()
        if batch:
            removed += await sweep()
        return Orphans(seen, removed)


ORPHAN_GRACE = timedelta(minutes=10)


def size_text(size: int) -> str:
    """A byte count as people read it: 10 MB, 293 KB."""
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.3g} MB"
    return f"{max(1, round(size / 1024))} KB"
