"""Run the real product (`hypercorn app.asgi:app`) in a subprocess on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import asyncpg
import pytest

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN_DSN = os.environ.get("TEST_POSTGRES_DSN", "postgres://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ADMIN_PASSWORD = "correct horse battery"
# Hypercorn flags of the product's deployed command (the Dockerfile's CMD): the app serves in
# Hypercorn's own process (`--workers 0`), without a supervisor that starts a second interpreter
# only to spawn it (0.2 s of start-up and of CPU per test server).
SERVE_ARGS = ("--worker-class", "uvloop", "--workers", "0")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def create_pg_database() -> tuple[str, str]:
    """A fresh PostgreSQL database for one server; returns (url, name)."""
    name = f"sohbet_t_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    return f"{base}/{name}", name


async def drop_pg_database(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@dataclass
class Server:
    """One running server process and what a test needs to talk to it."""

    database_url: str
    workdir: Path
    env_extra: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    # What Hypercorn serves, and how (bench/ serves its floor app, and keeps the supervisor).
    app: str = "app.asgi:app"
    serve_args: tuple[str, ...] = SERVE_ARGS
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"server-{self.port}.log"

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SOHBET_", "TELEGRAM_"))}
        env.update(
            SOHBET_ENV_FILE=str(self.workdir / "no.env"),
            DATABASE_URL=self.database_url,
            SECRET_KEY="test-secret-key",
            ADMIN_PASSWORD=ADMIN_PASSWORD,
            TZ="Europe/Istanbul",
            PYTHONUNBUFFERED="1",
            # Uploads land in the test's own folder, never in the repository's data/.
            MEDIA_DIR=str(self.workdir / "media"),
            # WebRTC runs only inside a private network namespace (tests/test_calls.py).
            SELFTEST_SKIP="calls",
            # Every test client comes from 127.0.0.1 and many send fast: the budgets are
            # tested on their own (tests/security), with small values set there.
            CONVERSATIONS_PER_HOUR="100000",
            MESSAGES_PER_MINUTE="100000",
        )
        env.pop("REDIS_URL", None)
        env.update(self.env_extra)
        return env

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = self._spawn(log)
        try:
            await self._wait_healthy()
        except BaseException:
            # A server that did not come up (exited, stalled or cancelled) must not outlive
            # the test.
            self.stop(signal.SIGKILL)
            raise

    def _spawn(self, log: IO[bytes]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hypercorn",
                self.app,
                "--bind",
                f"127.0.0.1:{self.port}",
                # After --bind: in extra flags the last of a repeated option wins.
                *self.serve_args,
            ],
            cwd=ROOT,
            env=self.environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            # A session of its own lets stop() reach anything the server started too.
            start_new_session=True,
        )

    async def _wait_healthy(self) -> None:
        assert self.proc is not None
        # Waits for /health (or for the process to exit). The ceiling only matters when the
        # server hangs: on a machine busy with other test suites, importing the app alone has
        # taken 14-20 s (aiogram's pydantic models), and a start once took over 60 s.
        limit = 90
        deadline = time.monotonic() + limit
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited early:\n{self.log()}")
                try:
                    async with http.get(self.url + "/health") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"server did not start within {limit} s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM: Hypercorn's graceful shutdown; SIGKILL: the whole server dies at once, as
        in a crash. Either way no worker process outlives the call."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            if sig == signal.SIGKILL:
                self._kill_group()
            else:
                self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self._kill_group()
                self.proc.wait(5)
        self._kill_group()

    def _kill_group(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def last_login_code(self) -> str:
        codes = re.findall(r"LOGIN CODE (\d{6})", self.log())
        if not codes:
            raise AssertionError("no login code in the server log")
        return codes[-1]


@asynccontextmanager
async def sqlite_server(workdir: Path, env: dict[str, str] | None = None) -> AsyncIterator[Server]:
    """A server subprocess on a fresh SQLite file, stopped afterwards."""
    server = Server(
        database_url=f"sqlite://{workdir / 'sohbet.db'}", workdir=workdir, env_extra=env or {}
    )
    await server.start()
    try:
        yield server
    finally:
        # In a thread: clients and fakes on this loop keep answering while the server stops.
        await asyncio.to_thread(server.stop)


def sqlite_server_fixture(folder: str) -> Any:
    """A module's `server` fixture on SQLite only (`server = sqlite_server_fixture("name")`), for
    modules that do not run against both databases as tests/conftest.py's `server` does."""

    @pytest.fixture(scope="module", name="server")
    async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
        async with sqlite_server(tmp_path_factory.mktemp(folder)) as srv:
            yield srv

    return server


@asynccontextmanager
async def scratch_server(env: dict[str, str] | None = None) -> AsyncIterator[Server]:
    """`sqlite_server` in a temporary folder, removed afterwards (for bench/ and scripts/)."""
    with tempfile.TemporaryDirectory() as tmp:
        async with sqlite_server(Path(tmp), env) as server:
            yield server


@asynccontextmanager
async def redis_pair(
    workdir: Path, env: dict[str, str] | None = None
) -> AsyncIterator[tuple[Server, Server]]:
    """Two processes on one fresh PostgreSQL database and one Redis channel, as a deployment runs."""
    env_extra = {
        "REDIS_URL": REDIS_URL,
        "REDIS_CHANNEL": f"sohbet-test-{secrets.token_hex(4)}",
        **(env or {}),
    }
    async with postgres_pair(workdir, env_extra) as servers:
        yield servers


@asynccontextmanager
async def postgres_pair(
    workdir: Path, env: dict[str, str] | None = None
) -> AsyncIterator[tuple[Server, Server]]:
    """Two processes on one fresh PostgreSQL database (and Redis only if `env` names one)."""
    url, name = await create_pg_database()
    first = Server(database_url=url, workdir=workdir, env_extra=dict(env or {}))
    second = Server(database_url=url, workdir=workdir, env_extra=dict(env or {}))
    # Started together, as a deployment's processes are (each migrates or waits for the other).
    try:
        await asyncio.gather(first.start(), second.start())
        yield first, second
    finally:
        await asyncio.gather(asyncio.to_thread(first.stop), asyncio.to_thread(second.stop))
        await drop_pg_database(name)


async def query(server: Server, sql: str) -> list[tuple[Any, ...]]:
    """Read the server's database directly (to see what the API does not show)."""
    if server.database_url.startswith("sqlite://"):
        with sqlite3.connect(server.database_url[len("sqlite://") :]) as conn:
            return list(conn.execute(sql).fetchall())
    conn = await asyncpg.connect(server.database_url)
    try:
        return [tuple(row) for row in await conn.fetch(sql)]
    finally:
        await conn.close()


async def execute_sql(server: Server, sql: str) -> None:
    """Arrange database state for a test (e.g. age a row), on SQLite or PostgreSQL."""
    if server.database_url.startswith("sqlite://"):
        path = server.database_url[len("sqlite://") :]
        with sqlite3.connect(path) as conn:
            conn.execute(sql)
        return
    conn = await asyncpg.connect(server.database_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()
