"""The herd: N joined visitors lose their sockets at once, then all come back.

    .venv/bin/python -m bench.storm --counts 2000 --managers index,scan
    .venv/bin/python -m bench.storm --counts 10000 --managers index

For each count and room manager (`index`: the product; `scan`: the same server with
python-socketio's own scan of every room on each disconnect, bench/storm_scan.py), one server:

1. N visitors, each in its own conversation: connect, `join`, send one message. One more pair
   (a visitor and an operator socket joined to its conversation) sends 10 msg/s all along and
   never disconnects; an operator panel (a list watcher) is open, as in production.
2. Storm: every visitor's TCP connection is closed at once (a proxy restart). Reported: the time
   from the last close until the server's CPU (psutil, its process tree) is under 5 % for 1 s.
3. Rejoin: every visitor reconnects with the page's own backoff (socket.io-client's: 1 s, 2 s,
   4 s, at most 5 s, each +-50 %; 20 s connect timeout) and sends the page's `join` with its
   `last_seq` (again while `more`; again after 8 s without an ack and a pause of 1, 2, 4 ... s
   (50-100 %, at most 60 s), as the page does). Reported: the time until all are joined and
   caught up.
4. A second storm (the first with --sigterm-only), and SIGTERM to the server 0.5 s after the
   last close. Reported: the time
   until the process has exited (Hypercorn as the Dockerfile runs it: --workers 0,
   --graceful-timeout 5).

The pair's p50/p99/max (visitor `send` written -> `chat:message` at the operator socket) is
reported for each phase. JSON goes to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent

RESULTS = BENCH / "results"
PAIR_RATE = 10.0  # msg/s from the pair that never disconnects
IDLE_CPU_PCT = 5.0


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1], 1)


def backoff(attempt: int) -> float:
    """socket.io-client's reconnection delay (seconds) before attempt `attempt` (from 0)."""
    ms = 1000.0 * 2**attempt
    rand = random.random()
    deviation = math.floor(rand * 0.5 * ms)
    ms = ms - deviation if (math.floor(rand * 10) & 1) == 0 else ms + deviation
    return min(ms, 5000.0) / 1000


# Load-generator processes ---------------------------------------------------------------------


