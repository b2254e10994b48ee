"""Test & Repair for media: the Storage check (write, read, delete through the backend; free
disk space; a clear failure when storage is broken) and the orphan-file repair step, on the
real app served in this process (its clock can be moved, to age files)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.selftest.repair import run_repair
from tests.support.clients import VISITOR_COOKIE, client_id, start_visitor
from tests.support.inprocess import InProcessServer, ManualClock
from tests.support.media_files import fetch, jpeg, upload


@pytest.fixture(scope="module")
async def app_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[InProcessServer]:
    workdir: Path = tmp_path_factory.mktemp("media-selftest")
    server = await InProcessServer(workdir, {}, ManualClock()).start()
    yield server
    await server.stop()


def media_root(server: InProcessServer) -> Path:
    return Path(server.config["MEDIA_DIR"])


async def storage_result(server: InProcessServer) -> tuple[str, str]:
    report = await server.app.extensions["selftest"].tests.run("api")
    found = next(r for r in report.results if r.name == "storage")
    return found.status, found.detail


async def test_storage_check_writes_reads_deletes_and_reports_free_space(
    app_server: InProcessServer,
) -> None:
    status, detail = await storage_result(app_server)
    assert status == "pass", detail
    assert detail.startswith(f"local ({media_root(app_server)}): yazma, okuma ve silme")
    assert detail.endswith(" boş") and ("GB" in detail or "MB" in detail), detail
    # It cleaned up after itself.
    assert not [p for p in media_root(app_server).rglob("*") if p.is_file()]


async def test_storage_check_fails_clearly_when_storage_is_broken(
    app_server: InProcessServer,
) -> None:
    root = media_root(app_server)
    shutil.rmtree(root, ignore_errors=True)
    root.write_text("a file where the media folder should be")
    try:
        status, detail = await storage_result(app_server)
    finally:
        root.unlink()
        root.mkdir()
    assert status == "fail"
    assert str(root) in detail and ("Not a directory" in detail or "File exists" in detail), detail
    status, detail = await storage_result(app_server)
    assert status == "pass", detail


async def test_orphan_files_are_removed_and_repair_is_idempotent(
    app_server: InProcessServer,
) -> None:
    clock = app_server.clock
    assert clock is not None
    token, cid = await start_visitor(app_server.url, "Yetim")
    status, body = await upload(
        app_server.url, chat_id=cid, client_id=client_id(), data=jpeg(), visitor_token=token
    )
    assert status == 200, body
    kept = body["message"]["fileRef"]
    root = media_root(app_server)
    # A file a crashed upload left behind (no message row), and one still being committed.
    orphan = root / "ab" / ("ab" + "1" * 30 + ".jpg")
    young = root / "cd" / ("cd" + "2" * 30 + ".ogg")
    for path in (orphan, young):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"left over")
    clock.advance(11 * 60)
    future = clock.now().timestamp()
    os.utime(young, (future, future))  # written "just now" on the moved clock

    ctx = app_server.app.extensions["selftest"].repair
    first = await run_repair(ctx, "tr")
    step = next(s for s in first["steps"] if s["name"] == "orphan_media")
    assert first["counts"]["orphan_media"] == 1 and step["status"] == "pass", step
    assert step["detail"] == "3 dosyadan 1 tanesi silindi", step
    assert not orphan.exists() and young.exists()
    status, _, _ = await fetch(app_server.url, kept, f"{VISITOR_COOKIE}={token}")
    assert status == 200, "a file a message uses is never touched"

    second = await run_repair(ctx, "tr")
    assert second["counts"]["orphan_media"] == 0 and second["ok"], second
