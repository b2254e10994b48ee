"""Media messages: check an upload, store our own copy, then post it through the chat write path.

Order matters for "nothing half-stored": the file is checked first (a refusal stores nothing),
then written to storage, then the message row is committed. If the commit fails the object is
deleted again; if the process dies in between, the object has no row and Repair's orphan step
removes it. A retried upload (same client id) returns the stored message and stores nothing.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import time
import unicodedata

from tortoise.functions import Sum

from app.chat.drafts import Attachment, Author, Posted
from app.chat.service import ChatService
from app.config import MediaSettings
from app.core.ratelimit import Limiter
from app.core.text import check_client_id
from app.errors import InvalidInput, SohbetError, TooMany
from app.media import probe
from app.media.orphans import ORPHAN_GRACE
from app.media.storage import MediaStore, StorageError, new_key, valid_key
from app.models import Conversation, Message

log = logging.getLogger("sohbet.media")

# Decoding is CPU-bound: at most this many at once, so uploads never starve the event loop's
# thread pool (or the machine's two cores).
DECODERS = 2
UPLOADS_PER_MINUTE = 30
NAME_CHARS = 120


class StorageUnavailable(SohbetError):
    """Media storage could not take or give the file; the user may try again."""

    status = 503


def display_name(raw: object) -> str:
    """The sender's file name as display text: its last path part, no control characters."""
    if not isinstance(raw, str):
        return ""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    return unicodedata.normalize("NFKC", name).strip()[:NAME_CHARS]


