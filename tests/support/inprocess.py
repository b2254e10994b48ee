"""The real app on real Hypercorn, inside the test's event loop, with a controllable clock.

For tests that simulate minutes of a Telegram outage: the outbox worker and the inbox take
their time from the clock, and `ManualClock.advance()` moves it forward without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart.wrappers import Response as TestResponse

from app import asgi_app, create_app
from app.timefmt import utcnow
from tests.support.server import ADMIN_PASSWORD, free_port


class ManualClock:
    """Real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self._offset = timedelta()
        self._tick = asyncio.Event()

    def now(self) -> datetime:
        return utcnow() + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += timedelta(seconds=seconds)
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    async def wait(self, event: asyncio.Event, seconds: float) -> None:
        deadline = self.now() + timedelta(seconds=seconds)
        while not event.is_set() and self.now() < deadline:
            waiters = {
                asyncio.ensure_future(event.wait()),
                asyncio.ensure_future(self._tick.wait()),
            }
            remaining = (deadline - self.now()).total_seconds()
            _, pending = await asyncio.wait(
                waiters, timeout=max(0.0, remaining), return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending:
                task.cancel()


def app_config(workdir: Path, config: dict[str, str] | None = None) -> dict[str, str]:
    """create_app's settings for a test: a fresh SQLite file and media folder in `workdir`, the
    test password, and `config` on top."""
    return {
        "SOHBET_ENV_FILE": str(workdir / "no.env"),
        "DATABASE_URL": f"sqlite://{workdir / 'inproc.db'}",
        "SECRET_KEY": "test-secret-key",
        "ADMIN_PASSWORD": ADMIN_PASSWORD,
        # WebRTC runs only inside a private network namespace (tests/test_calls.py).
        "SELFTEST_SKIP": "calls",
        "MEDIA_DIR": str(workdir / "media"),
        "CONVERSATIONS_PER_HOUR": "100000",
        "MESSAGES_PER_MINUTE": "100000",
        **(config or {}),
    }


class InProcessServer:
    """create_app(config, clock=...) served by Hypercorn on 127.0.0.1 in this loop."""

    def __init__(
        self, workdir: Path, config: dict[str, str], clock: ManualClock | None = None
    ) -> None:
        self.port = free_port()
        self.clock = clock
        self.config = app_config(workdir, config)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.app = create_app(self.config, clock=clock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> InProcessServer:
        hyper = Config()
        hyper.bind = [f"127.0.0.1:{self.port}"]
        hyper.graceful_timeout = 1
        hyper.accesslog = None
        self._task = asyncio.create_task(
            serve(asgi_app(self.app), hyper, shutdown_trigger=self._stop.wait)
        )
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(self.url + "/health") as r:
                        if r.status == 200:
                            return self
                if self._task.done():
                    self._task.result()
                await asyncio.sleep(0.05)
        raise RuntimeError("in-process server did not start")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, 15)


# Quart's test client (the fast layer, tests/fast) ----------------------------------------------


async def text_of(response: TestResponse) -> str:
    """A test client response's body as text."""
    return await response.get_data(as_text=True)


def set_cookie(response: TestResponse, name: str) -> str:
    """The whole Set-Cookie header that sets `name` (attributes and all)."""
    values = response.headers.getlist("Set-Cookie")
    found = [h for h in values if h.startswith(f"{name}=")]
    assert found, values
    return found[0]


def login_code(caplog: pytest.LogCaptureFixture) -> str:
    """The one-time code a server without Telegram writes to its log."""
    codes = re.findall(r"LOGIN CODE (\d{6})", caplog.text)
    assert codes, "no login code in the log"
    return codes[-1]
