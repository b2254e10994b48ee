"""The widget's origins (WIDGET_ORIGINS), which the owner changes in the panel.

The list is one row of the `setting` table, as JSON; until the owner first changes it, it is the
environment's WIDGET_ORIGINS. Every use of it (the frame's `frame-ancestors`, the loader's
status check, the host page check of postMessage'd URLs) asks `current()`, which reads through
a cache kept TTL seconds: a save is seen at once by the process that made it (its cache is
dropped) and within TTL by every other process, with or without Redis, at the cost of one
primary-key read per process every TTL seconds while the widget is in use. A Redis message to
drop the caches would make the other processes see it a second sooner, but it can be lost (a
reconnect), so the TTL would be needed anyway; the TTL alone has nothing that can go wrong.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from tortoise.exceptions import IntegrityError

from app.audit.trail import Origin, record
from app.config import MAX_ORIGIN, OriginError, widget_origin
from app.core.transactions import transaction
from app.errors import InvalidInput, NotFound
from app.i18n import ERRORS, N_
from app.models import Setting

log = logging.getLogger("sohbet.widget")

KEY = "widget_origins"
TTL_SECONDS = 2.0
MAX_ORIGINS = 50

ERRORS.update(
    {
        "origin_empty": N_("Type the address of the site, such as https://shop.example.com."),
        "origin_too_long": N_("That address is too long (at most %(limit)s characters)."),
        "origin_wildcard": N_(
            "Wildcards (*) are not allowed: add each site's address, such as "
            "https://shop.example.com."
        ),
        "origin_scheme": N_(
            "The address must start with https:// (or http://), such as https://shop.example.com."
        ),
        "origin_host": N_("That is not a site's address, such as https://shop.example.com."),
        "origin_port": N_("The port must be a number from 1 to 65535."),
        "origin_path": N_(
            "Only the site's address, without a page: %(origin)s (the widget works on every "
            "page of it)."
        ),
        "origin_taken": N_("%(origin)s is already on the list."),
        "origin_unknown": N_("%(origin)s is not on the list."),
        "origin_too_many": N_("At most %(limit)s sites can be on the list."),
    }
)


def parse(value: object) -> str:
    """A typed origin as browsers write it, or InvalidInput naming what is wrong."""
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        raise InvalidInput("origin_empty")
    try:
        return widget_origin(text)
    except OriginError as exc:
        raise InvalidInput(f"origin_{exc.code}", origin=exc.origin, limit=MAX_ORIGIN) from exc


class WidgetOrigins:
    """The live list, read through a short cache; `add` and `remove` change it for everyone."""

    def __init__(
        self,
        default: Sequence[str],
        ttl: float = TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._default = tuple(default)
        self._ttl = ttl
        self._clock = clock
        self._value: tuple[str, ...] | None = None
        self._read_at = 0.0
        self._lock = asyncio.Lock()  # a burst of requests after expiry makes one read

    def _fresh(self) -> bool:
        return self._value is not None and self._clock() - self._read_at < self._ttl

    async def current(self) -> tuple[str, ...]:
        """The origins now (at most TTL seconds old when another process changed them)."""
        if self._fresh():
            assert self._value is not None
            return self._value
        async with self._lock:
            if not self._fresh():
                try:
                    row = await Setting.get_or_none(key=KEY)
                except Exception:
                    if self._value is None:
                        raise
                    # The database is away: the last list read stays until it is back.
                    log.warning("widget origins: keeping the last list read", exc_info=True)
                else:
                    self._value = self._decode(row)
                self._read_at = self._clock()
        assert self._value is not None
        return self._value

    async def allows(self, origin: str | None) -> str | None:
        """`origin` (as the browser sent it) if it is on the list now."""
        value = (origin or "").rstrip("/")
        return value if value and value in await self.current() else None

    def _decode(self, row: Setting | None) -> tuple[str, ...]:
        if row is None:
            return self._default
        return tuple(str(o) for o in json.loads(row.value))

    async def add(self, value: object, by: Origin | None = None) -> str:
        """Put an origin on the list; InvalidInput (nothing changed) when it can't be. `by`: who,
        for the audit trail (written in the same transaction)."""
        origin = parse(value)

        def change(origins: list[str]) -> list[str]:
            if origin in origins:
                raise InvalidInput("origin_taken", origin=origin)
            if len(origins) >= MAX_ORIGINS:
                raise InvalidInput("origin_too_many", limit=MAX_ORIGINS)
            return [*origins, origin]

        await self._change(change, "widget_origin_add", origin, by)
        return origin

    async def remove(self, value: object, by: Origin | None = None) -> str:
        """Take an origin off the list; NotFound (nothing changed) when it is not on it."""
        origin = str(value or "").strip()

        def change(origins: list[str]) -> list[str]:
            if origin not in origins:
                raise NotFound("origin_unknown", origin=origin[:MAX_ORIGIN])
            return [o for o in origins if o != origin]

        await self._change(change, "widget_origin_remove", origin, by)
        return origin

    async def _change(
        self,
        change: Callable[[list[str]], list[str]],
        action: str,
        origin: str,
        by: Origin | None,
    ) -> None:
        for attempt in (1, 2):
            try:
                origins = await self._save(change, action, origin, by)
            except IntegrityError:
                # Another process saved the first row at the same moment: change that one.
                if attempt == 2:
                    raise
            else:
                self._value, self._read_at = tuple(origins), self._clock()
                return

    async def _save(
        self,
        change: Callable[[list[str]], list[str]],
        action: str,
        origin: str,
        by: Origin | None,
    ) -> list[str]:
        async with transaction() as tx:
            # Locked (PostgreSQL): two saves at once both count, one after the other.
            row = await Setting.select_for_update().using_db(tx).get_or_none(key=KEY)
            origins = change(list(self._decode(row)))
            now = datetime.now(UTC)
            if row is None:
                await Setting.create(
                    key=KEY, value=json.dumps(origins), updated_at=now, using_db=tx
                )
            else:
                row.value, row.updated_at = json.dumps(origins), now
                await row.save(using_db=tx, update_fields=["value", "updated_at"])
            if by is not None:
                await record(action, by=by, target=origin, using_db=tx)
        return origins