class Worker:
    """A share of the visitors (or the pair), on its own asyncio loop."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.clients: dict[str, Any] = {}  # chat id -> client
        self.last_seq: dict[str, int] = {}
        self.cookies: dict[str, str] = {}
        self.url = ""
        # The pair.
        self.sent: dict[str, float] = {}
        self.lat: dict[str, float] = {}
        self.rows = 0
        self.sender: asyncio.Task[None] | None = None

    async def _join(self, client: Any, chat_id: str, wait: float) -> None:
        """The page's join: again from `through` while the server says there is `more`."""
        while True:
            ack = await client.call(
                "join", {"chat_id": chat_id, "last_seq": self.last_seq[chat_id]}, wait
            )
            if not (isinstance(ack, dict) and ack.get("ok")):
                raise RuntimeError(f"join refused: {ack!r:.80}")
            self.last_seq[chat_id] = max(self.last_seq[chat_id], int(ack.get("through") or 0))
            if not ack.get("more"):
                return

    async def op_setup(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Connect, join and send one message for every visitor of this share."""
        from bench.sio_client import SioClient, ws_url

        self.url = ws_url(cmd["base_url"])
        gate = asyncio.Semaphore(50)
        errors: Counter[str] = Counter()

        async def one(cookie: str, chat_id: str) -> None:
            async with gate:
                client = SioClient(self.url, cookie=cookie, auth={"as": "visitor"})
                self.cookies[chat_id], self.last_seq[chat_id] = cookie, 0
                try:
                    await client.connect(30)
                    await self._join(client, chat_id, 30)
                    ack = await client.call(
                        "send",
                        {
                            "chat_id": chat_id,
                            "type": "text",
                            "text": "Merhaba",
                            "client_id": "storm-setup",
                        },
                        30,
                    )
                    if not (isinstance(ack, dict) and ack.get("ok")):
                        raise RuntimeError(f"send refused: {ack!r:.80}")
                    self.last_seq[chat_id] = int(ack["message"]["seq"])
                    self.clients[chat_id] = client
                except Exception as exc:
                    errors[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
                    await client.close()

        await asyncio.gather(*(one(cookie, chat_id) for cookie, chat_id in cmd["visitors"]))
        return {"joined": len(self.clients), "errors": dict(errors)}

    async def op_drop(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Close every visitor's TCP connection at once, without a WebSocket close."""
        for client in self.clients.values():
            if client.ws is not None:
                client.ws.transport.close()
        last = time.monotonic()
        await asyncio.sleep(0.5)  # let the reader tasks see it
        return {"last_close": last}

    async def op_rejoin(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Every visitor comes back as the page does: backoff, connect, join with last_seq."""
        from bench.sio_client import SioClient

        start = cmd["start"]
        done: list[float] = []
        attempts: Counter[int] = Counter()
        errors: Counter[str] = Counter()

        async def one(chat_id: str) -> None:
            attempt = connects = join_failures = 0
            while True:
                await asyncio.sleep(backoff(attempt))
                client = SioClient(self.url, cookie=self.cookies[chat_id], auth={"as": "visitor"})
                connects += 1
                try:
                    await client.connect(20)  # socket.io-client's connect timeout
                except Exception as exc:
                    errors[f"connect: {type(exc).__name__}: {str(exc)[:60]}"] += 1
                    await client.close()
                    attempt += 1
                    continue
                attempt = 0  # socket.io-client starts its backoff again once connected
                # The page (static/js/chat.js): a join unanswered in ACK_TIMEOUT_MS (8 s) is
                # sent again on the same socket after 1 s, 2 s, 4 s ... (each 50-100 %), at
                # most 60 s; the count of failures lasts until a join is answered.
                while not client.closed:
                    try:
                        await self._join(client, chat_id, 8)
                    except TimeoutError:
                        errors["join: no ack in 8 s"] += 1
                        ceiling = min(60.0, 2.0**join_failures)
                        join_failures += 1
                        await asyncio.sleep(ceiling * random.uniform(0.5, 1.0))
                        continue
                    except Exception as exc:
                        errors[f"join: {type(exc).__name__}: {str(exc)[:60]}"] += 1
                        break
                    self.clients[chat_id] = client
                    attempts[connects] += 1
                    done.append(time.monotonic() - start)
                    return
                await client.close()
                attempt += 1

        tasks = [asyncio.create_task(one(chat_id)) for chat_id in list(self.clients)]
        _finished, pending = await asyncio.wait(tasks, timeout=cmd["deadline"])
        for task in pending:
            task.cancel()
        return {"done": done, "attempts": dict(attempts), "errors": dict(errors)}

    # The pair ----------------------------------------------------------------------------------

    def _on_operator(self, client: Any, raw: str) -> None:
        if raw.startswith('["chat:message"'):
            cid = json.loads(raw)[1].get("client_id")
            if cid in self.sent and cid not in self.lat:
                self.lat[cid] = (time.monotonic() - self.sent[cid]) * 1000

    def _on_panel(self, client: Any, raw: str) -> None:
        if raw.startswith('["admin:conversation"'):
            self.rows += 1

    async def op_pair(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Connect the pair and the panel, then send PAIR_RATE msg/s until `pair_stop`."""
        from bench.sio_client import SioClient, ws_url

        url = ws_url(cmd["base_url"])
        chat_id = cmd["chat_id"]
        visitor = SioClient(url, cookie=cmd["visitor_cookie"], auth={"as": "visitor"})
        operator = SioClient(
            url,
            cookie=cmd["admin_cookie"],
            auth={"as": "admin", "watch_list": False},
            on_event=self._on_operator,
        )
        # Without --no-panel this admin socket watches the list (an operator panel open).
        panel = SioClient(
            url,
            cookie=cmd["admin_cookie"],
            auth={"as": "admin", "watch_list": cmd.get("panel", True)},
            on_event=self._on_panel,
        )
        for client in (visitor, operator, panel):
            await client.connect(30)
        self.last_seq[chat_id] = 0
        for client in (visitor, operator):
            await self._join(client, chat_id, 30)
        self.clients = {"visitor": visitor, "operator": operator, "panel": panel}

        async def send() -> None:
            i = 0
            base = time.monotonic()
            while True:
                await asyncio.sleep(max(0.0, base + i / PAIR_RATE - time.monotonic()))
                cid = f"pair-{i:06d}"
                self.sent[cid] = time.monotonic()
                await visitor.emit(
                    "send", {"chat_id": chat_id, "type": "text", "text": f"m{i}", "client_id": cid}
                )
                i += 1

        self.sender = asyncio.create_task(send())
        return {"ok": True}

    async def op_pair_stop(self, cmd: dict[str, Any]) -> dict[str, Any]:
        if self.sender is not None:
            self.sender.cancel()
        for _ in range(200):  # at most 10 s for the last ones to arrive
            if len(self.lat) >= len(self.sent):
                break
            await asyncio.sleep(0.05)
        return {
            "messages": [(t0, self.lat.get(cid)) for cid, t0 in self.sent.items()],
            "panel_rows": self.rows,
        }

    async def op_close(self, cmd: dict[str, Any]) -> dict[str, Any]:
        await asyncio.gather(*(c.close() for c in self.clients.values()), return_exceptions=True)
        return {}

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            cmd = await loop.run_in_executor(None, self.conn.recv)
            try:
                reply = await getattr(self, f"op_{cmd['op']}")(cmd)
            except Exception as exc:
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            self.conn.send(reply)
            if cmd["op"] == "close":
                return


def worker_main(conn: Any) -> None:
    from bench.servers import raise_nofile

    raise_nofile()
    asyncio.run(Worker(conn).serve())


class Pool:
    """Load-generator processes driven over pipes; the last one holds the pair."""

    def __init__(self, size: int) -> None:
        ctx = mp.get_context("spawn")
        self.conns, self.procs = [], []
        for _ in range(size):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(child,), daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)

    def send(self, index: int, cmd: dict[str, Any]) -> None:
        self.conns[index].send(cmd)

    def reply(self, index: int, timeout: float) -> dict[str, Any]:
        if not self.conns[index].poll(timeout):
            raise TimeoutError(f"worker {index} did not answer in {timeout} s")
        reply: dict[str, Any] = self.conns[index].recv()
        if "error" in reply:
            raise RuntimeError(f"worker {index}: {reply['error']}")
        return reply

    def all(self, cmds: dict[int, dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
        for index, cmd in cmds.items():
            self.send(index, cmd)
        return [self.reply(index, timeout) for index in cmds]

    def close(self) -> None:
        for index in range(len(self.procs)):
            try:
                self.send(index, {"op": "close"})
                self.reply(index, 20)
            except Exception:
                pass
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()


# One run --------------------------------------------------------------------------------------


def phase_latency(
    messages: list[tuple[float, float | None]], t0: float, t1: float
) -> dict[str, Any]:
    inside = [lat for sent, lat in messages if t0 <= sent < t1]
    arrived = [lat for lat in inside if lat is not None]
    return {
        "sent": len(inside),
        "lost": len(inside) - len(arrived),
        "p50_ms": pct(arrived, 50),
        "p99_ms": pct(arrived, 99),
        "max_ms": round(max(arrived), 1) if arrived else None,
    }


def wait_idle(sampler: Any, since: float, bound: float) -> float | None:
    """Seconds from `since` to the end of the first 1 s window with the server under 5 % CPU."""
    end = since + 1.0
    while end - since <= bound:
        while time.monotonic() < end + 0.3:
            time.sleep(0.1)
        cpu = sampler.window(end - 1.0, end).get("cpu_pct")
        if cpu is not None and cpu < IDLE_CPU_PCT:
            return round(end - since, 1)
        end += 0.5
    return None


def run(
    count: int,
    manager: str,
    workers: int,
    bound: float,
    sigterm_only: bool = False,
    panel: bool = True,
) -> dict[str, Any]:
    from bench.servers import HYPERCORN_APPS, Sampler, git_state, setup_accounts, start_server

    HYPERCORN_APPS.setdefault("scan", "bench.storm_scan:app")
    target = "real" if manager == "index" else "scan"
    run_dir = RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}-storm-{manager}-{count}"
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {
        "DATABASE_URL": f"sqlite://{run_dir / 'bench.db'}",
        "SECRET_KEY": "x",
        "SOHBET_ENV_FILE": "/nonexistent",
        "CONVERSATIONS_PER_HOUR": "1000000",
        "MESSAGES_PER_MINUTE": "1000000",
    }
    os.environ["BENCH_SERVER_ARGS"] = "--workers 0 --graceful-timeout 5"
    server = start_server(target, run_dir, env=env)
    sampler = Sampler(server).start()
    pool = Pool(workers + 1)
    pair = workers
    out: dict[str, Any] = {"count": count, "manager": manager, "panel": panel, "git": git_state()}
    try:
        t = time.monotonic()
        accounts = asyncio.run(setup_accounts(server, count + 1))
        (pair_cookie, pair_chat), *visitors = accounts.visitors
        sampler.gen_pids = [proc.pid for proc in pool.procs if proc.pid is not None]
        pool.all(
            {
                pair: {
                    "op": "pair",
                    "base_url": server.base_url,
                    "chat_id": pair_chat,
                    "visitor_cookie": pair_cookie,
                    "admin_cookie": accounts.admin_cookie,
                    "panel": panel,
                }
            },
            60,
        )
        shares = {
            i: {"op": "setup", "base_url": server.base_url, "visitors": visitors[i::workers]}
            for i in range(workers)
        }
        setup = pool.all(shares, 600)
        out["joined"] = sum(r["joined"] for r in setup)
        out["setup_errors"] = sum((Counter(r["errors"]) for r in setup), Counter())
        out["setup_s"] = round(time.monotonic() - t, 1)
        print(
            f"[{manager} {count}] {out['joined']} joined in {out['setup_s']} s",
            dict(out["setup_errors"]),
        )
        time.sleep(3)
        t_base = time.monotonic() - 3
        # What the pair and the panel cost before the storm: the floor the 5 % is measured over.
        out["before_cpu_pct"] = sampler.window(t_base, time.monotonic()).get("cpu_pct")

        if not sigterm_only:
            drops = pool.all({i: {"op": "drop"} for i in range(workers)}, 60)
            t_closed = max(r["last_close"] for r in drops)
            out["storm_cpu_idle_s"] = wait_idle(sampler, t_closed, bound)
            t_idle = time.monotonic()
            out["storm_cpu_pct_first_5s"] = sampler.window(t_closed, t_closed + 5).get("cpu_pct")
            print(f"[{manager} {count}] under 5 % CPU {out['storm_cpu_idle_s']} s after")

            t_rejoin = time.monotonic()
            cmd = {"op": "rejoin", "start": t_rejoin, "deadline": bound}
            cmds = {i: cmd for i in range(workers)}
            rejoin = pool.all(cmds, bound + 30)
            done = [d for r in rejoin for d in r["done"]]
            out["rejoined"] = len(done)
            out["rejoin_all_s"] = round(max(done), 1) if len(done) == out["joined"] else None
            out["rejoin_p50_s"], out["rejoin_p99_s"] = pct(done, 50), pct(done, 99)
            out["rejoin_attempts"] = sum((Counter(r["attempts"]) for r in rejoin), Counter())
            out["rejoin_errors"] = sum((Counter(r["errors"]) for r in rejoin), Counter())
            out["rejoin_cpu_pct"] = sampler.window(t_rejoin, time.monotonic()).get("cpu_pct")
            print(f"[{manager} {count}] {len(done)} rejoined, all in {out['rejoin_all_s']} s")
            time.sleep(3)
            t_end = time.monotonic()

            stopped = pool.all({pair: {"op": "pair_stop"}}, 60)[0]
            out["panel_rows"] = stopped["panel_rows"]
            messages = stopped["messages"]
            out["pair"] = {
                "before": phase_latency(messages, t_base, t_closed),
                "storm": phase_latency(messages, t_closed, t_idle),
                "rejoin": phase_latency(messages, t_rejoin, t_end),
            }
            print(f"[{manager} {count}] pair {json.dumps(out['pair'])}")

        drops = pool.all({i: {"op": "drop"} for i in range(workers)}, 60)
        t_closed = max(r["last_close"] for r in drops)
        time.sleep(max(0.0, t_closed + 0.5 - time.monotonic()))
        t_signal = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout=60)
            out["sigterm_exit_s"] = round(time.monotonic() - t_signal, 2)
        except subprocess.TimeoutExpired:
            out["sigterm_exit_s"] = None  # not within 60 s
        print(f"[{manager} {count}] SIGTERM -> exit {out['sigterm_exit_s']} s")
        out["server_errors"] = sum(
            1 for line in server.log_text().splitlines() if "Traceback" in line or " ERROR " in line
        )
    finally:
        sampler.stop()
        pool.close()
        server.stop()
    (run_dir / "storm.json").write_text(json.dumps(out, indent=2, default=str))
    return out


def main() -> None:
    from bench.servers import raise_nofile

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="2000")
    parser.add_argument("--managers", default="index,scan", help="index (the product), scan")
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")
    parser.add_argument("--bound", type=float, default=300, help="longest wait per phase (s)")
    parser.add_argument(
        "--no-panel", action="store_true", help="no operator list open (no list watcher)"
    )
    parser.add_argument(
        "--sigterm-only", action="store_true", help="only the storm with SIGTERM (step 4)"
    )
    args = parser.parse_args()
    raise_nofile()
    results = []
    for count in [int(c) for c in args.counts.split(",")]:
        for manager in args.managers.split(","):
            results.append(
                run(count, manager, args.workers, args.bound, args.sigterm_only, not args.no_panel)
            )
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
