"""Serving-layer settings Hypercorn does not expose.

Hypercorn offers permessage-deflate to every WebSocket client and browsers always accept it.
For chat traffic (frames of a few hundred bytes) it saves little bandwidth but costs a zlib
compressor and decompressor per connection: measured with bench/chat_load.py, an idle
Socket.IO connection took ~145-150 KiB with it and ~36-42 KiB without, and the server spent
~3-5 % of its CPU compressing frames under load. So it is declined unless WS_COMPRESSION=1.

Hypercorn also gives every connection an asyncio.Queue of ASGI events for the app (four
deques, ~2.5 KiB, kept as long as a WebSocket lives): `lean_app_queues` makes it a LeanQueue
(app/sockets.py) of the same bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from hypercorn.asyncio import task_group
from hypercorn.protocol import ws_stream
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope
from tortoise import Tortoise
from wsproto.extensions import PerMessageDeflate

from app.sockets import LeanQueue

log = logging.getLogger("sohbet.serving")


class _DeclinedDeflate(PerMessageDeflate):
    """permessage-deflate that turns every offer down (the handshake then names no extension)."""

    def accept(self, offer: str) -> None:
        return None


_ORIGINAL = PerMessageDeflate


def websocket_compression(enabled: bool) -> None:
    """Let Hypercorn negotiate permessage-deflate, or decline it (process-wide)."""
    # Hypercorn looks the class up in its module at each handshake (ws_stream.WSStream.accept).
    ws_stream.PerMessageDeflate = _ORIGINAL if enabled else _DeclinedDeflate  # type: ignore[attr-defined]


class ExitOnFailedStart:
    """Close the database when the app fails to start, so the process can exit.

    A `while_serving` step that fails (a database that is not there, a bad migration, a
    broken setting found late) leaves what earlier steps opened: aiosqlite runs each
    connection in a non-daemon thread, and with it open the interpreter never exits; the
    server hung instead of stopping with the error for its supervisor to see.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def watch(message: Any) -> None:
            if message["type"] == "lifespan.startup.failed":
                log.error("start-up failed: %s", message.get("message", ""))
                with contextlib.suppress(Exception):
                    await Tortoise.close_connections()
            await send(message)

        await self.app(scope, receive, watch)


async def _spawn_app(
    self: task_group.TaskGroup,
    app: Any,
    config: Any,
    scope: Any,
    send: Callable[[Any], Awaitable[None]],
) -> Callable[[Any], Awaitable[None]]:
    """Hypercorn 0.18's TaskGroup.spawn_app, with a LeanQueue for the app's events."""
    app_queue = LeanQueue(config.max_app_queue_size)
    loop = self._loop

    def _call_soon(func: Callable[..., Any], *args: Any) -> Any:
        future = asyncio.run_coroutine_threadsafe(func(*args), loop)
        return future.result()

    self.spawn(
        task_group._handle,
        app,
        config,
        scope,
        app_queue.get,
        send,
        partial(loop.run_in_executor, None),
        _call_soon,
    )
    return app_queue.put


def lean_app_queues() -> None:
    """Hypercorn's per-connection event queue as a LeanQueue (process-wide)."""
    task_group.TaskGroup.spawn_app = _spawn_app  # type: ignore[method-assign]
