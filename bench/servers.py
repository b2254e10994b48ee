"""Start and stop the servers under test, sample their CPU and memory, set up accounts.

Only 127.0.0.1 is ever targeted. Each server gets a fresh database in its own run directory
(bench/results/, git-ignored) and is stopped by pid when the benchmark ends.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from tests.support.clients import ADMIN_COOKIE, VISITOR_COOKIE, admin_login, start_visitor
from tests.support.server import ROOT, free_port
from tests.support.server import Server as TestServer

BENCH = ROOT / "bench"
SEED_PYTHON = BENCH / ".venv-seed" / "bin" / "python"
# Targets served by Hypercorn: the product, and the floor (its transport stack alone).
HYPERCORN_APPS = {"real": "app.asgi:app", "floor": "bench.floor_server:app"}


def raise_nofile() -> int:
    """Raise this process's open-file limit to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass
class Server:
    """A server process we started (and its children, e.g. Hypercorn's worker): the product or
    the floor as the tests run them (tests/support/server.py), or the seed baseline."""

    target: str
    proc: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    run_dir: Path
    served: TestServer | None = None  # the Hypercorn targets
    _log_file: Any = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """SIGTERM the server we started, then SIGKILL it and its children (by pid) if needed."""
        if self.served is not None:
            self.served.stop()
            return
        procs = self.tree()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=8)
            except subprocess.TimeoutExpired:
                pass
        for proc in procs:
            try:
                if proc.is_running():
                    proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=5)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def start_server(
    target: str,
    run_dir: Path,
    *,
    seed_args: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> Server:
    """Start the real server (Hypercorn) or the seed baseline on a free port; wait for /health."""
    run_dir.mkdir(parents=True, exist_ok=True)
    # The server inherits this process's open-file limit: as many sockets as the hard limit allows.
    raise_nofile()
    if target in HYPERCORN_APPS:
        served = TestServer(
            database_url=f"sqlite://{run_dir / 'bench.db'}",
            workdir=run_dir,
            env_extra={
                # Load clients all come from 127.0.0.1 and send far faster than a person.
                "CONVERSATIONS_PER_HOUR": "1000000",
                "MESSAGES_PER_MINUTE": "1000000",
                **(env or {}),
            },
            app=HYPERCORN_APPS[target],
            # The product's event loop (Makefile's `run`, the Dockerfile's CMD). Hypercorn's
            # supervisor is kept (the product runs `--workers 0`): it idles, and every figure
            # in bench/README.md was measured with it. Extra Hypercorn flags for experiments
            # (BENCH_SERVER_ARGS="-k asyncio": the last --worker-class wins).
            serve_args=(
                "--worker-class",
                "uvloop",
                *os.environ.get("BENCH_SERVER_ARGS", "").split(),
            ),
        )
        asyncio.run(served.start())
        assert served.proc is not None
        return Server(target, served.proc, served.url, served.log_path, run_dir, served)
    if target != "seed":
        raise ValueError(target)
    if not SEED_PYTHON.exists():
        subprocess.run(["bash", str(BENCH / "setup_seed.sh")], check=True)
    port = free_port()
    log_path = run_dir / f"{target}-server.log"
    log_file = log_path.open("wb")
    cmd = [
        str(SEED_PYTHON),
        str(BENCH / "seed_server.py"),
        "--port",
        str(port),
        "--db",
        str(run_dir / "seed.db"),
        *(seed_args or []),
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    server = Server(target, proc, f"http://127.0.0.1:{port}", log_path, run_dir, None, log_file)
    deadline = time.monotonic() + 90  # importing the app took 14-20 s on a busy machine
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            server.stop()
            raise RuntimeError(f"{target} server exited:\n{server.log_text()[-3000:]}")
        try:
            with urllib.request.urlopen(server.base_url + "/health", timeout=1) as resp:
                if resp.status == 200:
                    return server
        except OSError:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(
        f"{target} server did not answer /health in 90 s:\n{server.log_text()[-3000:]}"
    )


@dataclass
class Sample:
    t: float  # time.monotonic()
    cpu: float  # user+system seconds of the whole process tree
    rss: int  # bytes, whole process tree
    rss_main: int  # bytes, the process that serves (Hypercorn's worker; the seed's only process)
    gen_cpu: float  # user+system seconds of the load generator (this process and its workers)
    busy: float  # busy seconds of the whole machine, all CPUs (anything but idle and iowait)
    steal: float  # seconds the hypervisor gave to someone else


@dataclass
class Sampler:
    """Samples the server's process tree every `interval` seconds in a thread."""

    server: Server
    interval: float = 0.2
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _procs: list[psutil.Process] = field(default_factory=list)
    gen_pids: list[int] = field(default_factory=list)

    def _gen_cpu(self) -> float:
        total = 0.0
        for pid in [os.getpid(), *self.gen_pids]:
            try:
                times = psutil.Process(pid).cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def sample(self) -> Sample | None:
        if not self._procs or any(not p.is_running() for p in self._procs):
            self._procs = self.server.tree()
        cpu = 0.0
        rss = 0
        main = 0
        try:
            for proc in self._procs:
                with proc.oneshot():
                    times = proc.cpu_times()
                    mem = proc.memory_info().rss
                cpu += times.user + times.system
                rss += mem
                main = max(main, mem)
        except psutil.NoSuchProcess:
            self._procs = []
            return None
        machine = psutil.cpu_times()
        s = Sample(
            time.monotonic(),
            cpu,
            rss,
            main,
            self._gen_cpu(),
            busy_seconds(machine),
            getattr(machine, "steal", 0.0),
        )
        self.samples.append(s)
        return s

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> Sampler:
        self.sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def window(self, t0: float, t1: float) -> dict[str, float]:
        """CPU % (100 = one core) and peak RSS between two monotonic times."""
        inside = [s for s in self.samples if t0 <= s.t <= t1]
        before = [s for s in self.samples if s.t <= t0]
        after = [s for s in self.samples if s.t >= t1]
        first = before[-1] if before else (inside[0] if inside else None)
        last = after[0] if after else (inside[-1] if inside else None)
        out: dict[str, float] = {}
        if first is not None and last is not None and last.t > first.t:
            span = last.t - first.t
            server = (last.cpu - first.cpu) / span
            gen = (last.gen_cpu - first.gen_cpu) / span
            busy = (last.busy - first.busy) / span
            out["cpu_pct"] = round(100 * server, 1)
            out["gen_cpu_pct"] = round(100 * gen, 1)
            out["machine_busy_pct"] = round(100 * busy, 1)
            # Everything else on the machine (other users' processes): it competes for the cores.
            out["other_cpu_pct"] = round(100 * max(0.0, busy - server - gen), 1)
            out["steal_pct"] = round(100 * (last.steal - first.steal) / span, 1)
        pool = inside + ([first] if first else []) + ([last] if last else [])
        if pool:
            out["rss_peak_mib"] = round(max(s.rss for s in pool) / 2**20, 1)
            out["rss_main_peak_mib"] = round(max(s.rss_main for s in pool) / 2**20, 1)
        return out


# Accounts ------------------------------------------------------------------------------------


@dataclass
class Accounts:
    admin_cookie: str | None
    visitors: list[tuple[str, str]]  # (cookie header, chat id)


async def setup_accounts(server: Server, visitors: int, concurrency: int = 16) -> Accounts:
    """The admin session (one login) and `visitors` visitor conversations, over HTTP, as the
    tests sign in and start conversations (the real server only)."""
    assert server.served is not None, "accounts are made on the real server"
    admin = f"{ADMIN_COOKIE}={await admin_login(server.served)}"
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), timeout=timeout) as http:
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> tuple[str, str]:
            async with gate:
                token, cid = await start_visitor(server.base_url, f"Yuk{i} Bench", http=http)
                return f"{VISITOR_COOKIE}={token}", cid

        made = await asyncio.gather(*(one(i) for i in range(visitors)))
    return Accounts(admin, list(made))


