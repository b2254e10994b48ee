"""The reference cluster in a test: N server processes behind Debian's HAProxy, configured by
the same `scripts/cluster-haproxy.cfg` as `make cluster`, on one PostgreSQL and one Redis.

Which process a client lands on is the test's choice: HAProxy routes a request carrying the
cookie `SOHBET_PROCESS=p<n>` to process n while it is up (its own persistence cookie), and a
client whose process is down to a live one.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from scripts.cluster import haproxy_config, process_name
from tests.support.server import (
    REDIS_URL,
    Server,
    create_pg_database,
    drop_pg_database,
    free_port,
)

PROCESS_COOKIE = "SOHBET_PROCESS"


def on_process(cookie: str, n: int) -> str:
    """A Cookie header that also asks HAProxy for process n (1-based)."""
    return f"{cookie}; {PROCESS_COOKIE}={process_name(n)}"


@dataclass
class Cluster:
    servers: list[Server]
    workdir: Path
    port: int = field(default_factory=free_port)
    balancer: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        await asyncio.gather(*(server.start() for server in self.servers))
        config = self.workdir / "haproxy.cfg"
        ports = [server.port for server in self.servers]
        # Checks twice a second: a killed process is out of rotation within about a second.
        config.write_text(haproxy_config(f"127.0.0.1:{self.port}", ports, check_interval="500ms"))
        self.balancer = self._spawn_balancer(config)
        await self._wait_ready()

    def _spawn_balancer(self, config: Path) -> subprocess.Popen[bytes]:
        with (self.workdir / "haproxy.log").open("ab") as log:
            return subprocess.Popen(
                ["haproxy", "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
            )

    async def _wait_ready(self) -> None:
        assert self.balancer is not None
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.balancer.poll() is not None:
                    raise RuntimeError((self.workdir / "haproxy.log").read_text())
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(self.url + "/health/ready") as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise RuntimeError("HAProxy did not answer within 30 s")

    def kill(self, n: int) -> None:
        """SIGKILL process n (1-based), as in a crash."""
        self.servers[n - 1].stop(signal.SIGKILL)

    def stop(self) -> None:
        if self.balancer is not None and self.balancer.poll() is None:
            self.balancer.terminate()
            try:
                self.balancer.wait(10)
            except subprocess.TimeoutExpired:
                self.balancer.kill()
                self.balancer.wait()
        for server in self.servers:
            server.stop()


@asynccontextmanager
async def cluster(
    workdir: Path, processes: int, env: dict[str, str] | None = None
) -> AsyncIterator[Cluster]:
    """`processes` servers on a fresh PostgreSQL database and a private Redis prefix, behind
    HAProxy; stopped (and the database dropped) afterwards."""
    url, name = await create_pg_database()
    extra = {"REDIS_URL": REDIS_URL, "REDIS_CHANNEL": f"sohbet-test-{secrets.token_hex(4)}"}
    extra.update(env or {})
    servers = [Server(database_url=url, workdir=workdir, env_extra=extra) for _ in range(processes)]
    running = Cluster(servers, workdir)
    try:
        await running.start()
        yield running
    finally:
        await asyncio.to_thread(running.stop)
        await drop_pg_database(name)
