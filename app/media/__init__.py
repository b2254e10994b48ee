"""Photos and voice messages: checked uploads, storage backends, serving to participants only."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from quart import Quart, Request

from app.chat.service import ChatService
from app.config import Settings
from app.core.ratelimit import Limiter
from app.media.orphans import ORPHAN_GRACE, remove_orphans
from app.media.service import MediaService
from app.media.storage import LocalStore, MediaStore
from app.media.views import ENVELOPE, UPLOAD_PATH
from app.timefmt import utcnow

log = logging.getLogger("sohbet.media")


def _request_class(upload_limit: int) -> type[Request]:
    class MediaRequest(Request):
        """The upload route may carry a file up to MEDIA_MAX_BYTES; every other route keeps
        the app's small MAX_CONTENT_LENGTH (the limit is fixed when the request is built)."""

        def __init__(self, method: str, scheme: str, path: str, *args: Any, **kwargs: Any) -> None:
            if method == "POST" and path == UPLOAD_PATH:
                kwargs["max_content_length"] = upload_limit
            super().__init__(method, scheme, path, *args, **kwargs)

    return MediaRequest


SWEEP_SECONDS = 3600


async def _sweep_orphans(service: MediaService) -> None:
    """Hourly, remove files no message uses (held uploads never sent, crashed uploads); the
    Repair button does the same on demand."""
    while True:
        await asyncio.sleep(SWEEP_SECONDS)
        try:
            found = await remove_orphans(service.store, utcnow() - ORPHAN_GRACE)
            if found.removed:
                log.info("removed %d orphan media files of %d", found.removed, found.seen)
        except Exception:
            log.exception("orphan media sweep failed")


def init_app(app: Quart, chat: ChatService, store: MediaStore, limiter: Limiter) -> MediaService:
    """Build the media service on its storage backend and register its routes."""
    from app.media.views import bp

    settings: Settings = app.config["SOHBET"]
    service = MediaService(settings.media, store, chat, settings.secret_key, limiter)
    app.request_class = _request_class(settings.media.max_bytes + ENVELOPE)
    app.register_blueprint(bp)

    @app.while_serving
    async def media_storage() -> AsyncGenerator[None, None]:
        store = service.store
        if isinstance(store, LocalStore):
            try:
                await asyncio.to_thread(Path(store.root).mkdir, parents=True, exist_ok=True)
            except OSError as exc:
                # Serving goes on (text chat works); uploads and the Storage check say why.
                log.error("media directory %s is not usable: %s", store.root, exc)
        sweeper = asyncio.create_task(_sweep_orphans(service), name="media-orphans")
        yield
        sweeper.cancel()
        await asyncio.gather(sweeper, return_exceptions=True)
        await store.close()

    return service