def cpu_seconds(procs: list[psutil.Process]) -> float:
    """CPU seconds (user and system) the processes have used; one that has ended counts 0."""
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def busy_seconds(t: Any) -> float:
    """Busy seconds of the whole machine, all CPUs, in psutil's `cpu_times()` `t`."""
    # guest time is already counted in user time
    return float(
        sum(t)
        - t.idle
        - getattr(t, "iowait", 0.0)
        - getattr(t, "guest", 0.0)
        - getattr(t, "guest_nice", 0.0)
    )


def machine_load(seconds: float = 2.0) -> float:
    """Busy CPU % of the whole machine over a short window (100 = one core)."""
    first = psutil.cpu_times()
    time.sleep(seconds)
    last = psutil.cpu_times()
    return round(100 * (busy_seconds(last) - busy_seconds(first)) / seconds, 1)


def wait_quiet(limit_pct: float, max_wait: float) -> dict[str, Any]:
    """Wait (bounded) until other processes leave the cores alone; report what was seen."""
    started = time.monotonic()
    seen = []
    while True:
        load = machine_load()
        seen.append(load)
        waited = time.monotonic() - started
        if load <= limit_pct or waited >= max_wait:
            return {
                "machine_busy_pct_before": load,
                "quiet": load <= limit_pct,
                "waited_s": round(waited, 1),
            }


def git_state() -> dict[str, Any]:
    """The commit under test and whether the server's files differ from it (others edit them)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--", "app", "templates", "partials", "static")
    head = git("rev-parse", "--short", "HEAD")
    return {"head": head, "server_files_modified": dirty.splitlines()}


def python_version() -> str:
    return sys.version.split()[0]
