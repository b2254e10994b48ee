"""The object-store backends through the real server: S3 against a real S3-compatible server
(moto's server mode, on 127.0.0.1) and Cloudinary against a local fake of its HTTP APIs."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.support.clients import (
    ADMIN_COOKIE,
    VISITOR_COOKIE,
    admin_csrf,
    admin_login,
    call,
    client_id,
    panel_action,
    start_visitor,
    visitor_peer,
)
from tests.support.fake_cloudinary import FakeCloudinary, Resource
from tests.support.media_files import fetch, jpeg, tone, upload
from tests.support.server import Server, free_port, sqlite_server


@dataclass
class Backend:
    name: str
    env: dict[str, str]
    objects: Callable[[], dict[str, bytes]]  # our key -> stored bytes
    break_it: Callable[[], None]
    mend_it: Callable[[], None]
    put: Callable[[str, bytes], None]  # an object written behind the app's back
    empty: Callable[[], None]  # remove every object


@pytest.fixture(scope="module", params=["s3", "cloudinary"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """One store of each kind for the module; each test starts with it empty (`server`)."""
    if request.param == "s3":
        # moto keeps its buckets in this process across modules: a bucket of its own.
        bucket = f"sohbet-{secrets.token_hex(4)}"
        port = free_port()
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        moto.start()
        endpoint = f"http://127.0.0.1:{port}"
        s3 = boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="test-key", aws_secret_access_key="test-secret",
        )  # fmt: skip
        s3.create_bucket(Bucket=bucket)

        def s3_objects() -> dict[str, bytes]:
            listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
            return {
                o["Key"].removeprefix("chat/"): s3.get_object(Bucket=bucket, Key=o["Key"])[
                    "Body"
                ].read()
                for o in listed
            }

        running = [True]

        def stop() -> None:
            moto.stop()
            running[0] = False

        def restart() -> None:
            nonlocal moto
            moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
            moto.start()  # moto keeps its state in the process: the bucket is still there
            running[0] = True

        env = {
            "MEDIA_STORAGE": "s3", "S3_BUCKET": bucket, "S3_ENDPOINT_URL": endpoint,
            "S3_ACCESS_KEY_ID": "test-key", "S3_SECRET_ACCESS_KEY": "test-secret", "S3_PREFIX": "chat/",
        }  # fmt: skip

        def s3_put(key: str, data: bytes) -> None:
            s3.put_object(Bucket=bucket, Key=f"chat/{key}", Body=data)

        def s3_empty() -> None:
            for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=o["Key"])

        yield Backend("s3", env, s3_objects, stop, restart, s3_put, s3_empty)
        if running[0]:
            moto.stop()
    else:
        fake = await FakeCloudinary().start()

        def cloud_objects() -> dict[str, bytes]:
            return {k.removeprefix("sohbet/"): v for k, v in fake.objects().items()}

        def down() -> None:
            fake.down = True

        def up() -> None:
            fake.down = False

        env = {
            "MEDIA_STORAGE": "cloudinary", "CLOUDINARY_URL": fake.url,
            "CLOUDINARY_API_BASE": fake.base_url, "CLOUDINARY_DELIVERY_BASE": fake.base_url,
        }  # fmt: skip

        def cloud_put(key: str, data: bytes) -> None:
            public_id = f"sohbet/{key}"
            fake.resources[("raw", "authenticated", public_id)] = Resource(
                public_id, "raw", "authenticated", data, datetime.now(UTC)
            )

        yield Backend("cloudinary", env, cloud_objects, down, up, cloud_put, fake.resources.clear)
        await fake.stop()


@pytest.fixture(scope="module")
async def store_server(
    backend: Backend, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Server]:
    async with sqlite_server(tmp_path_factory.mktemp("store"), backend.env) as srv:
        yield srv


@pytest.fixture
def server(store_server: Server, backend: Backend) -> Server:
    """The module's server on a store emptied for this test (tests count what they stored)."""
    backend.empty()
    return store_server


def local_files(workdir: Path) -> list[Path]:
    root = workdir / "media"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


