"""A local fake of Cloudinary's HTTP APIs (upload, destroy, Admin list, delivery), on aiohttp.

It checks what Cloudinary checks, by its published rules (written out here, not borrowed from
the app): upload/destroy requests are signed with SHA-1 over the sorted parameters (without
`file`, `api_key`, `resource_type`, `cloud_name`) followed by the API secret, and refused when
the signature or api_key is wrong or the timestamp is over an hour old; `authenticated`
resources are delivered only on a URL carrying `s--<first 8 of url-safe base64 SHA-1(path +
secret)>--`; the Admin API wants HTTP Basic auth with the key and secret. Answers are
Cloudinary's JSON shapes, errors `{"error": {"message": …}}`.
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web
from aiohttp.typedefs import Handler

UNSIGNED = {"file", "api_key", "resource_type", "cloud_name", "signature"}


@dataclass
class Resource:
    public_id: str
    resource_type: str
    type: str
    data: bytes
    created_at: datetime


class FakeCloudinary:
    def __init__(
        self, cloud: str = "demo", key: str = "123456789012345", secret: str = "s3cr3t-Sohbet"
    ) -> None:
        self.cloud, self.key, self.secret = cloud, key, secret
        self.resources: dict[tuple[str, str, str], Resource] = {}
        self.requests: list[tuple[str, str, int]] = []
        self.down = False
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The CLOUDINARY_URL the app is configured with."""
        return f"cloudinary://{self.key}:{self.secret}@{self.cloud}"

    async def start(self) -> FakeCloudinary:
        app = web.Application(client_max_size=100 * 1024 * 1024, middlewares=[self._record])
        app.router.add_post("/v1_1/{cloud}/{rtype}/upload", self._upload)
        app.router.add_post("/v1_1/{cloud}/{rtype}/destroy", self._destroy)
        app.router.add_get("/v1_1/{cloud}/resources/{rtype}/{type}", self._list)
        app.router.add_get("/{cloud}/{rtype}/{type}/{rest:.+}", self._deliver)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    def objects(self) -> dict[str, bytes]:
        return {r.public_id: r.data for r in self.resources.values()}

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.down:
            response: web.StreamResponse = web.Response(status=502, text="Bad Gateway")
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                response = exc
        self.requests.append((request.method, request.path, response.status))
        return response

    def _error(self, status: int, message: str) -> web.Response:
        return web.json_response({"error": {"message": message}}, status=status)

    def _check_signature(self, params: dict[str, str]) -> web.Response | None:
        if params.get("api_key") != self.key:
            return self._error(401, "Unknown API key")
        signed = {k: v for k, v in params.items() if k not in UNSIGNED and v != ""}
        text = "&".join(f"{k}={signed[k]}" for k in sorted(signed)) + self.secret
        expected = hashlib.sha1(text.encode()).hexdigest()
        if params.get("signature") != expected:
            return self._error(
                401,
                f"Invalid Signature {params.get('signature')}. String to sign - '{text[: -len(self.secret)]}'.",
            )
        if abs(time.time() - int(params.get("timestamp") or 0)) > 3600:
            return self._error(401, "Stale request - reported time is more than 1 hour ago")
        return None

    async def _upload(self, request: web.Request) -> web.Response:
        if request.match_info["cloud"] != self.cloud:
            return self._error(404, "Invalid cloud_name")
        form = await request.post()
        params = {k: v for k, v in form.items() if isinstance(v, str)}
        refused = self._check_signature(params)
        if refused:
            return refused
        upload = form.get("file")
        if not isinstance(upload, web.FileField):
            return self._error(400, "Missing required parameter - file")
        data = upload.file.read()
        rtype, kind = request.match_info["rtype"], params.get("type", "upload")
        public_id = params.get("public_id") or hashlib.md5(data).hexdigest()
        res = Resource(public_id, rtype, kind, data, datetime.now(UTC))
        self.resources[(rtype, kind, public_id)] = res
        return web.json_response({
            "public_id": public_id, "version": int(time.time()), "resource_type": rtype,
            "type": kind, "bytes": len(data), "created_at": res.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "secure_url": f"{self.base_url}/{self.cloud}/{rtype}/{kind}/{public_id}",
        })  # fmt: skip

    async def _destroy(self, request: web.Request) -> web.Response:
        params = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        refused = self._check_signature(params)
        if refused:
            return refused
        key = (
            request.match_info["rtype"],
            params.get("type", "upload"),
            params.get("public_id", ""),
        )
        found = self.resources.pop(key, None)
        return web.json_response({"result": "ok" if found else "not found"})

    async def _list(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"{self.key}:{self.secret}".encode()).decode()
        if auth != expected:
            return self._error(401, "Invalid credentials")
        rtype, kind = request.match_info["rtype"], request.match_info["type"]
        prefix = request.query.get("prefix", "")
        size = min(int(request.query.get("max_results", "10")), 500)
        start = int(request.query.get("next_cursor") or 0)
        found = sorted(
            r.public_id for (t, k, p), r in self.resources.items()
            if t == rtype and k == kind and p.startswith(prefix)
        )  # fmt: skip
        page = found[start : start + size]
        body: dict[str, object] = {"resources": [
            {"public_id": p, "resource_type": rtype, "type": kind,
             "created_at": self.resources[(rtype, kind, p)].created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
             "bytes": len(self.resources[(rtype, kind, p)].data)}
            for p in page
        ]}  # fmt: skip
        if start + size < len(found):
            body["next_cursor"] = str(start + size)
        return web.json_response(body)

    async def _deliver(self, request: web.Request) -> web.Response:
        rtype, kind, rest = (request.match_info[k] for k in ("rtype", "type", "rest"))
        signature = None
        if rest.startswith("s--"):
            signature, _, rest = rest.partition("/")
        if kind == "authenticated":
            digest = hashlib.sha1((rest + self.secret).encode()).digest()
            if signature != "s--" + base64.urlsafe_b64encode(digest).decode()[:8] + "--":
                return web.Response(status=401, headers={"X-Cld-Error": "Signature mismatch"})
        res = self.resources.get((rtype, kind, rest))
        if res is None:
            return web.Response(status=404, headers={"X-Cld-Error": "Resource not found"})
        return web.Response(body=res.data, content_type="application/octet-stream")
