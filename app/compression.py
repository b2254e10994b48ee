"""Compressed responses: neither Quart nor Hypercorn compresses, so this does (gzip).

Static files are compressed once per file version (best level, kept in memory: the whole
static folder is a few hundred KB); pages and partials are compressed per response at a fast
level. Responses that are small, already encoded, partial (206) or bodiless are left alone.
"""

from __future__ import annotations

import gzip

from quart import Quart, Response, request
from quart.wrappers.response import DataBody, FileBody

MIN_BYTES = 512
COMPRESSIBLE = {
    "text/html",
    "text/css",
    "text/plain",
    "text/javascript",
    "application/javascript",
    "application/json",
    "application/manifest+json",
    "image/svg+xml",
}


def _accepts_gzip() -> bool:
    for part in request.headers.get("Accept-Encoding", "").split(","):
        token, _, params = part.strip().partition(";")
        if token.strip().lower() in {"gzip", "*"}:
            return params.replace(" ", "") not in {"q=0", "q=0.0", "q=0.00", "q=0.000"}
    return False


def init_app(app: Quart) -> None:
    """Gzip compressible responses for clients that accept it."""
    cache: dict[tuple[str, str], bytes] = {}

    @app.after_request
    async def compress(response: Response) -> Response:
        if (
            response.status_code != 200
            or request.method == "HEAD"
            or "Content-Encoding" in response.headers
            or response.mimetype not in COMPRESSIBLE
            # A streamed body (a generator) is left streaming.
            or not isinstance(response.response, DataBody | FileBody)
        ):
            return response
        response.vary.add("Accept-Encoding")
        if not _accepts_gzip():
            return response
        etag = response.headers.get("ETag", "")
        static = (request.path, etag) if etag and request.path.startswith("/static/") else None
        # A static file compressed before is not read from disk again.
        packed = cache.get(static) if static else None
        if packed is None:
            data = await response.get_data(as_text=False)
            if len(data) < MIN_BYTES:
                return response
            if static:
                packed = cache[static] = gzip.compress(data, compresslevel=9, mtime=0)
            else:
                packed = gzip.compress(data, compresslevel=5, mtime=0)
        response.set_data(packed)
        response.headers["Content-Encoding"] = "gzip"
        if etag and not etag.startswith("W/"):
            # The same representation id for two encodings would confuse caches: weak tag.
            response.headers["ETag"] = f"W/{etag}"
        return response
