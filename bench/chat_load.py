"""Chat load benchmark: the real server (Hypercorn + python-socketio) vs the seed-design baseline.

    .venv/bin/python -m bench.chat_load suite              # everything in bench/README.md (~7 min)
    .venv/bin/python -m bench.chat_load load --target real --pairs 1000 --rates 200 --duration 20
    .venv/bin/python -m bench.chat_load load --target seed --pairs 200 --rates 250,500,1000
    .venv/bin/python -m bench.chat_load idle --target real --counts 2000,10000

Each command starts its own server on a free 127.0.0.1 port with a fresh database under
bench/results/, drives it from several worker processes (one asyncio loop each, a thin Socket.IO
client per socket: bench/sio_client.py), prints one line per step plus a JSON summary, writes the
JSON to bench/results/, and stops the server. Nothing runs unbounded.

Load scenario: N pairs, each a visitor socket and an admin socket joined to the visitor's
conversation. Visitors send at a fixed aggregate rate (open loop, evenly spread, acks not awaited);
the admin socket of the pair measures when `chat:message` arrives. Latency = arrival at the
admin socket minus the moment the visitor's `send` was written to its socket.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import sys
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent

RESULTS = BENCH / "results"
TEXT = "Merhaba, siparişim hâlâ gelmedi; yardımcı olur musunuz? #"

# Ramp steps (msg/s) shared by both targets, so the two ramps are the same ramp.
# 250 msg/s apart from 1,000 to 2,000, where the real server's maximum lies (500 apart, a step
# that just failed at 1,500 reported 1,000).
RAMP = [100, 200, 300, 400, 500, 600, 800, 1000, 1250, 1500, 1750, 2000, 2500, 3000, 3500, 4000]
# The floor starts where the chat's own ramp gets interesting.
FLOOR_RAMP = [1000, 1500, 2000, 2500, 3000, 3500, 4000]


def pct(values: list[float], p: float) -> float | None:
    """The p-th percentile (nearest rank) of a list, or None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return round(ordered[rank - 1], 2)


# Worker process -------------------------------------------------------------------------------


async def joined(client: Any, chat_id: str, wait: float) -> None:
    """What a visitor's page does on arrival: `join` its conversation, then send one message."""
    ack = await client.call("join", {"chat_id": chat_id, "last_seq": 0}, wait)
    if not (isinstance(ack, dict) and ack.get("ok")):
        raise RuntimeError(f"join refused: {ack!r:.80}")
    message = {"chat_id": chat_id, "type": "text", "text": "Merhaba", "client_id": "idle-join-1"}
    ack = await client.call("send", message, wait)
    if not (isinstance(ack, dict) and ack.get("ok")):
        raise RuntimeError(f"send refused: {ack!r:.80}")


