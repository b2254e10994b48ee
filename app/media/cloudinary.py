"""MEDIA_STORAGE=cloudinary: Cloudinary's upload, Admin and delivery APIs, spoken over aiohttp.

The earlier version of the product kept its files there. Objects are uploaded as `raw`
resources of type `authenticated` (our bytes, already checked and re-encoded, kept exactly;
nobody can fetch them without a signed URL) with a signed upload request; we fetch them back
with a signed delivery URL and serve them through our own participant-checked route.
Cloudinary's Python SDK is synchronous (urllib3), so the few requests are made here directly.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp

from app.config import MediaSettings
from app.media.storage import StorageError, StoredObject, valid_key

TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)
RESOURCE = "raw"
TYPE = "authenticated"


def sign_params(params: dict[str, str], secret: str) -> str:
    """An upload API signature: SHA-1 of the sorted `k=v&…` parameters followed by the secret."""
    text = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if v != "")
    return hashlib.sha1((text + secret).encode()).hexdigest()  # noqa: S324 (Cloudinary's scheme)


def sign_path(path: str, secret: str) -> str:
    """A delivery URL signature: the `s--XXXXXXXX--` component for a path after the type."""
    digest = hashlib.sha1((path + secret).encode()).digest()  # noqa: S324 (Cloudinary's scheme)
    return "s--" + base64.urlsafe_b64encode(digest).decode()[:8] + "--"


class CloudinaryStore:
    """put/get/delete/list against one Cloudinary cloud, in one folder."""

    name = "cloudinary"

    def __init__(self, settings: MediaSettings) -> None:
        self.cloud = settings.cloudinary_cloud
        self.key = settings.cloudinary_key
        self.secret = settings.cloudinary_secret
        self.api = f"{settings.cloudinary_api_base}/v1_1/{self.cloud}"
        self.delivery = f"{settings.cloudinary_delivery_base}/{self.cloud}"
        self.folder = settings.cloudinary_folder
        self._http: aiohttp.ClientSession | None = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=TIMEOUT)
        return self._http

    def _public_id(self, key: str) -> str:
        if not valid_key(key):
            raise KeyError(key)
        return f"{self.folder}/{key}"

    def _signed(self, params: dict[str, str]) -> dict[str, str]:
        params = {**params, "timestamp": str(int(time.time()))}
        return {**params, "api_key": self.key, "signature": sign_params(params, self.secret)}

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        form = aiohttp.FormData()
        for name, value in self._signed({"public_id": self._public_id(key), "type": TYPE}).items():
            form.add_field(name, value)
        form.add_field("file", data, filename=key, content_type=content_type)
        try:
            async with self._session().post(f"{self.api}/{RESOURCE}/upload", data=form) as resp:
                body = await _json(resp)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StorageError(_network(exc)) from exc
        if resp.status != 200 or body.get("public_id") != self._public_id(key):
            raise StorageError(_error(resp.status, body))

    def url(self, key: str) -> str:
        """The signed delivery URL of an object."""
        path = self._public_id(key)
        return f"{self.delivery}/{RESOURCE}/{TYPE}/{sign_path(path, self.secret)}/{path}"

    async def get(self, key: str) -> bytes:
        try:
            async with self._session().get(self.url(key)) as resp:
                if resp.status == 404:
                    raise KeyError(key)
                if resp.status != 200:
                    raise StorageError(f"Cloudinary delivery answered HTTP {resp.status}")
                return await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StorageError(_network(exc)) from exc

    async def delete(self, key: str) -> None:
        try:
            public_id = self._public_id(key)
        except KeyError:
            return
        params = self._signed({"public_id": public_id, "type": TYPE, "invalidate": "true"})
        try:
            async with self._session().post(f"{self.api}/{RESOURCE}/destroy", data=params) as resp:
                body = await _json(resp)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StorageError(_network(exc)) from exc
        if resp.status != 200 or body.get("result") not in ("ok", "not found"):
            raise StorageError(_error(resp.status, body))

    async def objects(self) -> AsyncIterator[StoredObject]:
        cursor = ""
        auth = aiohttp.BasicAuth(self.key, self.secret)
        while True:
            query = {"prefix": f"{self.folder}/", "max_results": "500"}
            if cursor:
                query["next_cursor"] = cursor
            try:
                async with self._session().get(
                    f"{self.api}/resources/{RESOURCE}/{TYPE}", params=query, auth=auth
                ) as resp:
                    body = await _json(resp)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise StorageError(_network(exc)) from exc
            if resp.status != 200:
                raise StorageError(_error(resp.status, body))
            for item in body.get("resources", []):
                key = str(item.get("public_id", ""))[len(self.folder) + 1 :]
                if valid_key(key):
                    created = datetime.fromisoformat(str(item["created_at"]).replace("Z", "+00:00"))
                    yield StoredObject(key, created.astimezone(UTC))
            cursor = str(body.get("next_cursor") or "")
            if not cursor:
                return

    async def free_bytes(self) -> int | None:
        return None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()


async def _json(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    """The JSON answer; a proxy's HTML error page becomes a StorageError naming the status."""
    try:
        body = await resp.json(content_type=None)
    except ValueError:
        raise StorageError(f"Cloudinary answered HTTP {resp.status} (not JSON)") from None
    return body if isinstance(body, dict) else {}


def _network(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def _error(status: int, body: object) -> str:
    message = ""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = str(body["error"].get("message", ""))
    return f"Cloudinary answered HTTP {status}: {message}"[:300]