async def test_media_round_trip_through_the_object_store(backend: Backend, server: Server) -> None:
    token, cid = await start_visitor(server.url, "Bulut")
    cookie = f"{VISITOR_COOKIE}={token}"
    photo_id = client_id()
    status, body = await upload(
        server.url, chat_id=cid, client_id=photo_id, data=jpeg(), visitor_token=token
    )
    assert status == 200, body
    photo = body["message"]["fileRef"]
    status, body = await upload(
        server.url, chat_id=cid, client_id=client_id(), data=tone("webm", "libopus", 1.0),
        kind="voice", filename="voice.webm", content_type="audio/webm", visitor_token=token,
    )  # fmt: skip
    assert status == 200, body
    voice = body["message"]["fileRef"]
    stored = backend.objects()
    assert set(stored) == {photo.rsplit("/", 1)[1], voice.rsplit("/", 1)[1]}
    for src, content_type in ((photo, "image/jpeg"), (voice, "audio/webm")):
        status, data, headers = await fetch(server.url, src, cookie)
        assert status == 200 and headers["Content-Type"] == content_type
        assert data == stored[src.rsplit("/", 1)[1]]
    assert not local_files(server.workdir), "nothing is written to local disk"

    # A retry stores nothing new.
    status, body = await upload(
        server.url, chat_id=cid, client_id=photo_id, data=jpeg(), visitor_token=token
    )
    assert status == 200 and body["duplicate"] and len(backend.objects()) == 2

    # Deleting the conversation removes its objects from the store.
    admin = await admin_login(server)
    csrf = await admin_csrf(server.url, admin)
    status, page = await panel_action(server.url, admin, csrf, f"/admin/c/{cid}/delete")
    assert status == 200, page
    assert backend.objects() == {}
    status, _, _ = await fetch(server.url, photo, f"{ADMIN_COOKIE}={admin}")
    assert status == 404


async def test_a_store_that_is_down_refuses_clearly_and_keeps_nothing(
    backend: Backend, server: Server
) -> None:
    token, cid = await start_visitor(server.url, "Arıza")
    backend.break_it()
    try:
        status, body = await upload(
            server.url, chat_id=cid, client_id=client_id(), data=jpeg(), visitor_token=token
        )
    finally:
        backend.mend_it()
    assert status == 503 and body["error"] == "media_storage"
    assert "tekrar deneyin" in body["message"]
    peer = await visitor_peer(server.url, token)
    ack = await peer.call("join", {"chat_id": cid})
    await peer.close()
    assert ack["last_seq"] == 0  # no message row for a file that was not stored
    # Once the store is back, the same upload goes through.
    status, body = await upload(
        server.url, chat_id=cid, client_id=client_id(), data=jpeg(), visitor_token=token
    )
    assert status == 200, body


async def test_storage_check_through_the_object_store(backend: Backend, server: Server) -> None:
    admin = await admin_login(server)
    headers = {
        "Cookie": f"{ADMIN_COOKIE}={admin}",
        "X-CSRF-Token": await admin_csrf(server.url, admin),
    }

    async def storage() -> dict[str, str]:
        status, report = await call(server, "POST", "/api/test/run", headers)
        assert status == 200, report
        found: dict[str, str] = next(c for c in report["checks"] if c["name"] == "storage")
        return found

    passed = await storage()
    assert passed["status"] == "pass", passed
    assert passed["detail"].startswith(f"{backend.name}: yazma, okuma ve silme"), passed
    assert backend.objects() == {}, "the probe object was deleted"
    backend.break_it()
    try:
        failed = await storage()
    finally:
        backend.mend_it()
    assert failed["status"] == "fail" and failed["detail"].startswith(f"{backend.name}: ")
    assert ("Could not connect" in failed["detail"]) or ("HTTP 502" in failed["detail"]), failed
    print(f"\n{backend.name} storage check: {passed['detail']} / down: {failed['detail']}")

    # Repair lists the store's objects: a file a message uses and a fresh stray one are both
    # seen, and both kept (a stray younger than 10 minutes may be an upload still committing).
    token, cid = await start_visitor(server.url, "Onarım")
    status, body = await upload(
        server.url, chat_id=cid, client_id=client_id(), data=jpeg(), visitor_token=token
    )
    assert status == 200, body
    backend.put("ab" * 16 + ".jpg", b"left behind")
    status, repaired = await call(server, "POST", "/api/repair/run", headers)
    assert status == 200, repaired
    step = next(s for s in repaired["steps"] if s["name"] == "orphan_media")
    assert step["status"] == "pass" and step["detail"] == "2 dosyadan 0 tanesi silindi", step
    assert len(backend.objects()) == 2
