"""The baseline: the realtime chat built the way the seed design did it.

Flask-SocketIO on eventlet, one plain-sqlite3 INSERT + commit per message (default pragmas:
rollback journal, synchronous=FULL), a room per chat id, no authentication. It speaks the same
`/chat` events as the real server, enough for bench/chat_load.py to drive it unchanged:

    join {chat_id}                      -> joins room chat_id, emits chat:history, ack {ok, chat_id}
    send {chat_id, text, client_id}     -> INSERT + commit, emit chat:message to the room,
                                           ack {ok, duplicate:false, message}

Runs from its own venv (bench/setup_seed.sh):
    bench/.venv-seed/bin/python bench/seed_server.py --port 8790 --db /tmp/seed.db
"""

from __future__ import annotations

import eventlet

eventlet.monkey_patch()

import argparse  # noqa: E402
import sqlite3  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from typing import Any  # noqa: E402

from flask import Flask  # noqa: E402
from flask_socketio import SocketIO, emit, join_room  # noqa: E402

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    chat_id TEXT NOT NULL,
    role TEXT NOT NULL,
    text TEXT NOT NULL,
    client_id TEXT,
    time TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_chat ON messages (chat_id, id);
"""

app = Flask(__name__)
socketio = SocketIO(app, async_mode="eventlet", logger=False, engineio_logger=False)
db: sqlite3.Connection


def _row(row: tuple[Any, ...]) -> dict[str, Any]:
    seq, chat_id, role, text, client_id, time = row
    return {
        "chat_id": chat_id,
        "seq": seq,
        "role": role,
        "type": "text",
        "text": text,
        "time": time,
        "client_id": client_id,
    }


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@socketio.on("connect", namespace="/chat")
def on_connect(auth: object = None) -> None:
    """The seed had no accounts: every socket is welcome."""


@socketio.on("join", namespace="/chat")
def on_join(data: dict[str, Any]) -> dict[str, Any]:
    chat_id = str(data.get("chat_id", ""))
    join_room(chat_id)
    rows = db.execute(
        "SELECT id, chat_id, role, text, client_id, time FROM messages"
        " WHERE chat_id = ? ORDER BY id DESC LIMIT 50",
        (chat_id,),
    ).fetchall()
    emit("chat:history", [_row(r) for r in reversed(rows)])
    return {"ok": True, "chat_id": chat_id}


@socketio.on("send", namespace="/chat")
def on_send(data: dict[str, Any]) -> dict[str, Any]:
    chat_id = str(data.get("chat_id", ""))
    text = str(data.get("text", ""))[:4000]
    client_id = data.get("client_id")
    role = "admin" if data.get("role") == "admin" else "visitor"
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    cur = db.execute(
        "INSERT INTO messages (chat_id, role, text, client_id, time) VALUES (?, ?, ?, ?, ?)",
        (chat_id, role, text, client_id, now),
    )
    db.commit()
    message = _row((cur.lastrowid, chat_id, role, text, client_id, now))
    emit("chat:message", message, to=chat_id)
    return {"ok": True, "duplicate": False, "message": message}


def main() -> None:
    global db
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--db", default="seed.db")
    parser.add_argument(
        "--max-size",
        type=int,
        default=None,
        help="eventlet.wsgi.server max_size (greenthreads = connections); default: eventlet's 1024",
    )
    parser.add_argument(
        "--wal", action="store_true", help="WAL + synchronous=NORMAL instead of sqlite3 defaults"
    )
    args = parser.parse_args()
    db = sqlite3.connect(args.db, check_same_thread=False)
    if args.wal:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(SCHEMA)
    db.commit()
    extra: dict[str, Any] = {}
    if args.max_size is not None:
        extra["max_size"] = args.max_size
    print(f"seed server on http://{args.host}:{args.port} db={args.db}", flush=True)
    socketio.run(app, host=args.host, port=args.port, log_output=False, **extra)


if __name__ == "__main__":
    main()
