"""Where a message's server time goes, without sockets: the app's own code, in-process.

    .venv/bin/python -m bench.probe_write_path [--messages 3000] [--concurrency 1,50]

Builds the app against a fresh SQLite file (same pragmas as the server), opens one
conversation, and times, per message:
  - post_message (the one write path: dedup SELECT, transaction, then fan-out),
  - the same with the fan-out switched off in this process (the database part alone),
  - each render of the fan-out (the message partial per viewer, the conversation list row),
  - the same four statements with plain sqlite3: what SQLite itself costs.
Sequential (concurrency 1) shows the cost of one message; concurrency 50 shows how the
SQLite client's connection lock serialises writers. Nothing here changes app/: the fan-out is
switched off by replacing a method on this process's ChatService instance only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


async def timed(label: str, n: int, concurrency: int, make: Any) -> dict[str, Any]:
    """Run `make(i)` n times with at most `concurrency` in flight; wall and CPU per call."""
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await make(i)

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    row = {
        "what": label,
        "concurrency": concurrency,
        "n": n,
        "per_second": round(n / wall),
        "wall_us_per_call": round(1e6 * wall / n),
        "cpu_us_per_call": round(1e6 * cpu / n),
    }
    print(
        f"{label:<46} c={concurrency:<3} {row['per_second']:>6}/s  "
        f"wall {row['wall_us_per_call']:>5} us  cpu {row['cpu_us_per_call']:>5} us per call",
        flush=True,
    )
    return row


def raw_sqlite(path: Path, n: int) -> dict[str, Any]:
    """The same writes with plain sqlite3 on the loop's thread: what SQLite itself costs."""
    import sqlite3

    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.executescript(
        "CREATE TABLE conversation (id INTEGER PRIMARY KEY, last_seq INT, last_message_at TEXT,"
        " last_preview TEXT, last_role TEXT, unread_admin INT, waiting_since TEXT);"
        "CREATE TABLE message (id INTEGER PRIMARY KEY, conversation_id INT, seq INT,"
        " client_id TEXT, role TEXT, kind TEXT, text TEXT, source TEXT, created_at TEXT,"
        " UNIQUE (conversation_id, seq), UNIQUE (conversation_id, client_id));"
        "INSERT INTO conversation VALUES (1, 0, NULL, '', '', 0, NULL);"
    )
    cpu0, t0 = time.process_time(), time.perf_counter()
    for i in range(n):
        con.execute("BEGIN")
        (seq,) = con.execute("SELECT last_seq FROM conversation WHERE id = 1").fetchone()
        con.execute(
            "UPDATE conversation SET last_seq = ?, last_message_at = ?, last_preview = ?,"
            " last_role = 'visitor', unread_admin = unread_admin + 1, waiting_since = ?"
            " WHERE id = 1",
            (seq + 1, "2025-01-01T00:00:00", f"text {i}", "2025-01-01T00:00:00"),
        )
        con.execute(
            "INSERT INTO message (conversation_id, seq, client_id, role, kind, text, source,"
            " created_at) VALUES (1, ?, ?, 'visitor', 'text', ?, 'web', ?)",
            (seq + 1, f"raw-{i:09d}", f"text {i}", "2025-01-01T00:00:00"),
        )
        con.execute("COMMIT")
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    con.close()
    row = {
        "what": "same 4 statements, plain sqlite3 (WAL, NORMAL)",
        "concurrency": 1,
        "n": n,
        "per_second": round(n / wall),
        "wall_us_per_call": round(1e6 * wall / n),
        "cpu_us_per_call": round(1e6 * cpu / n),
    }
    print(
        f"{row['what']:<46} c=1   {row['per_second']:>6}/s  "
        f"wall {row['wall_us_per_call']:>5} us  cpu {row['cpu_us_per_call']:>5} us per call",
        flush=True,
    )
    return row


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    from tortoise import Tortoise

    from app import create_app, db
    from tests.support.inprocess import app_config

    workdir = Path(tempfile.mkdtemp(prefix="sohbet-probe-"))
    # The visitor's per-minute budget would stop the probe after 30 messages.
    config = app_config(workdir, {"MESSAGES_PER_MINUTE": "100000000"})
    url = config["DATABASE_URL"]
    app = create_app(config)
    chat = app.extensions["sohbet"].chat
    await db.open_database(url)
    rows: list[dict[str, Any]] = []
    try:
        conv, _ = await chat.start_conversation("Probe Visitor", "tr")
        counter = iter(range(10**9))

        async def post(_: int) -> None:
            await chat.post_message(
                conv.id,
                role="visitor",
                text=f"Merhaba, siparişim hâlâ gelmedi; yardımcı olur musunuz? #{next(counter)}",
                client_id=f"probe-{next(counter):09d}",
            )

        n = args.messages
        for c in args.concurrency:
            rows.append(await timed("post_message (DB + fan-out)", n, c, post))

        async def no_publish(*_: Any) -> None:
            return None

        # The fan-out is whatever the write path calls after the commit: the group-commit
        # writer's `publish` when there is one, else ChatService.publish_message.
        writer = getattr(chat, "writer", None)
        owner, attr = (writer, "publish") if writer is not None else (chat, "publish_message")
        real_publish = getattr(owner, attr)
        setattr(owner, attr, no_publish)
        for c in args.concurrency:
            rows.append(await timed("post_message, fan-out off (DB only)", n, c, post))
        setattr(owner, attr, real_publish)

        conv = await type(conv).get(id=conv.id)
        message = (await chat.queries.recent(conv.id, limit=1))[0][0]

        async def render_msg(_: int) -> None:
            await chat.fanout.render_message(conv, message, "admin")

        async def render_row(_: int) -> None:
            await chat.fanout.render_row(conv, online=True)

        rows.append(await timed("render message partial (one per viewer)", n, 1, render_msg))
        rows.append(await timed("render conversation list row", n, 1, render_row))
        rows.append(raw_sqlite(workdir / "raw.db", n))
    finally:
        await Tortoise.close_connections()
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--concurrency", default="1,50")
    parsed = parser.parse_args()
    parsed.concurrency = [int(c) for c in parsed.concurrency.split(",")]
    result = asyncio.run(main(parsed))
    print(json.dumps(result))
