"""Serving-layer settings Hypercorn does not expose.

Hypercorn offers permessage-deflate to every WebSocket client and browsers always accept it.
For chat traffic (frames of a few hundred bytes) it saves little bandwidth but costs a zlib
compressor and decompressor per connection: measured with bench/chat_load.py, an idle
Socket.IO connection took ~145-150 KiB with it and ~36-42 KiB without, and the server spent
~3-5 % of its CPU compressing frames under load. So it is declined unless WS_COMPRESSION=1.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from hypercorn.protocol import ws_stream
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope
from tortoise import Tortoise
from wsproto.extensions import PerMessageDeflate

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
