"""The Telegram operator console: an aiogram bot bridged to the chat's single write path.

aiogram is imported only when a bot is configured: its types take ~3.5 s of CPU and ~100 MB
to import, which a server without Telegram (the default run, most tests) should not pay.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

from quart import Quart

from app.chat.service import ChatService
from app.config import Settings
from app.core.clock import Clock
from app.media.service import MediaService
from app.replies.service import SavedReplies

if TYPE_CHECKING:
    from app.admin.operators import Operators
    from app.telegram.bridge import TelegramBridge
    from app.telegram.outbox import Outbox


def build_outbox(settings: Settings, clock: Clock) -> Outbox | None:
    """The outbox chat writes Telegram's rows into (in its own transactions), if a bot is set."""
    if settings.telegram is None:
        return None
    from app.telegram.outbox import Outbox

    return Outbox(clock)


def init_app(
    app: Quart,
    chat: ChatService,
    outbox: Outbox | None,
    media: MediaService,
    clock: Clock,
    replies: SavedReplies,
    operators: Operators,
) -> TelegramBridge | None:
    """Build the bridge around the outbox when a bot is set, and run it while the app serves."""
    settings: Settings = app.config["SOHBET"]
    if outbox is None:
        return None
    from app.telegram.backlog import late_backlog
    from app.telegram.bridge import TelegramBridge

    bridge = TelegramBridge(settings, chat, outbox, clock, media, replies)
    # The linking handler (app/telegram/linking.py) gets the team by name.
    bridge.dispatcher["operators"] = operators
    # The panel's Telegram banner reads the backlog when the page is rendered.
    app.jinja_env.globals["telegram_late_backlog"] = lambda: late_backlog(clock)

    @app.while_serving
    async def telegram() -> AsyncGenerator[None, None]:
        async for _ in bridge.serve():
            yield

    return bridge
