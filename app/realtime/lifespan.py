"""The app's lifespan as the process sees it: a failed start must end the process."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope
from tortoise import Tortoise

log = logging.getLogger("sohbet.serving")


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
