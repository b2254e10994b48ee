"""How the bot polls: getUpdates answered at once with nothing must not make it spin."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from app.telegram.inbox import EMPTY_POLL_PAUSE
from tests.support.fake_telegram import FakeTelegram
from tests.support.server import sqlite_server
from tests.support.telegram import telegram_env, with_text

WINDOW = 1.5


async def test_no_spin_when_get_updates_does_not_long_poll(tmp_path: Path) -> None:
    async with FakeTelegram(long_poll=False) as fake:
        env = telegram_env(fake, TELEGRAM_POLL_TIMEOUT="10")
        async with sqlite_server(tmp_path, env):
            await fake.wait_for_call("getUpdates", timeout=30)
            started = time.monotonic()
            await asyncio.sleep(WINDOW)  # a window to count polls in, not a wait for the product
            polls = [c for c in fake.calls("getUpdates") if c.at >= started]
            elapsed = time.monotonic() - started
            assert len(polls) <= elapsed / EMPTY_POLL_PAUSE + 1, f"{len(polls)} in {elapsed:.1f}s"

            # Still polling, and what the operator writes still arrives.
            await fake.admin_command("/help")
            await fake.wait_for_sent(with_text("/list"), timeout=10)
