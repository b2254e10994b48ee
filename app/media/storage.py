"""Where media objects live, behind one interface: local disk, an S3-compatible store, Cloudinary.

Keys are made by the server (`new_key`): 32 random hex digits and our own extension, so no
visitor-supplied name ever reaches a path or an object name.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from app.config import MediaSettings

KEY = re.compile(r"^[0-9a-f]{32}\.(jpg|png|webm|ogg|m4a|mp3|bin)$")
CONTENT_TYPES = {
    "jpg": "image/jpeg",
    "png": "image/png",
    "webm": "audio/webm",
    "ogg": "audio/ogg",
    "m4a": "audio/mp4",
    "mp3": "audio/mpeg",
    "bin": "application/octet-stream",
}


def new_key(ext: str) -> str:
    """A fresh object name: unguessable, and a fixed, known extension."""
    if ext not in CONTENT_TYPES:
        raise ValueError(f"unknown media extension {ext!r}")
    return f"{secrets.token_hex(16)}.{ext}"


def valid_key(key: str) -> bool:
    return bool(KEY.match(key))


class StorageError(Exception):
    """The storage backend failed (unreachable, refused, full); the message says how."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    modified: datetime


class MediaStore(Protocol):
    """What every backend does; each raises StorageError when it cannot."""

    name: str

    async def put(self, key: str, data: bytes, content_type: str) -> None: ...

    async def get(self, key: str) -> bytes:
        """The object's bytes; KeyError when there is no such object."""
        ...

    async def delete(self, key: str) -> None:
        """Remove an object; no error if it is already gone."""
        ...

    def objects(self) -> AsyncIterator[StoredObject]:
        """Every object this store holds (for the orphan clean-up)."""
        ...

    async def free_bytes(self) -> int | None:
        """Free space where that means something (local disk), else None."""
        ...

    async def close(self) -> None: ...


class LocalStore:
    """Files under one directory, fanned out by the key's first two hex digits."""

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        if not valid_key(key):
            raise KeyError(key)
        return self.root / key[:2] / key

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        try:
            await asyncio.to_thread(_write_atomically, path, data)
        except OSError as exc:
            raise StorageError(f"{self.root}: {exc.strerror or exc}") from exc

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise KeyError(key) from None
        except OSError as exc:
            raise StorageError(f"{self.root}: {exc.strerror or exc}") from exc

    async def delete(self, key: str) -> None:
        try:
            await asyncio.to_thread(self._path(key).unlink, True)
        except KeyError:
            return
        except OSError as exc:
            raise StorageError(f"{self.root}: {exc.strerror or exc}") from exc

    async def objects(self) -> AsyncIterator[StoredObject]:
        found = await asyncio.to_thread(self._scan)
        for item in found:
            yield item

    def _scan(self) -> list[StoredObject]:
        found: list[StoredObject] = []
        if not self.root.is_dir():
            return found
        for folder in self.root.iterdir():
            if not folder.is_dir() or len(folder.name) != 2:
                continue
            for path in folder.iterdir():
                if valid_key(path.name):
                    stat = path.stat()
                    found.append(
                        StoredObject(path.name, datetime.fromtimestamp(stat.st_mtime, UTC))
                    )
        return found

    async def free_bytes(self) -> int | None:
        usage = await asyncio.to_thread(shutil.disk_usage, self.root)
        return int(usage.free)

    async def close(self) -> None:
        return None


def _write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary name and rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{secrets.token_hex(8)}"
    try:
        with tmp.open("xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def build_store(settings: MediaSettings) -> MediaStore:
    """The backend MEDIA_STORAGE names."""
    if settings.storage == "s3":
        from app.media.s3 import S3Store

        return S3Store(settings)
    if settings.storage == "cloudinary":
        from app.media.cloudinary import CloudinaryStore

        return CloudinaryStore(settings)
    return LocalStore(Path(settings.dir))
