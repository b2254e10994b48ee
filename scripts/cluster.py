"""The reference cluster: N Sohbet processes behind HAProxy, on one PostgreSQL and one Redis.

    .venv/bin/python scripts/cluster.py [-n 3] [--port 8000]      (or: make cluster N=3)

Each process is what one container of the Dockerfile runs (`hypercorn app.asgi:app
--worker-class uvloop --workers 0`), on a free port of 127.0.0.1; HAProxy (Debian's
`haproxy`, run here as a child, never as a system service) listens on --port, balances new
clients round-robin, passes WebSocket upgrades through, and sends no one to a process whose
`/health/ready` fails. Settings come from the environment (or .env) as for one process;
DATABASE_URL defaults to a database `sohbet_cluster` on the local PostgreSQL (created when
missing) and REDIS_URL to the local Redis. Ctrl-C stops everything (each process cleanly).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from string import Template

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = Path(__file__).with_name("cluster-haproxy.cfg")
DEFAULT_DATABASE = "postgres://postgres@127.0.0.1:5432/sohbet_cluster"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
SERVE = ("--worker-class", "uvloop", "--workers", "0")

log = logging.getLogger("cluster")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_name(n: int) -> str:
    """The name HAProxy knows process n by (1-based), also the value of its cookie."""
    return f"p{n}"


def haproxy_config(bind: str, ports: list[int], check_interval: str = "1s") -> str:
    """The load balancer's configuration for processes on these 127.0.0.1 ports."""
    servers = "\n".join(
        f"    server {process_name(n)} 127.0.0.1:{port} cookie {process_name(n)}"
        for n, port in enumerate(ports, start=1)
    )
    return Template(TEMPLATE.read_text()).substitute(
        bind=bind, servers=servers, check_interval=check_interval
    )


def serve_command(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "hypercorn",
        "app.asgi:app",
        "--bind",
        f"127.0.0.1:{port}",
        *SERVE,
    ]


def wait_ready(url: str, proc: subprocess.Popen[bytes], limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url} exited during start-up (see its log)")
        try:
            # Only http:// URLs this script made.
            with urllib.request.urlopen(url + "/health/ready", timeout=2) as resp:  # noqa: S310
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} was not ready within {limit:.0f} s")


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database of `url` when it does not exist yet."""
    if not url.startswith(("postgres://", "postgresql://")):
        return
    import asyncpg

    base, name = url.rsplit("/", 1)

    async def create() -> None:
        try:
            conn = await asyncpg.connect(url)
        except asyncpg.InvalidCatalogNameError:
            admin = await asyncpg.connect(base + "/postgres")
            try:
                await admin.execute(f'CREATE DATABASE "{name}"')
            finally:
                await admin.close()
        else:
            await conn.close()

    asyncio.run(create())


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM (each process's graceful stop: it releases the Telegram lease and its presence
    at once), then SIGKILL what is still there after 15 s."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--processes", type=int, default=3)
    parser.add_argument("--port", type=int, default=8000, help="the load balancer's port")
    parser.add_argument("--host", default="127.0.0.1", help="the load balancer's address")
    parser.add_argument("--workdir", type=Path, default=ROOT / "data" / "cluster")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    env = dict(os.environ)
    env.setdefault("DATABASE_URL", DEFAULT_DATABASE)
    env.setdefault("REDIS_URL", DEFAULT_REDIS)
    # X-Forwarded-For from HAProxy names the visitor (rate budgets, logs).
    env.setdefault("TRUSTED_PROXIES", "127.0.0.1")
    env["PYTHONUNBUFFERED"] = "1"
    ensure_database(env["DATABASE_URL"])
    args.workdir.mkdir(parents=True, exist_ok=True)

    ports = [free_port() for _ in range(args.processes)]
    procs: list[subprocess.Popen[bytes]] = []
    # From the start, not once all is up: a SIGTERM while the processes start stops those
    # already started (the `finally` below) instead of killing this script and leaving them.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        for n, port in enumerate(ports, start=1):
            with (args.workdir / f"{process_name(n)}.log").open("ab") as out:
                command = serve_command(port)
                procs.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out))  # noqa: S603
        for port, proc in zip(ports, procs, strict=True):
            wait_ready(f"http://127.0.0.1:{port}", proc)
        config = args.workdir / "haproxy.cfg"
        config.write_text(haproxy_config(f"{args.host}:{args.port}", ports))
        # Debian's haproxy from PATH, in the foreground (-db) as our child.
        balancer = subprocess.Popen(  # noqa: S603
            ["haproxy", "-db", "-f", str(config)],  # noqa: S607
            cwd=args.workdir,
        )
        procs.insert(0, balancer)
        wait_ready(f"http://{args.host}:{args.port}", balancer)
        for n, port in enumerate(ports, start=1):
            log.info("%s: http://127.0.0.1:%s (log in %s)", process_name(n), port, args.workdir)
        url = f"http://{args.host}:{args.port}"
        log.info("Sohbet on %s (%s processes); Ctrl-C stops", url, args.processes)
        while all(proc.poll() is None for proc in procs):
            time.sleep(0.5)
        log.error("a process exited; stopping the cluster")
    except KeyboardInterrupt:
        pass
    finally:
        stop(procs)


if __name__ == "__main__":
    main()
