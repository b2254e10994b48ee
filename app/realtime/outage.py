"""A database outage as the socket handlers see it: logged when it starts and when it ends.

While the database cannot be reached every event that needs it fails, and a page retries its
sends: a traceback for each failure buried the log (hundreds a minute) without saying more than
the first. One warning says the outage began, a reminder follows each minute it lasts, and the
first event that succeeds afterwards logs how long it lasted and what failed, by event.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

from asyncpg import exceptions as pg
from tortoise.exceptions import DBConnectionError, OperationalError

# What a handler sees when the database is away: the ORM's or the driver's errors (asyncpg's
# connection and pool states), and, where nothing else does network I/O, the connection refused
# or lost as it comes from the socket (OSError).
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    DBConnectionError,
    OperationalError,
    pg.PostgresConnectionError,
    pg.OperatorInterventionError,
    pg.InterfaceError,
)
DATABASE_DOWN: tuple[type[BaseException], ...] = (OSError, *DATABASE_ERRORS)

REMIND_SECONDS = 60.0


class OutageLog:
    """Counts the events that failed because the database was away, and logs the outage."""

    def __init__(
        self,
        log: logging.Logger,
        where: str,
        errors: tuple[type[BaseException], ...] = DATABASE_DOWN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = log
        self.where = where
        self.errors = errors
        self.clock = clock
        self.started: float | None = None
        self.reminded = 0.0
        self.failed: Counter[str] = Counter()

    def failure(self, event: str, exc: BaseException) -> bool:
        """Count a failed event; False when its cause is not the database (log it yourself)."""
        if not isinstance(exc, self.errors):
            return False
        now = self.clock()
        self.failed[event] += 1
        if self.started is None:
            self.started = self.reminded = now
            self.log.warning(
                "%s: the database cannot be reached (%s: %s); events fail until it answers",
                self.where,
                type(exc).__name__,
                exc,
            )
        elif now - self.reminded >= REMIND_SECONDS:
            self.reminded = now
            self.log.warning(
                "%s: the database still cannot be reached after %.0f s: %s",
                self.where,
                now - self.started,
                self._counts(),
            )
        return True

    def success(self) -> None:
        """An event succeeded: an outage in progress is over."""
        if self.started is None:
            return
        self.log.warning(
            "%s: the database answers again after %.1f s; failed meanwhile: %s",
            self.where,
            self.clock() - self.started,
            self._counts(),
        )
        self.started = None
        self.failed.clear()

    def _counts(self) -> str:
        total = sum(self.failed.values())
        each = ", ".join(f"{event} {n}" for event, n in self.failed.most_common())
        return f"{total} events ({each})"
