"""Scale-out benchmark: messages per second and CPU per delivered message, 1-3 processes behind
HAProxy (with Redis) against one process without Redis, in one run.

    .venv/bin/python -m bench.cluster_load --pairs 100 --rate 300 --duration 15
    .venv/bin/python -m bench.cluster_load --profile 1,2   # + py-spy, process 1, at 1 and 2

Every configuration gets a fresh PostgreSQL database (tests/support/server.py) and the same load
as `bench.chat_load load` (its worker processes, open-loop schedule, latency at the operator's
socket). Behind HAProxy each pair's visitor is pinned (HAProxy's own `SOHBET_PROCESS` cookie) to
process k and its operator socket to process k+1, so with 2 or more processes every message
crosses processes through Redis. CPU per delivered message counts every Sohbet process, HAProxy
and Redis (psutil, from the step's start to the end of its drain; Redis's pid from `INFO server`).
The local Redis is shared with anything else on the machine, so its share is reported apart.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from bench.chat_load import RESULTS, Pool, aggregate, slim, split, stamp, step_line
from bench.servers import busy_seconds, cpu_seconds, git_state, machine_load, raise_nofile
from tests.support.clients import ADMIN_COOKIE, VISITOR_COOKIE, admin_login, start_visitor
from tests.support.cluster import Cluster, on_process
from tests.support.server import REDIS_URL, Server, create_pg_database, drop_pg_database

# (label, processes, behind HAProxy with Redis)
CONFIGS = [
    ("1 process, no Redis (baseline)", 1, False),
    ("1 process + Redis + HAProxy", 1, True),
    ("2 processes + Redis + HAProxy", 2, True),
    ("3 processes + Redis + HAProxy", 3, True),
]
LOAD_ENV = {"CONVERSATIONS_PER_HOUR": "1000000", "MESSAGES_PER_MINUTE": "1000000"}


def redis_process() -> psutil.Process | None:
    """The local Redis server, by the pid it reports (or by name)."""
    try:
        info = subprocess.run(
            ["redis-cli", "-u", REDIS_URL, "info", "server"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout
        for line in info.splitlines():
            if line.startswith("process_id:"):
                return psutil.Process(int(line.split(":")[1]))
    except (OSError, subprocess.TimeoutExpired, psutil.Error, ValueError):
        pass
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "redis-server":
            return proc
    return None


def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


async def accounts(server: Server, pairs: int) -> tuple[str, list[tuple[str, str]]]:
    """One operator session (code from process 1's log) and `pairs` visitor conversations."""
    admin = f"{ADMIN_COOKIE}={await admin_login(server)}"
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), timeout=timeout) as http:
        gate = asyncio.Semaphore(16)

        async def one(i: int) -> tuple[str, str]:
            async with gate:
                token, cid = await start_visitor(server.url, f"Kume{i} Bench", http=http)
                return f"{VISITOR_COOKIE}={token}", cid

        return admin, list(await asyncio.gather(*(one(i) for i in range(pairs))))