class MediaService:
    """Uploads in, media out, and the clean-up of objects no message uses."""

    def __init__(
        self,
        settings: MediaSettings,
        store: MediaStore,
        chat: ChatService,
        secret: str,
        limiter: Limiter,
    ) -> None:
        self.settings = settings
        self.store = store
        self.chat = chat
        self._secret = hashlib.sha256(b"sohbet-media-ref:" + secret.encode()).digest()
        self._decoders = asyncio.Semaphore(DECODERS)
        self._uploads = limiter.budget("uploads", UPLOADS_PER_MINUTE, 60)
        # Held uploads not sent yet, per conversation (this process): key -> (bytes, when).
        # They count against the visitor's quota until sent or until they are old enough for
        # the orphan clean-up to remove them.
        self._held: dict[int, dict[str, tuple[int, float]]] = {}

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
        author: Author | None = None,
    ) -> tuple[Posted, int]:
        """Check an upload, keep a copy, post it once per client id; returns it and the ms lost."""
        client_id = check_client_id(client_id)
        if kind not in probe.KINDS:
            raise InvalidInput("media_bad_kind")
        if (posted := await self._posted_before(conversation_id, client_id)) is not None:
            return posted, 0
        processed, key = await self._store(conversation_id, role, kind, data)
        attachment = _attachment(key, processed, filename if kind == "audio" else "")
        posted = await self._post(
            conversation_id,
            role,
            kind,
            client_id,
            attachment,
            caption,
            source,
            origin_sid,
            author=author,
        )
        return posted, processed.lost_ms

    async def hold(
        self, conversation_id: int, *, role: str, kind: str, data: bytes, filename: object = ""
    ) -> str:
        """Check and store an upload without a message yet; the returned `fileRef` is sent
        later with a socket `send {type, fileRef}` (the contract's two-step upload)."""
        if kind not in probe.KINDS:
            raise InvalidInput("media_bad_kind")
        _, key = await self._store(conversation_id, role, kind, data)
        self._held.setdefault(conversation_id, {})[key] = (len(data), time.monotonic())
        return self._file_ref(key, conversation_id, role, kind, display_name(filename))

    async def attach(
        self,
        conversation_id: int,
        *,
        role: str,
        kind: str,
        file_ref: object,
        client_id: object,
        caption: object = "",
        source: str = "web",
        origin_sid: str | None = None,
        author: Author | None = None,
    ) -> Posted:
        """Post a held upload as a message: only into the conversation, by the side, and as
        the kind it was uploaded for (the reference is signed); once per client id."""
        client_id = check_client_id(client_id)
        if (posted := await self._posted_before(conversation_id, client_id)) is not None:
            return posted
        key, name = self._check_ref(file_ref, conversation_id, role, kind)
        if await Message.exists(media_key=key):
            raise InvalidInput("media_bad_ref")  # already sent in another message
        try:
            data = await self.read(key)
        except KeyError:
            raise InvalidInput("media_expired") from None
        processed = await asyncio.to_thread(probe.describe, kind, data)
        posted = await self._post(
            conversation_id,
            role,
            kind,
            client_id,
            _attachment(key, processed, name if kind == "audio" else ""),
            caption,
            source,
            origin_sid,
            discard_on_failure=False,  # the sender may try again with the same reference
            author=author,
        )
        self._held.get(conversation_id, {}).pop(key, None)
        return posted

    async def _posted_before(self, conversation_id: int, client_id: str) -> Posted | None:
        """A retry of an upload that was committed (its answer was lost): the stored message,
        so nothing is decoded or stored again."""
        stored = await Message.get_or_none(conversation_id=conversation_id, client_id=client_id)
        if stored is None:
            return None
        return Posted(stored, await Conversation.get(id=conversation_id), False)

    def _file_ref(self, key: str, conversation_id: int, role: str, kind: str, name: str) -> str:
        encoded = base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")
        body = f"{key}:{encoded}"
        return f"upload:{body}:{self._sign(body, conversation_id, role, kind)}"

    def _sign(self, body: str, conversation_id: int, role: str, kind: str) -> str:
        text = f"{body}|{conversation_id}|{role}|{kind}".encode()
        return hmac.new(self._secret, text, hashlib.sha256).hexdigest()[:32]

    def _check_ref(
        self, file_ref: object, conversation_id: int, role: str, kind: str
    ) -> tuple[str, str]:
        parts = file_ref.split(":") if isinstance(file_ref, str) else []
        if len(parts) != 4 or parts[0] != "upload" or not valid_key(parts[1]):
            raise InvalidInput("media_bad_ref")
        body = f"{parts[1]}:{parts[2]}"
        if not hmac.compare_digest(parts[3], self._sign(body, conversation_id, role, kind)):
            raise InvalidInput("media_bad_ref")
        try:
            name = base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4)).decode()
        except ValueError:
            name = ""
        return parts[1], name

    async def _store(
        self, conversation_id: int, role: str, kind: str, data: bytes
    ) -> tuple[probe.Processed, str]:
        """Check a file's size, the visitor's quota and its content; write our copy."""
        if role == "visitor" and await self._uploads.hit(str(conversation_id)):
            # Every upload is decoded: a flood from one visitor would delay everyone's.
            raise TooMany("rate_limited")
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
        return processed, key

    async def _post(
        self,
        conversation_id: int,
        role: str,
        kind: str,
        client_id: str,
        attachment: Attachment,
        caption: object,
        source: str,
        origin_sid: str | None,
        *,
        discard_on_failure: bool = True,
        author: Author | None = None,
    ) -> Posted:
        try:
            posted = await self.chat.post_message(
                conversation_id,
                role=role,
                text=caption if isinstance(caption, str) else "",
                client_id=client_id,
                source=source,
                kind=kind,
                origin_sid=origin_sid,
                media=attachment,
                author=author,
            )
        except BaseException:
            if discard_on_failure:
                await self._discard(attachment.key)
            raise
        if not posted.created and discard_on_failure:
            await self._discard(attachment.key)  # a concurrent retry won: its copy is kept
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
        since = time.monotonic() - ORPHAN_GRACE.total_seconds()
        held = self._held.get(conversation_id, {})
        for key, (_, when) in list(held.items()):
            if when < since:
                del held[key]
        used += sum(size for size, _ in held.values())
        if used + incoming > self.settings.visitor_quota:
            raise InvalidInput("media_quota", limit=size_text(self.settings.visitor_quota))

    async def _discard(self, key: str) -> None:
        try:
            await self.store.delete(key)
        except StorageError:
            log.warning("could not remove %s (Repair removes it later)", key)

    async def read(self, key: str) -> bytes:
        """An object's bytes for serving; KeyError if it is missing."""
        try:
            return await self.store.get(key)
        except StorageError as exc:
            log.error("media storage could not give %s: %s", key, exc)
            raise StorageUnavailable("media_storage") from exc


def size_text(size: int) -> str:
    """A byte count as people read it: 72 GB, 7.2 GB, 10 MB, 293 KB."""
    for unit, scale in (("TB", 1024**4), ("GB", 1024**3), ("MB", 1024**2)):
        if size >= scale:
            value = size / scale
            return (
                f"{value:.1f}".removesuffix(".0") + f" {unit}"
                if value < 10
                else f"{round(value)} {unit}"
            )
    return f"{max(1, round(size / 1024))} KB"


def _attachment(key: str, processed: probe.Processed, filename: object) -> Attachment:
    return Attachment(
        key=key,
        content_type=processed.content_type,
        size=len(processed.data),
        width=processed.width,
        height=processed.height,
        duration_ms=processed.duration_ms,
        name=display_name(filename),
    )
