"""Serving-layer settings Hypercorn does not expose (installed by app.realtime.patches).

Hypercorn offers permessage-deflate to every WebSocket client and browsers always accept it.
For chat traffic (frames of a few hundred bytes) it saves little bandwidth but costs a zlib
compressor and decompressor per connection: measured with bench/chat_load.py, an idle
Socket.IO connection took ~145-150 KiB with it and ~36-42 KiB without, and the server spent
~3-5 % of its CPU compressing frames under load. So it is declined unless WS_COMPRESSION=1.

Hypercorn also gives every connection an asyncio.Queue of ASGI events for the app (four
deques, ~2.5 KiB, kept as long as a WebSocket lives): `lean_app_queues` makes it a LeanQueue
(app/realtime/lean_queue.py) of the same bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from hypercorn.asyncio import task_group
from hypercorn.protocol import ws_stream
from wsproto.extensions import PerMessageDeflate

from app.realtime.lean_queue import LeanQueue


class _DeclinedDeflate(PerMessageDeflate):
    """permessage-deflate that turns every offer down (the handshake then names no extension)."""

    def accept(self, offer: str) -> None:
        return None


_ORIGINAL = PerMessageDeflate


def websocket_compression(enabled: bool) -> None:
    """Let Hypercorn negotiate permessage-deflate, or decline it (process-wide)."""
    # Hypercorn looks the class up in its module at each handshake (ws_stream.WSStream.accept).
    ws_stream.PerMessageDeflate = _ORIGINAL if enabled else _DeclinedDeflate  # type: ignore[attr-defined]


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