def py_spy(pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes] | None:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        print("py-spy not installed: no profile", flush=True)
        return None
    return subprocess.Popen(
        # --gil: only samples that hold the GIL. Without it, uvloop's wait in epoll shows up
        # as the last Python frame that ran, and idle time is counted as work.
        [
            exe,
            "record",
            "--gil",
            "-d",
            str(seconds),
            "-p",
            str(pid),
            "--format",
            "raw",
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )


# Substrings of a py-spy stack, and what a sample holding one is spent on (inclusive: a sample
# counts for every part its stack holds).
PARTS = {
    "Redis (client, pub/sub manager)": ("redis/", "redis_manager", "pubsub"),
    "presence": ("presence",),
    "rate limits": ("limits/", "ratelimit"),
    "JSON": ("json/", "json.", "JSON."),
    "database (tortoise, asyncpg)": ("tortoise/", "asyncpg/"),
    "templates (jinja2)": ("jinja2/",),
    "python-socketio / engine.io": ("socketio/", "engineio/"),
    "Hypercorn / wsproto": ("hypercorn/protocol", "wsproto/"),
    "app/": ("(app/",),
}


# A stack ending in one of these is a waiting thread (asyncio's loop, an executor thread).
IDLE_LEAVES = ("Runner.run (asyncio/runners.py", "_worker (concurrent/futures/thread.py")


def profile_summary(path: Path) -> dict[str, Any]:
    """Share of py-spy's busy samples (raw, collapsed stacks) whose stack holds each part."""
    total = 0
    counts = dict.fromkeys(PARTS, 0)
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit() or stack.rsplit(";", 1)[-1].startswith(IDLE_LEAVES):
            continue
        total += int(n)
        for part, keys in PARTS.items():
            if any(k in stack for k in keys):
                counts[part] += int(n)
    return {
        "samples": total,
        "share_pct": {k: round(100 * v / total, 1) for k, v in counts.items()} if total else {},
    }


def run_config(
    label: str, processes: int, clustered: bool, args: argparse.Namespace
) -> dict[str, Any]:
    """Start one configuration, connect the pairs, run one load step, stop it."""
    run_dir = RESULTS / f"{stamp()}-cluster-{processes}{'r' if clustered else ''}"
    run_dir.mkdir(parents=True, exist_ok=True)
    url, dbname = asyncio.run(create_pg_database())
    env = dict(LOAD_ENV)
    if clustered:
        env.update(REDIS_URL=REDIS_URL, REDIS_CHANNEL=f"sohbet-bench-{secrets.token_hex(4)}")
    servers = [Server(database_url=url, workdir=run_dir, env_extra=env) for _ in range(processes)]
    running = Cluster(servers, run_dir)
    pool: Pool | None = None
    out: dict[str, Any] = {"label": label, "processes": processes, "redis_haproxy": clustered}
    try:
        if clustered:
            asyncio.run(running.start())
            base_url = running.url
        else:
            asyncio.run(servers[0].start())
            base_url = servers[0].url
        admin, visitors = asyncio.run(accounts(servers[0], args.pairs))
        specs = []
        for i, (cookie, cid) in enumerate(visitors):
            v, a = cookie, admin
            if clustered:
                # Visitor on process k, its operator socket on k+1: every message crosses.
                v = on_process(cookie, i % processes + 1)
                a = on_process(admin, (i + 1) % processes + 1)
            specs.append({"visitor_cookie": v, "admin_cookie": a, "chat_id": cid})
        sohbet = [p for s in servers if s.proc for p in tree(s.proc.pid)]
        haproxy = tree(running.balancer.pid) if running.balancer else []
        redis = [r] if clustered and (r := redis_process()) else []
        pool = Pool(args.workers)
        replies = pool.request(
            [
                {
                    "op": "connect",
                    "base_url": base_url,
                    "pairs": part,
                    "compression": True,
                    "timeout": 20,
                    "deadline": 60,
                    "concurrency": 50,
                }
                for part in split(specs, args.workers)
            ],
            timeout=100,
        )
        ready = [r["pairs"] for r in replies]
        print(f"[{label}] {sum(ready)}/{args.pairs} pairs connected", flush=True)
        if sum(ready) == 0:
            raise RuntimeError("no pair could connect")
        time.sleep(1)  # connection work settles before the step
        # Idle cost (heartbeats, presence, pings) of the configuration, apart from messages.
        idle0, t_idle = cpu_seconds(sohbet + haproxy), time.monotonic()
        time.sleep(3)
        out["idle_cpu_pct"] = round(
            100 * (cpu_seconds(sohbet + haproxy) - idle0) / (time.monotonic() - t_idle), 1
        )
        rate = args.rate
        start_at = time.monotonic() + 1.0
        cmds = [
            {
                "op": "run",
                "step": 0,
                "rate": rate * ready[w] / sum(ready),
                "duration": args.duration,
                "start_at": start_at,
                "offset": w / rate,
                "drain": 10,
            }
            for w in range(args.workers)
        ]
        before = {
            "sohbet": cpu_seconds(sohbet),
            "haproxy": cpu_seconds(haproxy),
            "redis": cpu_seconds(redis),
            "machine": busy_seconds(psutil.cpu_times()),
            "t": time.monotonic(),
        }
        per_process_before = [cpu_seconds(tree(s.proc.pid)) for s in servers if s.proc]
        spy = None
        if processes in args.profile and servers[0].proc:
            profile = run_dir / "process1.pyspy.txt"
            spy = py_spy(servers[0].proc.pid, int(min(10, args.duration)), profile)
            out["profile"] = str(profile)
        replies = pool.request(cmds, timeout=args.duration + 70)
        after = {
            "sohbet": cpu_seconds(sohbet),
            "haproxy": cpu_seconds(haproxy),
            "redis": cpu_seconds(redis),
            "machine": busy_seconds(psutil.cpu_times()),
            "t": time.monotonic(),
        }
        per_process = [
            round(cpu_seconds(tree(s.proc.pid)) - b, 2)
            for s, b in zip(servers, per_process_before, strict=True)
            if s.proc
        ]
        if spy is not None:
            spy.wait(60)
            out["profile_summary"] = profile_summary(Path(out["profile"]))
            print(f"[{label}] py-spy, process 1: {out['profile_summary']}", flush=True)
        step = aggregate(rate, args.duration, replies, {}, sum(ready), args.pairs)
        print(step_line(label, step), flush=True)
        used = {k: after[k] - before[k] for k in ("sohbet", "haproxy", "redis")}
        total = sum(used.values())
        span = after["t"] - before["t"]
        delivered = step["received"]
        gen_pids = [p.pid for p in pool.procs if p.pid is not None]
        out.update(
            step=slim(step),
            delivered=delivered,
            delivered_per_s=round(delivered / args.duration, 1),
            cpu_s=round(total, 2),
            cpu_s_by_part={k: round(v, 2) for k, v in used.items()},
            cpu_s_per_process=per_process,
            cpu_ms_per_delivered=round(1000 * total / delivered, 3) if delivered else None,
            sohbet_ms_per_delivered=round(1000 * used["sohbet"] / delivered, 3)
            if delivered
            else None,
            window_s=round(span, 1),
            machine_busy_pct=round(100 * (after["machine"] - before["machine"]) / span, 1),
            generator_pids=gen_pids,
        )
    finally:
        if pool is not None:
            pool.close()
        running.stop()
        asyncio.run(drop_pg_database(dbname))
    return out


def table(results: list[dict[str, Any]]) -> str:
    base = results[0].get("cpu_ms_per_delivered")
    lines = [
        "| configuration | delivered msg/s | lost | dup | p50 / p99 ms | CPU ms per delivered msg "
        "(Sohbet + HAProxy + Redis) | of which Sohbet / HAProxy / Redis (s) | per process (s) "
        "| vs baseline | idle CPU % | machine busy % |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        st = r.get("step", {})
        ms = r.get("cpu_ms_per_delivered")
        parts = r.get("cpu_s_by_part", {})
        ratio = f"{ms / base:.2f}×" if ms and base else "–"
        lines.append(
            f"| {r['label']} | {r.get('delivered_per_s', '–')} | {st.get('lost', '–')} "
            f"| {st.get('dup', '–')} | {st.get('p50_ms', '–')} / {st.get('p99_ms', '–')} "
            f"| {ms if ms is not None else '–'} "
            f"| {parts.get('sohbet', '–')} / {parts.get('haproxy', '–')} "
            f"/ {parts.get('redis', '–')} "
            f"| {' '.join(str(x) for x in r.get('cpu_s_per_process', []))} | {ratio} "
            f"| {r.get('idle_cpu_pct', '–')} | {r.get('machine_busy_pct', '–')} |"
        )
    return "\n".join(lines)


def main() -> None:
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--rate", type=float, default=300, help="msg/s, every configuration")
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")
    parser.add_argument(
        "--profile",
        type=lambda v: {int(n) for n in v.split(",")},
        default=set(),
        help="py-spy (raw) on process 1 of every configuration with these many processes (1,2)",
    )
    args = parser.parse_args()
    raise_nofile()
    report: dict[str, Any] = {
        "started": stamp(),
        "command": " ".join(["python", "-m", "bench.cluster_load", *sys.argv[1:]]),
        "git": git_state(),
        "machine_busy_pct_before": machine_load(),
        "configs": [],
    }
    for label, processes, clustered in CONFIGS:
        try:
            report["configs"].append(run_config(label, processes, clustered, args))
        except Exception as exc:  # reported in the table; the other configurations still run
            print(f"[{label}] failed: {type(exc).__name__}: {exc}", flush=True)
            report["configs"].append(
                {"label": label, "processes": processes, "error": f"{type(exc).__name__}: {exc}"}
            )
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{report['started']}-cluster.json"
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    (RESULTS / "latest-cluster.json").write_text(path.read_text())
    print(f"JSON: {path}")
    print(table(report["configs"]))


if __name__ == "__main__":
    main()
