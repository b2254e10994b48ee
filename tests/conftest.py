"""Fixtures: the app built from its factory and served by real Hypercorn, on SQLite or PostgreSQL."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Generator

import pytest

from tests.support.clients import admin_login
from tests.support.server import Server, create_pg_database, drop_pg_database

# Fixtures that live with their helpers: Chromium (browser) and the fake Telegram (fake,
# tg_server, tg_admin_token).
pytest_plugins = ["tests.support.browser", "tests.support.telegram"]


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Server]:
    """A server on a fresh database of each kind (the module's tests run against both)."""
    workdir = tmp_path_factory.mktemp("server")
    pg_name = None
    if request.param == "postgres":
        url, pg_name = await create_pg_database()
    else:
        url = f"sqlite://{workdir / 'sohbet.db'}"
    srv = Server(
        database_url=url, workdir=workdir, env_extra=getattr(request.module, "SERVER_ENV", {})
    )
    await srv.start()
    yield srv
    # In a thread: clients and fakes on this loop keep answering while the server shuts down.
    await asyncio.to_thread(srv.stop)
    if pg_name:
        await drop_pg_database(pg_name)


@pytest.fixture(scope="module")
async def admin_token(server: Server) -> str:
    return await admin_login(server)


@pytest.fixture
async def database() -> AsyncIterator[str]:
    """A fresh PostgreSQL database's URL, dropped after the test (for tests that start their
    own servers on it)."""
    url, name = await create_pg_database()
    yield url
    await drop_pg_database(name)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    """In CI (`CI` set, as `.ci/run` runs), a skip is a failure: every skip in this suite means
    a tool is missing (root for network namespaces, coturn, Firefox, WebKitWebDriver), and
    scripts/test-services.sh installs them all, so a skip there is a broken install step."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where nothing may be missing: {reason}"
