"""What one rate-budget check costs in each storage: memory, PostgreSQL (no Redis), Redis.

    .venv/bin/python -m bench.probe_db_budget [--hits 5000] [--keys 1000] [--limit 30]

In-process, against the local PostgreSQL (a fresh database) and Redis of the tests
(tests/support/server.py). For each storage, `--hits` allowed hits spread over `--keys` keys
(every hit counted, as a message within its budget is), sequentially: wall time and this
process's CPU per hit, and for PostgreSQL and Redis the CPU their server processes spent too
(psutil, the processes' own counters). Why the per-message budget is not a database round trip
without Redis: README "Production", Budgets without Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import time
from typing import Any

import psutil
from tortoise import Tortoise

from app.core.ratelimit import Budget, Limiter
from app.db import open_database
from tests.support.server import REDIS_URL, create_pg_database, drop_pg_database


def server_cpu(prefix: str) -> dict[int, float]:
    """CPU seconds of every running process whose name starts with `prefix`, by pid."""
    out: dict[int, float] = {}
    for proc in psutil.process_iter(["name"]):
        if (proc.info["name"] or "").startswith(prefix):
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            out[proc.pid] = times.user + times.system
    return out


async def probe(label: str, budget: Budget, server: str, hits: int, keys: int) -> dict[str, Any]:
    before = server_cpu(server) if server else {}
    cpu0, t0 = time.process_time(), time.perf_counter()
    refused = 0
    for n in range(hits):
        refused += await budget.hit(f"k{n % keys}") > 0
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    after = server_cpu(server) if server else {}
    other = sum(v - before.get(pid, 0.0) for pid, v in after.items())
    row = {
        "storage": label,
        "hits": hits,
        "refused": refused,
        "wall_us": round(1e6 * wall / hits, 1),
        "app_cpu_us": round(1e6 * cpu / hits, 1),
        "server_cpu_us": round(1e6 * other / hits, 1) if server else 0.0,
    }
    print(json.dumps(row), flush=True)
    return row


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    memory = Limiter()
    rows.append(await probe("memory", memory.budget("m", args.limit, 60), "", args.hits, args.keys))
    url, name = await create_pg_database()
    try:
        await open_database(url)
        database = Limiter(database_url=url)
        budget = database.budget("m", args.limit, 60)
        rows.append(await probe("postgresql", budget, "postgres", args.hits, args.keys))
        await Tortoise.close_connections()
    finally:
        await drop_pg_database(name)
    redis = Limiter(REDIS_URL, f"sohbet-bench-{secrets.token_hex(4)}")
    try:
        budget = redis.budget("m", args.limit, 60)
        rows.append(await probe("redis", budget, "redis-server", args.hits, args.keys))
    finally:
        await redis.close()
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hits", type=int, default=5000)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--limit", type=int, default=30, help="events per minute per key")
    parsed = parser.parse_args()
    if parsed.hits > parsed.keys * parsed.limit:
        parser.error("--hits must fit in --keys x --limit (every hit is allowed)")
    asyncio.run(main(parsed))
