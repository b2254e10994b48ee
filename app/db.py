"""Database lifecycle: tortoise init, migrations and close, owned by a `while_serving` generator."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from quart import Quart
from tortoise import Tortoise

from app.migrations import migrate

log = logging.getLogger("sohbet.db")


def tortoise_url(url: str) -> str:
    """Normalise DATABASE_URL: PostgreSQL scheme aliases; SQLite pragmas for speed and safety."""
    if url.startswith("postgresql://"):
        url = "postgres://" + url[len("postgresql://") :]
    if url.startswith("sqlite://") and ":memory:" not in url:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        # WAL with synchronous=NORMAL: a commit survives a process crash; ~3x the write rate.
        query.setdefault("journal_mode", "WAL")
        query.setdefault("synchronous", "NORMAL")
        query.setdefault("busy_timeout", "5000")
        path = url[len("sqlite://") :].split("?", 1)[0]
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        url = urlunsplit(parts._replace(query=urlencode(query)))
    return url


async def open_database(url: str) -> None:
    """Connect tortoise to DATABASE_URL and bring the schema up to date."""
    await Tortoise.init(
        db_url=tortoise_url(url),
        modules={"models": ["app.models"]},
        use_tz=True,
        timezone="UTC",
        # Socket.IO handlers and background loops run in tasks made outside tortoise's context.
        _enable_global_fallback=True,
    )
    applied = await migrate(Tortoise.get_connection("default"))
    if applied:
        log.info("database migrated to version %d", applied[-1])


def init_app(app: Quart) -> None:
    """Own the database connection for as long as the app serves."""

    @app.while_serving
    async def database() -> AsyncGenerator[None, None]:
        await open_database(app.config["SOHBET"].database_url)
        yield
        await Tortoise.close_connections()
