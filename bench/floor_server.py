"""The floor: the customer's realtime stack doing nothing but the chat's socket traffic.

python-socketio on Hypercorn (uvloop worker, as the product runs), the same `/chat` events as
`bench/seed_server.py`, and nothing else: no database, no templates, no accounts. Its CPU per
message is what every message costs before Sohbet does any work of its own, so it bounds what
one process of this stack can carry (bench/README.md, target (b)).

    join {chat_id}                   -> joins room chat_id, ack {ok, chat_id}
    send {chat_id, text, client_id}  -> seq += 1, emit chat:message to the room (the sender
                                        skipped), ack {ok, duplicate:false, message}

`FLOOR_LEAN=1` builds it with `app.realtime.lean_server`, as `app.realtime.create_sio` does, after
`app.realtime.install()`: Sohbet's lighter engine.io sockets, packet class, JSON coders, room
manager and Hypercorn event queues.

    .venv/bin/python -m hypercorn bench.floor_server:app --worker-class uvloop --bind ...
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import socketio

if os.environ.get("FLOOR_LEAN") == "1":
    from app.realtime import install, lean_server

    # Deflate stays negotiable, as Hypercorn has it and as the floor was always measured.
    install(ws_compression=True)
    sio = lean_server(socketio.AsyncServer, async_mode="asgi", cors_allowed_origins=None)
else:
    sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins=None)
seqs: dict[str, int] = {}


async def health(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b'{"status":"ok"}'})


app = socketio.ASGIApp(sio, other_asgi_app=health)


@sio.on("connect", namespace="/chat")
async def on_connect(sid: str, environ: dict[str, Any], auth: object = None) -> None:
    """Every socket is welcome."""


@sio.on("join", namespace="/chat")
async def on_join(sid: str, data: dict[str, Any]) -> dict[str, Any]:
    chat_id = str(data.get("chat_id", ""))
    await sio.enter_room(sid, chat_id, namespace="/chat")
    await sio.emit("chat:history", [], to=sid, namespace="/chat")
    return {"ok": True, "chat_id": chat_id}


@sio.on("send", namespace="/chat")
async def on_send(sid: str, data: dict[str, Any]) -> dict[str, Any]:
    chat_id = str(data.get("chat_id", ""))
    seq = seqs[chat_id] = seqs.get(chat_id, 0) + 1
    message = {
        "chat_id": chat_id,
        "seq": seq,
        "role": "visitor",
        "type": "text",
        "text": str(data.get("text", ""))[:4000],
        "time": datetime.now(UTC).isoformat(),
        "client_id": data.get("client_id"),
    }
    await sio.emit("chat:message", message, room=chat_id, skip_sid=sid, namespace="/chat")
    return {"ok": True, "duplicate": False, "message": message}
