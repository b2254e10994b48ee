"""Orphan media: stored files no message refers to (an upload that died before its commit, a
held upload never sent, a deletion whose file removal failed), removed by the hourly sweep and
by Repair.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from app.media.storage import MediaStore
from app.models import Message

# Younger files may be an upload still committing (or held for a message not sent yet).
ORPHAN_GRACE = timedelta(minutes=10)


@dataclass(frozen=True)
class Orphans:
    seen: int
    removed: int


async def remove_orphans(store: MediaStore, older_than: datetime) -> Orphans:
    """Delete objects no message refers to (an upload still committing is younger)."""
    seen = removed = 0
    batch: list[str] = []

    async def sweep() -> int:
        used = {
            str(key)
            for key in await Message.filter(media_key__in=batch).values_list("media_key", flat=True)
        }
        gone = [key for key in batch if key not in used]
        for key in gone:
            await store.delete(key)
        batch.clear()
        return len(gone)

    async for item in store.objects():
        seen += 1
        if item.modified < older_than:
            batch.append(item.key)
        if len(batch) >= 500:
            removed += await sweep()
    if batch:
        removed += await sweep()
    return Orphans(seen, removed)
