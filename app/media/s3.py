"""MEDIA_STORAGE=s3: objects in an S3-compatible store (AWS S3, MinIO, R2, Ceph...).

One aiobotocore client for the process, made on first use and closed at shutdown; objects are
private (served through our own route, which checks who asks).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from app.config import MediaSettings
from app.media.storage import StorageError, StoredObject, valid_key

TIMEOUT = 10


class S3Store:
    """put/get/delete/list against one bucket, under a key prefix."""

    name = "s3"

    def __init__(self, settings: MediaSettings) -> None:
        self.settings = settings
        self.bucket = settings.s3_bucket
        self.prefix = settings.s3_prefix
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def _s3(self) -> Any:
        async with self._lock:
            if self._client is None:
                stack = contextlib.AsyncExitStack()
                session = get_session()
                self._client = await stack.enter_async_context(
                    session.create_client(
                        "s3",
                        region_name=self.settings.s3_region,
                        endpoint_url=self.settings.s3_endpoint_url or None,
                        aws_access_key_id=self.settings.s3_access_key_id,
                        aws_secret_access_key=self.settings.s3_secret_access_key,
                        config=AioConfig(
                            connect_timeout=TIMEOUT,
                            read_timeout=TIMEOUT,
                            retries={"max_attempts": 2, "mode": "standard"},
                        ),
                    )
                )
                self._stack = stack
            return self._client

    def _name(self, key: str) -> str:
        if not valid_key(key):
            raise KeyError(key)
        return self.prefix + key

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        try:
            s3 = await self._s3()
            await s3.put_object(
                Bucket=self.bucket, Key=self._name(key), Body=data, ContentType=content_type
            )
        except (BotoCoreError, ClientError, OSError) as exc:
            raise StorageError(_describe(exc)) from exc

    async def get(self, key: str) -> bytes:
        try:
            s3 = await self._s3()
            answer = await s3.get_object(Bucket=self.bucket, Key=self._name(key))
            async with answer["Body"] as body:
                data: bytes = await body.read()
            return data
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise KeyError(key) from None
            raise StorageError(_describe(exc)) from exc
        except (BotoCoreError, OSError) as exc:
            raise StorageError(_describe(exc)) from exc

    async def delete(self, key: str) -> None:
        try:
            name = self._name(key)
        except KeyError:
            return
        try:
            s3 = await self._s3()
            await s3.delete_object(Bucket=self.bucket, Key=name)
        except (BotoCoreError, ClientError, OSError) as exc:
            raise StorageError(_describe(exc)) from exc

    async def objects(self) -> AsyncIterator[StoredObject]:
        try:
            s3 = await self._s3()
            pages = s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            )
            async for page in pages:
                for item in page.get("Contents", []):
                    key = str(item["Key"])[len(self.prefix) :]
                    if valid_key(key):
                        modified = item["LastModified"]
                        yield StoredObject(key, modified.astimezone(UTC))
        except (BotoCoreError, ClientError, OSError) as exc:
            raise StorageError(_describe(exc)) from exc

    async def free_bytes(self) -> int | None:
        return None

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None
            self._client = None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', '?')}: {error.get('Message', '')}"[:300]
    return f"{type(exc).__name__}: {exc}"[:300]