class Worker:
    """One load-generator process: its share of the sockets, on its own asyncio loop."""

    def __init__(self, conn: Any, index: int) -> None:
        self.conn = conn
        self.index = index
        self.pairs: list[tuple[Any, Any, str]] = []  # (visitor client, admin client, chat id)
        self.idle: list[Any] = []
        self.reset()

    def reset(self) -> None:
        self.sent: dict[str, float] = {}
        self.acked: set[str] = set()
        self.ack_failed = 0
        self.ack_errors: Counter[str] = Counter()
        self.ack_lat: list[float] = []
        self.received: set[str] = set()
        self.lat: list[float] = []
        self.lat_t0: list[float] = []  # when each measured message was sent
        self.dup = 0
        self.unexpected = 0
        self.echo = 0

    # Events ------------------------------------------------------------------------------------

    def on_admin_event(self, client: Any, raw: str) -> None:
        if not raw.startswith('["chat:message"'):
            return
        now = time.monotonic()
        message = json.loads(raw)[1]
        cid = message.get("client_id")
        t0 = self.sent.get(cid)
        if t0 is None:
            self.unexpected += 1  # a late message of an earlier step
        elif cid in self.received:
            self.dup += 1
        else:
            self.received.add(cid)
            self.lat.append((now - t0) * 1000)
            self.lat_t0.append(t0)

    def on_visitor_event(self, client: Any, raw: str) -> None:
        # The visitor's own message comes back to its room too; counting it needs no parsing.
        if raw.startswith('["chat:message"'):
            self.echo += 1

    def on_ack(self, cid: str, payload: Any) -> None:
        if isinstance(payload, dict) and payload.get("ok"):
            self.acked.add(cid)
            self.ack_lat.append((time.monotonic() - self.sent[cid]) * 1000)
        else:
            self.ack_failed += 1
            code = payload.get("error", "?") if isinstance(payload, dict) else "socket closed"
            self.ack_errors[str(code)] += 1

    # Operations --------------------------------------------------------------------------------

    async def op_connect(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Connect and join a visitor and an admin socket for every pair."""
        from bench.sio_client import SioClient, ws_url

        url = ws_url(cmd["base_url"])
        gate = asyncio.Semaphore(cmd.get("concurrency", 50))
        errors: Counter[str] = Counter()
        timings: list[float] = []

        async def one(spec: dict[str, Any]) -> None:
            async with gate:
                t0 = time.monotonic()
                visitor = SioClient(
                    url,
                    cookie=spec["visitor_cookie"],
                    auth={"as": "visitor"},
                    on_event=self.on_visitor_event,
                    compression=cmd["compression"],
                )
                admin = SioClient(
                    url,
                    cookie=spec["admin_cookie"],
                    auth={"as": "admin", "watch_list": False},
                    on_event=self.on_admin_event,
                    compression=cmd["compression"],
                )
                try:
                    await visitor.connect(cmd["timeout"])
                    await admin.connect(cmd["timeout"])
                    for client in (admin, visitor):
                        ack = await client.call(
                            "join", {"chat_id": spec["chat_id"], "last_seq": 0}, cmd["timeout"]
                        )
                        if not (isinstance(ack, dict) and ack.get("ok")):
                            raise RuntimeError(f"join refused: {ack!r:.100}")
                except Exception as exc:  # counted, reported; the pair is left out
                    errors[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
                    for client in (visitor, admin):
                        self.idle.append(client)  # closed at the end, with the rest
                    return
                timings.append((time.monotonic() - t0) * 1000)
                self.pairs.append((visitor, admin, spec["chat_id"]))

        tasks = [asyncio.create_task(one(spec)) for spec in cmd["pairs"]]
        _done, pending = await asyncio.wait(tasks, timeout=cmd["deadline"])
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
            errors[f"not connected within the {cmd['deadline']} s connect deadline"] += len(pending)
        return {
            "requested": len(cmd["pairs"]),
            "pairs": len(self.pairs),
            "errors": dict(errors),
            "pair_connect_ms_p50": pct(timings, 50),
            "pair_connect_ms_p99": pct(timings, 99),
        }

    async def op_idle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Open `count` more sockets that stay idle: only connected to the namespace, or (with
        `visitors`) each joined to its own conversation after sending one message in it."""
        from bench.sio_client import SioClient, ws_url

        url = ws_url(cmd["base_url"])
        gate = asyncio.Semaphore(cmd.get("concurrency", 50))
        errors: Counter[str] = Counter()
        cookies = cmd["cookies"]
        opened: list[Any] = []

        # Joined visitors: one (cookie, chat id) each, joined and with one message sent.
        visitors = cmd.get("visitors") or []

        async def one(i: int) -> None:
            async with gate:
                cookie, chat_id = visitors[i] if visitors else (None, "")
                if not visitors and cookies:
                    cookie = cookies[i % len(cookies)]
                client = SioClient(
                    url,
                    cookie=cookie,
                    auth={"as": cmd["role"]}
                    | ({"watch_list": False} if cmd["role"] == "admin" else {}),
                    compression=cmd["compression"],
                )
                try:
                    await client.connect(cmd["timeout"])
                    if chat_id:
                        await joined(client, chat_id, cmd["timeout"])
                except Exception as exc:
                    errors[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
                opened.append(client)

        tasks = [asyncio.create_task(one(i)) for i in range(cmd["count"])]
        _done, pending = await asyncio.wait(tasks, timeout=cmd["deadline"])
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
            errors[f"not connected within the {cmd['deadline']} s connect deadline"] += len(pending)
        self.idle.extend(opened)
        return {"requested": cmd["count"], "errors": dict(errors), **self.status()}

    def status(self) -> dict[str, int]:
        def live(clients: list[Any]) -> int:
            return sum(1 for c in clients if c.ws is not None and not c.closed)

        clients = self.idle + [c for p in self.pairs for c in p[:2]]
        return {
            "idle_open": live(self.idle),
            "visitors_open": live([p[0] for p in self.pairs]),
            "admins_open": live([p[1] for p in self.pairs]),
            "deflate_negotiated": sum(1 for c in clients if c.deflate and not c.closed),
        }

    async def op_status(self, cmd: dict[str, Any]) -> dict[str, Any]:
        return self.status()

    async def op_run(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Send `rate` msg/s for `duration` s on an open-loop schedule, then drain."""
        self.reset()
        rate: float = cmd["rate"]
        pairs = self.pairs
        total = round(rate * cmd["duration"]) if pairs and rate > 0 else 0
        interval = 1.0 / rate if rate > 0 else 0.0
        prefix = f"w{self.index}s{cmd['step']}m"
        base = cmd["start_at"] + cmd["offset"]
        lags: list[float] = []
        cpu0 = time.process_time()
        n = len(pairs)
        i = 0
        await asyncio.sleep(max(0.0, base - time.monotonic()))
        while i < total:
            now = time.monotonic()
            due = base + i * interval
            if due > now:
                await asyncio.sleep(due - now)
                continue
            # Open loop: everything that is due goes out now, behind schedule or not.
            while i < total and base + i * interval <= now:
                visitor, _admin, chat_id = pairs[i % n]
                cid = f"{prefix}{i:07d}"
                t0 = time.monotonic()
                lags.append((t0 - (base + i * interval)) * 1000)
                self.sent[cid] = t0
                await visitor.emit(
                    "send",
                    {"chat_id": chat_id, "type": "text", "text": f"{TEXT}{i}", "client_id": cid},
                    lambda payload, cid=cid: self.on_ack(cid, payload),
                )
                i += 1
        send_end = time.monotonic()
        deadline = send_end + cmd["drain"]
        while time.monotonic() < deadline:
            answered = len(self.acked) + self.ack_failed
            if answered >= len(self.sent) and self.acked <= self.received:
                break
            await asyncio.sleep(0.02)
        cpu = time.process_time() - cpu0
        lost = len(self.acked - self.received)
        # The worst latency of the messages sent in each second: a stall shows as a few bad
        # seconds, an overload as latency that grows second after second.
        by_second = [0.0] * (int(cmd["duration"]) + 1)
        for t0, ms in zip(self.lat_t0, self.lat, strict=True):
            k = min(len(by_second) - 1, max(0, int(t0 - base)))
            by_second[k] = max(by_second[k], ms)
        return {
            "sent": len(self.sent),
            "send_seconds": round(send_end - base, 3),
            "acked": len(self.acked),
            "ack_failed": self.ack_failed,
            "ack_errors": dict(self.ack_errors),
            "ack_pending": len(self.sent) - len(self.acked) - self.ack_failed,
            "received": len(self.received),
            "received_unacked": len(self.received - self.acked),
            "dup": self.dup,
            "late_from_earlier_step": self.unexpected,
            "echo": self.echo,
            "lost": lost,
            "lat": self.lat,
            "ack_lat": self.ack_lat,
            "max_ms_by_second": [round(x, 1) for x in by_second],
            "lag_p99_ms": pct(lags, 99),
            "lag_max_ms": round(max(lags), 2) if lags else None,
            "cpu_seconds": round(cpu, 3),
            "wall_seconds": round(time.monotonic() - base, 3),
        }

    async def op_close(self, cmd: dict[str, Any]) -> dict[str, Any]:
        clients = [c for p in self.pairs for c in p[:2]] + self.idle
        for start in range(0, len(clients), 500):
            batch = clients[start : start + 500]
            await asyncio.wait(
                [asyncio.create_task(c.close()) for c in batch], timeout=10
            ) if batch else None
        return {"closed": len(clients)}

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            cmd = await loop.run_in_executor(None, self.conn.recv)
            op = cmd["op"]
            try:
                reply = await getattr(self, f"op_{op}")(cmd)
            except Exception as exc:
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            self.conn.send(reply)
            if op == "close":
                return


def worker_main(conn: Any, index: int) -> None:
    from bench.servers import raise_nofile

    raise_nofile()
    asyncio.run(Worker(conn, index).serve())


class Pool:
    """The load-generator processes, driven by request/reply over pipes."""

    def __init__(self, size: int) -> None:
        ctx = mp.get_context("spawn")
        self.conns = []
        self.procs = []
        for i in range(size):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(child, i), daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)

    def __len__(self) -> int:
        return len(self.procs)

    def request(self, cmds: list[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
        for conn, cmd in zip(self.conns, cmds, strict=True):
            conn.send(cmd)
        deadline = time.monotonic() + timeout
        replies = []
        for i, conn in enumerate(self.conns):
            if not conn.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"load worker {i} did not answer {cmds[i]['op']} in {timeout} s")
            reply = conn.recv()
            if "error" in reply:
                raise RuntimeError(f"load worker {i}: {reply['error']}")
            replies.append(reply)
        return replies

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.send({"op": "close"})
            except OSError:
                pass
        deadline = time.monotonic() + 20
        for conn in self.conns:
            try:
                conn.poll(max(0.0, deadline - time.monotonic())) and conn.recv()
            except (OSError, EOFError):
                pass
        for proc in self.procs:
            proc.join(timeout=max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)


def split(items: list[Any], parts: int) -> list[list[Any]]:
    return [items[i::parts] for i in range(parts)]


# Scenarios ------------------------------------------------------------------------------------


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def log_errors(text: str) -> int:
    return sum(1 for line in text.splitlines() if "Traceback" in line or " ERROR " in line)


def run_load(
    target: str,
    pairs: int,
    rates: Sequence[float],
    duration: float,
    *,
    workers: int = 4,
    compression: bool = True,
    drain: float = 10.0,
    stop_on_fail: bool = True,
    connect_deadline: float = 60.0,
    seed_args: list[str] | None = None,
    label: str = "",
    quiet: tuple[float, float] = (0.0, 0.0),
    retries: int = 2,
    p99_target: float | None = None,
    server_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Connect `pairs` visitor/admin pairs, then run each rate for `duration` seconds."""
    from bench.servers import Sampler, git_state, setup_accounts, start_server, wait_quiet

    before = wait_quiet(*quiet) if quiet[1] > 0 else None
    code = git_state()  # others commit to app/ while benchmarks run: name what this run served
    run_dir = RESULTS / f"{stamp()}-{target}-load-{pairs}"
    started = time.monotonic()
    server = start_server(target, run_dir, seed_args=seed_args, env=server_env)
    sampler = Sampler(server).start()
    pool: Pool | None = None
    out: dict[str, Any] = {
        "scenario": "load",
        "label": label,
        "target": target,
        "pairs_requested": pairs,
        "duration_s": duration,
        "compression": compression,
        "workers": workers,
        "seed_args": seed_args or [],
        "server_env": server_env or {},
        "machine_before": before,
        "git": code,
        "steps": [],
        "discarded_attempts": [],
    }
    try:
        if target == "real":
            t0 = time.monotonic()
            accounts = asyncio.run(setup_accounts(server, pairs))
            out["account_setup_s"] = round(time.monotonic() - t0, 1)
            specs = [
                {"visitor_cookie": cookie, "admin_cookie": accounts.admin_cookie, "chat_id": cid}
                for cookie, cid in accounts.visitors
            ]
        else:
            specs = [
                {"visitor_cookie": None, "admin_cookie": None, "chat_id": f"seed-{i:05d}"}
                for i in range(pairs)
            ]
        pool = Pool(workers)
        sampler.gen_pids = [proc.pid for proc in pool.procs if proc.pid is not None]
        t0 = time.monotonic()
        replies = pool.request(
            [
                {
                    "op": "connect",
                    "base_url": server.base_url,
                    "pairs": part,
                    "compression": compression,
                    "timeout": 20,
                    "deadline": connect_deadline,
                    "concurrency": 50,
                }
                for part in split(specs, workers)
            ],
            timeout=connect_deadline + 40,
        )
        ready = [r["pairs"] for r in replies]
        errors: Counter[str] = Counter()
        for r in replies:
            errors.update(r["errors"])
        rss_connected = sampler.sample()
        out.update(
            pairs_connected=sum(ready),
            sockets_connected=2 * sum(ready),
            connect_s=round(time.monotonic() - t0, 1),
            connect_errors=dict(errors),
            server_rss_connected_mib=round(rss_connected.rss / 2**20, 1) if rss_connected else None,
        )
        print(
            f"[{target}] {sum(ready)}/{pairs} pairs connected and joined "
            f"({2 * sum(ready)} sockets) in {out['connect_s']} s"
            + (f"; errors: {dict(errors)}" if errors else ""),
            flush=True,
        )
        if sum(ready) == 0:
            raise RuntimeError("no pair could connect")
        limit, quiet_wait = quiet
        attempt_no = 0
        for rate in rates:
            for attempt in range(retries + 1):
                start_at = time.monotonic() + 1.0
                cmds = [
                    {
                        "op": "run",
                        "step": attempt_no,
                        "rate": rate * ready[w] / sum(ready),
                        "duration": duration,
                        "start_at": start_at,
                        "offset": w / rate,
                        "drain": drain,
                    }
                    for w in range(workers)
                ]
                attempt_no += 1
                cpu_before = sampler.sample()
                replies = pool.request(cmds, timeout=duration + drain + 60)
                cpu_after = sampler.sample()
                server_window = sampler.window(start_at, start_at + duration)
                result = aggregate(rate, duration, replies, server_window, sum(ready), pairs)
                # Server CPU per acked message over the whole step, queue drain included: less
                # sensitive than the window figure to a server that fell behind (busy machine).
                if cpu_before and cpu_after and result["acked"]:
                    result["server_cpu_ms_per_acked_msg"] = round(
                        1000 * (cpu_after.cpu - cpu_before.cpu) / result["acked"], 3
                    )
                other = result["other_cpu_pct"] or 0.0
                result["attempt"] = attempt + 1
                result["contaminated"] = bool(quiet_wait > 0 and other > limit)
                print(step_line(target, result), flush=True)
                if p99_target is not None:
                    result["p99_target_ms"] = p99_target
                    result["p99_target_met"] = bool(
                        result["sustained"] and (result["p99_ms"] or 0) <= p99_target
                    )
                good = result["sustained"] and result.get("p99_target_met", True)
                if good or not result["contaminated"] or attempt == retries:
                    break
                # It failed while other processes took the cores: measure it again when quiet.
                out["discarded_attempts"].append(result)
                print(
                    f"[{target}] other processes used {other}% CPU during the step "
                    f"(limit {limit}%): waiting for a quiet machine and repeating it",
                    flush=True,
                )
                wait_quiet(limit, quiet_wait)
            out["steps"].append(result)
            # The ramp ends after two failed steps in a row of which one ran on a quiet machine,
            # or after three failed steps in a row whatever the machine did.
            tail = out["steps"][-3:]
            run_of_failures = 0
            for st in reversed(tail):
                if st["sustained"]:
                    break
                run_of_failures += 1
            recent = out["steps"][-2:]
            clean_failure = any(not st["contaminated"] for st in recent if not st["sustained"])
            if stop_on_fail and ((run_of_failures >= 2 and clean_failure) or run_of_failures >= 3):
                break
            time.sleep(1.0)
        out["status_after"] = pool.request([{"op": "status"}] * workers, timeout=30)
    finally:
        if pool is not None:
            pool.close()
        sampler.stop()
        server.stop()
        out["server_log_errors"] = log_errors(server.log_text())
        out["wall_s"] = round(time.monotonic() - started, 1)
    sustained = [s["rate"] for s in out["steps"] if s["sustained"]]
    out["max_sustained_rate"] = max(sustained) if sustained else 0
    return out


def aggregate(
    rate: float,
    duration: float,
    replies: list[dict[str, Any]],
    server_window: dict[str, float],
    pairs_ready: int,
    pairs_requested: int,
) -> dict[str, Any]:
    lat = [x for r in replies for x in r["lat"]]
    ack_lat = [x for r in replies for x in r["ack_lat"]]
    total = {
        key: sum(r[key] for r in replies)
        for key in (
            "sent",
            "acked",
            "ack_failed",
            "ack_pending",
            "received",
            "received_unacked",
            "dup",
            "late_from_earlier_step",
            "echo",
            "lost",
        )
    }
    ack_errors: Counter[str] = Counter()
    for r in replies:
        ack_errors.update(r["ack_errors"])
    send_seconds = max(r["send_seconds"] for r in replies)
    by_second = [max(col) for col in zip(*(r["max_ms_by_second"] for r in replies), strict=True)]
    gen_cpu = sum(r["cpu_seconds"] for r in replies)
    wall = max(r["wall_seconds"] for r in replies)
    result: dict[str, Any] = {
        "rate": rate,
        "pairs": pairs_ready,
        **total,
        "ack_errors": dict(ack_errors),
        "achieved_rate": round(total["sent"] / send_seconds, 1) if send_seconds else 0,
        "p50_ms": pct(lat, 50),
        "p95_ms": pct(lat, 95),
        "p99_ms": pct(lat, 99),
        "max_ms": round(max(lat), 2) if lat else None,
        "max_ms_by_second": by_second,
        "ack_p50_ms": pct(ack_lat, 50),
        "ack_p99_ms": pct(ack_lat, 99),
        "gen_lag_p99_ms": max((r["lag_p99_ms"] or 0) for r in replies),
        "gen_lag_max_ms": max((r["lag_max_ms"] or 0) for r in replies),
        "gen_cpu_pct": server_window.get(
            "gen_cpu_pct", round(100 * gen_cpu / wall, 1) if wall else None
        ),
        "server_cpu_pct": server_window.get("cpu_pct"),
        "other_cpu_pct": server_window.get("other_cpu_pct"),
        "machine_busy_pct": server_window.get("machine_busy_pct"),
        "steal_pct": server_window.get("steal_pct"),
        "server_rss_peak_mib": server_window.get("rss_peak_mib"),
        "server_rss_main_peak_mib": server_window.get("rss_main_peak_mib"),
    }
    cpu = server_window.get("cpu_pct")
    # Server CPU per message: what one core could carry if the server had it to itself.
    result["server_cpu_ms_per_msg"] = round(10 * cpu / rate, 3) if cpu and rate else None
    expected = round(rate * duration)
    result["sustained"] = bool(
        pairs_ready == pairs_requested
        and total["sent"] >= 0.98 * expected
        and result["achieved_rate"] >= 0.95 * rate
        and total["ack_failed"] == 0
        and total["ack_pending"] == 0
        and total["lost"] == 0
        and total["dup"] == 0
        and total["received"] == total["acked"]
        and result["p99_ms"] is not None
        and result["p99_ms"] < 100
    )
    return result


def step_line(target: str, s: dict[str, Any]) -> str:
    return (
        f"[{target}] rate {s['rate']:>6g}/s pairs {s['pairs']}: sent {s['sent']} "
        f"(achieved {s['achieved_rate']}/s) acked {s['acked']} ack_failed {s['ack_failed']} "
        f"pending {s['ack_pending']} received {s['received']} lost {s['lost']} dup {s['dup']} | "
        f"latency p50 {s['p50_ms']} p95 {s['p95_ms']} p99 {s['p99_ms']} max {s['max_ms']} ms | "
        f"ack p99 {s['ack_p99_ms']} ms | server CPU {s['server_cpu_pct']}% "
        f"({s['server_cpu_ms_per_msg']} ms/msg; "
        f"{s.get('server_cpu_ms_per_acked_msg')} ms per acked msg incl. drain) "
        f"RSS peak {s['server_rss_peak_mib']} MiB | generator CPU {s['gen_cpu_pct']}% "
        f"lag p99 {s['gen_lag_p99_ms']} ms | other processes CPU {s['other_cpu_pct']}% "
        + (
            ""
            if s["sustained"]
            else "| worst latency per second of sending: "
            + " ".join(f"{x:g}" for x in s.get("max_ms_by_second", []))
            + " ms "
        )
        + f"| {'SUSTAINED' if s['sustained'] else 'not sustained'}"
    )


def run_idle(
    target: str,
    counts: list[int],
    *,
    workers: int = 4,
    compression: bool = True,
    visitors: int = 4,
    warmup: int = 50,
    settle: float = 5.0,
    connect_deadline: float = 90.0,
    seed_args: list[str] | None = None,
    label: str = "",
    quiet: tuple[float, float] = (0.0, 0.0),
    server_env: dict[str, str] | None = None,
    joined: bool = False,
) -> dict[str, Any]:
    """Open idle visitor sockets up to each count; report the server's RSS per connection.

    `joined`: each socket is a visitor with a conversation of its own (made over HTTP before the
    baseline on the real server; a fresh chat id on the seed and the floor), joined to it and
    with one message sent, as a visitor on the page is (issue 20's memory per visitor)."""
    from bench.servers import Sampler, git_state, setup_accounts, start_server, wait_quiet

    before = wait_quiet(*quiet) if quiet[1] > 0 else None
    code = git_state()
    run_dir = RESULTS / f"{stamp()}-{target}-{'joined' if joined else 'idle'}"
    started = time.monotonic()
    server = start_server(target, run_dir, seed_args=seed_args, env=server_env)
    sampler = Sampler(server, interval=0.5).start()
    pool: Pool | None = None
    out: dict[str, Any] = {
        "scenario": "joined" if joined else "idle",
        "label": label,
        "target": target,
        "compression": compression,
        "workers": workers,
        "warmup_sockets": warmup,
        "seed_args": seed_args or [],
        "server_env": server_env or {},
        "machine_before": before,
        "git": code,
        "levels": [],
    }
    try:
        cookies: list[str] = []
        chats: list[tuple[str | None, str]] = []
        if joined and target == "real":
            made = asyncio.run(setup_accounts(server, warmup + max(counts)))
            chats = [(cookie, chat_id) for cookie, chat_id in made.visitors]
        elif joined:
            chats = [(None, f"idle-{i}") for i in range(warmup + max(counts))]
        elif target == "real":
            accounts = asyncio.run(setup_accounts(server, visitors))
            cookies = [cookie for cookie, _ in accounts.visitors]
        given = 0
        pool = Pool(workers)
        sampler.gen_pids = [proc.pid for proc in pool.procs if proc.pid is not None]

        def open_more(count: int) -> list[dict[str, Any]]:
            nonlocal given
            assert pool is not None
            shares = [count // workers + (1 if w < count % workers else 0) for w in range(workers)]
            commands = []
            for share in shares:
                commands.append(
                    {
                        "op": "idle",
                        "base_url": server.base_url,
                        "count": share,
                        "cookies": cookies,
                        "visitors": chats[given : given + share] if chats else [],
                        "role": "visitor",
                        "compression": compression,
                        "timeout": 20,
                        "deadline": connect_deadline,
                        "concurrency": 50,
                    }
                )
                given += share
            return pool.request(commands, timeout=connect_deadline + 40)

        def settled() -> tuple[int, int]:
            time.sleep(settle)
            rss = [s for s in (sampler.sample() for _ in range(3)) if s]
            return min(s.rss for s in rss), min(s.rss_main for s in rss)

        open_more(warmup)
        base_rss, base_main = settled()
        out["rss_baseline_mib"] = round(base_rss / 2**20, 1)
        total_open = warmup
        previous: tuple[int, int, int] = (warmup, base_rss, base_main)
        for count in counts:
            t0 = time.monotonic()
            replies = open_more(count - total_open)
            errors: Counter[str] = Counter()
            for r in replies:
                errors.update(r["errors"])
            connect_s = round(time.monotonic() - t0, 1)
            window_end = time.monotonic()
            rss, main = settled()
            status = pool.request([{"op": "status"}] * workers, timeout=30)
            open_now = sum(s["idle_open"] for s in status)
            deflated = sum(s["deflate_negotiated"] for s in status)
            total_open = count
            conns = open_now - warmup
            level = {
                "requested": count,
                "open": open_now,
                "deflate_negotiated": deflated,
                "connect_s": connect_s,
                "connect_errors": dict(errors),
                "server_rss_mib": round(rss / 2**20, 1),
                "server_main_rss_mib": round(main / 2**20, 1),
                "kib_per_conn": round((rss - base_rss) / 1024 / conns, 1) if conns > 0 else None,
                "kib_per_conn_main": round((main - base_main) / 1024 / conns, 1)
                if conns > 0
                else None,
                "kib_per_conn_marginal": (
                    round((rss - previous[1]) / 1024 / (open_now - previous[0]), 1)
                    if open_now > previous[0]
                    else None
                ),
                "connect_cpu_pct": sampler.window(t0, window_end).get("cpu_pct"),
                "idle_cpu_pct": sampler.window(window_end, time.monotonic()).get("cpu_pct"),
            }
            previous = (open_now, rss, main)
            out["levels"].append(level)
            print(
                f"[{target} {out['scenario']}] {open_now}/{count} sockets open, {deflated} with "
                f"permessage-deflate (connect {connect_s} s"
                + (f", errors {dict(errors)}" if errors else "")
                + f"): server RSS {level['server_rss_mib']} MiB, "
                f"{level['kib_per_conn']} KiB/conn over the {out['rss_baseline_mib']} MiB baseline "
                f"(marginal {level['kib_per_conn_marginal']} KiB/conn), idle CPU "
                f"{level['idle_cpu_pct']}%",
                flush=True,
            )
    finally:
        if pool is not None:
            pool.close()
        sampler.stop()
        server.stop()
        out["server_log_errors"] = log_errors(server.log_text())
        out["wall_s"] = round(time.monotonic() - started, 1)
    return out


# Reporting ------------------------------------------------------------------------------------


def save(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return path


def slim(data: Any) -> Any:
    """The JSON summary without per-message latency lists."""
    if isinstance(data, dict):
        return {k: slim(v) for k, v in data.items() if k not in {"lat", "ack_lat"}}
    if isinstance(data, list):
        return [slim(v) for v in data]
    return data


def suite(args: argparse.Namespace) -> dict[str, Any]:
    """Every benchmark of bench/README.md, in one bounded run."""
    from bench.servers import python_version

    compression = not args.no_deflate
    quiet = (args.quiet_below, args.quiet_wait)
    started = time.monotonic()
    report: dict[str, Any] = {
        "started": stamp(),
        "machine": machine(),
        "python": python_version(),
        "compression": compression,
        "runs": {},
    }
    runs = report["runs"]
    common: dict[str, Any] = {
        "compression": compression,
        "quiet": quiet,
        "retries": args.retries,
        "workers": args.workers,
    }
    parts = getattr(args, "only", "")
    only = set(parts.split(",")) if parts else {"a", "b", "c", "d", "f"}
    report["parts"] = sorted(only)
    if "a" in only:
        runs["a_real_1000_pairs"] = run_load(
            "real",
            1000,
            [200],
            20,
            label="(a) real, 1000 pairs, 200 msg/s",
            p99_target=25,
            **common,
        )
        runs["a_seed_1000_pairs"] = run_load(
            "seed",
            1000,
            [200],
            10,
            connect_deadline=25,
            stop_on_fail=False,
            label="(a') seed, 1000 pairs, 200 msg/s",
            **common,
        )
    if "b" in only:
        runs["b_real_ramp"] = run_load(
            "real", 200, RAMP, 8, label="(b) real ramp, 200 pairs", **common
        )
    if "c" in only:
        runs["c_seed_ramp"] = run_load(
            "seed", 200, RAMP, 8, label="(c) seed ramp, 200 pairs", **common
        )
    if "f" in only:
        # The floor of (b): the mandated transport stack with no work of Sohbet's
        # (bench/floor_server.py), as python-socketio ships and with Sohbet's lighter pieces.
        runs["f_floor_ramp"] = run_load(
            "floor", 200, FLOOR_RAMP, 8, label="(f) floor: python-socketio on Hypercorn", **common
        )
        runs["f_floor_lean_ramp"] = run_load(
            "floor",
            200,
            FLOOR_RAMP,
            8,
            server_env={"FLOOR_LEAN": "1"},
            label="(f') floor with app/realtime/'s lighter pieces",
            **common,
        )
    if "d" in only:
        idle_common = {"workers": args.workers, "quiet": quiet, "compression": compression}
        # Clients offer permessage-deflate as browsers do; the server decides (WS_COMPRESSION).
        runs["d_real_idle"] = run_idle(
            "real", [2000, 10000], label="(d) real idle sockets, server defaults", **idle_common
        )
        runs["d_real_idle_ws_compression"] = run_idle(
            "real",
            [2000],
            server_env={"WS_COMPRESSION": "1"},
            label="(d') real idle sockets, WS_COMPRESSION=1 (permessage-deflate accepted)",
            **idle_common,
        )
        # The seed under the same idle test, below eventlet's 1,024-connection cap.
        runs["d_seed_idle"] = run_idle(
            "seed", [900], label="(d'') seed idle sockets (eventlet accepts deflate)", **idle_common
        )
    summary: dict[str, Any] = {}
    if "a" in only:
        summary["a_p99_ms"] = runs["a_real_1000_pairs"]["steps"][0]["p99_ms"]
    if "b" in only:
        summary["b_real_max_sustained"] = runs["b_real_ramp"]["max_sustained_rate"]
    if "c" in only:
        summary["c_seed_max_sustained"] = runs["c_seed_ramp"]["max_sustained_rate"]
    if {"b", "c"} <= only and summary["c_seed_max_sustained"]:
        summary["c_ratio"] = round(
            summary["b_real_max_sustained"] / summary["c_seed_max_sustained"], 2
        )
    if "f" in only:
        summary["f_floor_max_sustained"] = runs["f_floor_ramp"]["max_sustained_rate"]
        summary["f_floor_lean_max_sustained"] = runs["f_floor_lean_ramp"]["max_sustained_rate"]
    if "d" in only:
        summary["d_kib_per_conn"] = {
            lvl["requested"]: lvl["kib_per_conn"] for lvl in runs["d_real_idle"]["levels"]
        }
    report["summary"] = summary
    report["wall_s"] = round(time.monotonic() - started, 1)
    return report


def markdown(report: dict[str, Any]) -> str:
    """The results tables of bench/README.md, from a suite report."""

    def v(x: Any) -> str:
        return "–" if x is None else f"{x:g}" if isinstance(x, float) else str(x)

    def commit(run: dict[str, Any]) -> str:
        code = run.get("git") or {}
        if not code:
            return ""
        dirty = any(
            f.split()[-1].startswith(("app/", "templates/", "partials/"))
            for f in code.get("server_files_modified", [])
        )
        return f" @{code.get('head', '?')}{'+local changes' if dirty else ''}"

    lines = [
        "| run | target | pairs | rate msg/s | sent | acked | received | lost | dup "
        "| p50 ms | p95 ms | p99 ms | server CPU % | CPU ms/msg | RSS peak MiB "
        "| other procs CPU % | sustained |",
        "|" + "---|" * 17,
    ]
    for key, run in report["runs"].items():
        if run["scenario"] != "load":
            continue
        for st in run["steps"]:
            lines.append(
                "| "
                + " | ".join(
                    v(x)
                    for x in (
                        key + commit(run),
                        run["target"],
                        f"{st['pairs']}/{run['pairs_requested']}",
                        st["rate"],
                        st["sent"],
                        st["acked"],
                        st["received"],
                        st["lost"],
                        st["dup"],
                        st["p50_ms"],
                        st["p95_ms"],
                        st["p99_ms"],
                        st["server_cpu_pct"],
                        st["server_cpu_ms_per_msg"],
                        st["server_rss_peak_mib"],
                        st["other_cpu_pct"],
                        ("yes" if st["sustained"] else "no")
                        + (" (busy machine)" if st.get("contaminated") else ""),
                    )
                )
                + " |"
            )
    lines += [
        "",
        "| run | sockets open | with deflate | connect s | server RSS MiB "
        "| KiB/conn (vs baseline) | KiB/conn marginal | idle CPU % |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, run in report["runs"].items():
        if run["scenario"] != "idle":
            continue
        for lvl in run["levels"]:
            lines.append(
                f"| {key}{commit(run)} | {lvl['open']}/{lvl['requested']} "
                f"| {v(lvl.get('deflate_negotiated'))} | {v(lvl['connect_s'])} "
                f"| {v(lvl['server_rss_mib'])} (baseline {v(run.get('rss_baseline_mib'))}) "
                f"| {v(lvl['kib_per_conn'])} | {v(lvl['kib_per_conn_marginal'])} "
                f"| {v(lvl['idle_cpu_pct'])} |"
            )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    import os
    import platform

    import psutil

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
    }


def main() -> None:
    import signal

    from bench.servers import raise_nofile

    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the servers we started are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-deflate", action="store_true", help="no permessage-deflate offer")
    parser.add_argument("--workers", type=int, default=4, help="load-generator processes")
    parser.add_argument(
        "--quiet-below",
        type=float,
        default=25,
        help="before each server start, wait until the machine is at most this busy (%% of a core)",
    )
    parser.add_argument(
        "--quiet-wait", type=float, default=20, help="longest such wait in seconds (0: no wait)"
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=1,
        help="repeat a failed load step up to this many times when other processes used the CPU",
    )
    sub = parser.add_subparsers(dest="cmd")
    suite_cmd = sub.add_parser("suite", help="(a)-(d) of bench/README.md (default)")
    suite_cmd.add_argument("--only", default="", help="comma-separated parts: a,b,c,d,f")
    load = sub.add_parser("load", help="pairs sending at one or more rates")
    load.add_argument("--target", choices=["real", "seed", "floor"], default="real")
    load.add_argument("--pairs", type=int, default=200)
    load.add_argument("--rates", default="200", help="comma-separated msg/s steps")
    load.add_argument("--duration", type=float, default=10)
    load.add_argument("--drain", type=float, default=10)
    load.add_argument("--no-stop", action="store_true", help="run every step even after a failure")
    load.add_argument("--connect-deadline", type=float, default=60)
    load.add_argument("--seed-arg", action="append", default=[], help="extra seed_server.py flag")
    table = sub.add_parser("table", help="print the README tables of a saved suite JSON")
    table.add_argument("file", nargs="?", default=str(RESULTS / "latest-suite.json"))
    idle = sub.add_parser("idle", help="idle sockets and server RSS per connection")
    idle.add_argument("--target", choices=["real", "seed", "floor"], default="real")
    idle.add_argument(
        "--joined", action="store_true", help="each a visitor joined to a chat of its own"
    )
    idle.add_argument("--counts", default="2000,10000")
    idle.add_argument("--settle", type=float, default=5)
    idle.add_argument("--connect-deadline", type=float, default=90)
    idle.add_argument("--seed-arg", action="append", default=[], help="extra seed_server.py flag")
    args = parser.parse_args()
    raise_nofile()
    compression = not args.no_deflate
    cmd = args.cmd or "suite"
    if cmd == "table":
        print(markdown(json.loads(Path(args.file).read_text())))
        return
    if cmd == "suite":
        result = suite(args)
    elif cmd == "load":
        result = run_load(
            args.target,
            args.pairs,
            [float(r) for r in args.rates.split(",")],
            args.duration,
            workers=args.workers,
            compression=compression,
            drain=args.drain,
            stop_on_fail=not args.no_stop,
            connect_deadline=args.connect_deadline,
            seed_args=args.seed_arg,
            quiet=(args.quiet_below, args.quiet_wait),
            retries=args.retries,
        )
    else:
        result = run_idle(
            args.target,
            [int(c) for c in args.counts.split(",")],
            workers=args.workers,
            compression=compression,
            settle=args.settle,
            connect_deadline=args.connect_deadline,
            seed_args=args.seed_arg,
            quiet=(args.quiet_below, args.quiet_wait),
            joined=args.joined,
        )
    from bench.servers import git_state

    result["command"] = " ".join(["python", "-m", "bench.chat_load", *sys.argv[1:]])
    result["git"] = git_state()
    result = slim(result)
    path = save(f"{stamp()}-{cmd}", result)
    save(f"latest-{cmd}", result)
    print("JSON summary (full results in " + str(path.relative_to(BENCH.parent)) + "):")
    print(json.dumps(result, indent=1, ensure_ascii=False))
    if cmd == "suite":
        print(markdown(result))


if __name__ == "__main__":
    main()
