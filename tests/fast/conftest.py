"""The fast layer: the real app (create_app, lifespan and all) driven in-process through Quart's
test client, no server process and no sockets. Every test here is marked `fast`:
`pytest -m fast` (or `pytest tests/fast`) gives feedback in seconds.

One app per module (tortoise keeps one set of connections per process); each test gets its own
client, so its own cookie jar.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from quart.typing import TestAppProtocol, TestClientProtocol

from app import create_app
from tests.support.inprocess import app_config, login_code
from tests.support.server import ADMIN_PASSWORD

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.fast)


@pytest.fixture(scope="module")
async def app(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TestAppProtocol]:
    """The app with its start-up and shutdown run (database migrated, services up)."""
    quart_app = create_app(app_config(tmp_path_factory.mktemp("fast")))
    async with quart_app.test_app() as running:
        yield running


@pytest.fixture
def client(app: TestAppProtocol) -> TestClientProtocol:
    """A new browser: an empty cookie jar."""
    return app.test_client()


@pytest.fixture
async def operator(app: TestAppProtocol, caplog: pytest.LogCaptureFixture) -> TestClientProtocol:
    """A browser signed in as the operator through both steps (password, then the code)."""
    browser = app.test_client()
    caplog.set_level("WARNING")
    r = await browser.post("/admin/login", form={"password": ADMIN_PASSWORD})
    assert r.status_code == 303, await r.get_data(as_text=True)
    r = await browser.post("/admin/verify", form={"code": login_code(caplog)})
    assert r.status_code == 303 and r.headers["Location"] == "/admin"
    return browser
