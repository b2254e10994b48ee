"""Rate budgets, counted where every process that enforces them sees them.

`Limiter` picks where, from the deployment's settings:

- **Redis** when `REDIS_URL` is set (what several processes need anyway): moving windows with
  the `limits` library, one round trip per counted event.
- **PostgreSQL** when there is no Redis but the database is PostgreSQL: a moving window per key
  in the `rate_window` table, changed by one atomic statement (an upsert whose update only
  happens while the window has room), so processes sharing the database share the budgets and
  a restart does not hand anyone a fresh one. No PyPI package offers a SQL storage for
  `limits` (it has memory, Redis, Valkey, Memcached and MongoDB), and its storage interface asks
  for fixed-window counters we would not use and has no refund, so this is our own, with the
  same meaning as the Redis one (README "Production", Budgets without Redis). The table is
  UNLOGGED: no write-ahead-log flush per event (3.9 ms of latency per hit here, logged);
  PostgreSQL empties it only after its own crash or on a standby taking over.
  The per-message budget (`hot`) stays in memory there: a round trip costs ~140 µs of our
  CPU and ~120 µs of PostgreSQL's on every visitor message (`bench/probe_db_budget.py`).
  It is a SeededBudget: a key's recent events are read once per process from what the
  database already holds (the stored messages), so a restart does not reset it either.
- **Memory** otherwise (SQLite: one process), exact for that process; the per-message budget
  is seeded from the stored messages there too.

Budgets whose keys live in one process only (a socket id) are always in memory. If Redis or
the database cannot be reached, each process counts on its own until it can (one warning).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol, cast

from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.storage.redis.redispy import RedispyBridge
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError
from tortoise import Tortoise
from tortoise.exceptions import BaseORMException

log = logging.getLogger("sohbet.ratelimit")

# Keys are forgotten once their window has passed, checked when the table has doubled since the
# last sweep (amortised: a sweep on every event would cost O(keys) per event).
SWEEP_AT = 10_000
# Rows of the database windows whose newest event has left its window are deleted this often
# (each process; one DELETE).
DB_SWEEP_SECONDS = 300.0


class SlidingWindow:
    """At most `limit` events per `seconds` for each key, in this process's memory."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self._events: dict[str, deque[float]] = {}
        self._sweep_at = SWEEP_AT

    def __len__(self) -> int:
        """How many keys are remembered."""
        return len(self._events)

    def __contains__(self, key: str) -> bool:
        return key in self._events

    def seed(self, key: str, ages: Iterable[float]) -> None:
        """Remember events counted elsewhere (`ages`: seconds ago), unless the key is known."""
        if key not in self._events:
            now = time.monotonic()
            self._events[key] = deque(sorted(now - age for age in ages if age < self.seconds))

    def wait(self, key: str) -> float:
        """0 if another event is allowed now, else the seconds until it is."""
        now = time.monotonic()
        events = self._events.get(key)
        if not events:
            return 0.0
        while events and events[0] <= now - self.seconds:
            events.popleft()
        return events[0] + self.seconds - now if len(events) >= self.limit else 0.0

    def add(self, key: str) -> None:
        """Record an event."""
        now = time.monotonic()
        self._events.setdefault(key, deque()).append(now)
        if len(self._events) > self._sweep_at:
            cutoff = now - self.seconds
            self._events = {k: v for k, v in self._events.items() if v and v[-1] > cutoff}
            self._sweep_at = max(SWEEP_AT, 2 * len(self._events))

    def hit(self, key: str) -> float:
        """Record an event if allowed; return 0 if it was, else the seconds to wait."""
        wait = self.wait(key)
        if not wait:
            self.add(key)
        return wait

    def refund(self, key: str) -> None:
        """Take back the newest event."""
        events = self._events.get(key)
        if events:
            events.pop()


class Budget(Protocol):
    """At most so many events per window for each key."""

    async def hit(self, key: str) -> float:
        """Count an event if the budget allows it: 0 if it did, else the seconds to wait."""
        ...

    async def refund(self, key: str) -> None:
        """Take back one counted event (a try that turned out not to count)."""
        ...


class LocalBudget:
    """A budget counted in this process: exact for one process, or for per-socket keys.

    Our own window rather than limits' async memory storage: that one starts a sweep of every
    key after each hit, which costs more than the message it guards once many keys are live.
    """

    def __init__(self, limit: int, seconds: int) -> None:
        self.window = SlidingWindow(limit, seconds)

    async def hit(self, key: str) -> float:
        """Count an event if the budget allows it: 0 if it did, else the seconds to wait."""
        return self.window.hit(key)

    async def refund(self, key: str) -> None:
        """Take back one counted event (a try that turned out not to count)."""
        self.window.refund(key)


class SeededBudget(LocalBudget):
    """A budget counted in this process, which learns a key's recent events from `seed` (the
    ages, in seconds, of the events that already count, e.g. stored messages) the first time
    it sees the key: a restarted process, or another one, picks the budget up where it stood
    instead of from zero, at one query per key per process rather than one per event."""

    def __init__(
        self, limit: int, seconds: int, seed: Callable[[str], Awaitable[list[float]]]
    ) -> None:
        super().__init__(limit, seconds)
        self.seed = seed

    async def hit(self, key: str) -> float:
        """Count an event if the budget allows it: 0 if it did, else the seconds to wait."""
        if key not in self.window:
            try:
                ages = await self.seed(key)
            except (BaseORMException, OSError):
                ages = []  # the database is away: what it holds cannot be written to anyway
            self.window.seed(key, ages)
        return self.window.hit(key)


class _Fallback:
    """Counts in this process while the shared store cannot be reached (one warning each way)."""

    def __init__(self, store: str, name: str, limit: int, seconds: int) -> None:
        self.store = store
        self.name = name
        self.fallback = LocalBudget(limit, seconds)
        self._failing = False

    def _failed(self) -> None:
        if not self._failing:
            self._failing = True
            log.warning("%s unreachable: %s counted per process", self.store, self.name)

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            log.warning("%s reachable again: %s shared again", self.store, self.name)


class _Acquires:
    """limits' moving-window acquire, for every hit made in one turn of the event loop, in one
    pipeline: one round trip to Redis for all of them instead of one each (a message each).

    The same Lua script on the same keys as `MovingWindowRateLimiter.hit` (limits' own, run by
    its SHA; a Redis that lost it, after a restart, gets it loaded again by limits' own call),
    so a window filled this way reads the same to limits' `get_window_stats` and to a refund.
    Errors arrive as limits' StorageError, as from `hit`.
    """

    def __init__(self, storage: RedisStorage) -> None:
        self.storage = storage
        self._queue: list[tuple[str, int, int, asyncio.Future[bool]]] = []
        self._task: asyncio.Task[None] | None = None
        self.round_trips = 0  # Redis calls made (tests)

    async def acquire(self, key: str, limit: int, expiry: int) -> bool:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bool] = loop.create_future()
        self._queue.append((key, limit, expiry, done))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(), name="budget-acquire")
        return await done

    async def _run(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                results = await self._send(batch)
            except Exception as exc:
                error = exc if isinstance(exc, StorageError) else StorageError(exc)
                for *_, done in batch:
                    if not done.done():
                        done.set_exception(error)
                continue
            for (*_, done), acquired in zip(batch, results, strict=True):
                if not done.done():
                    done.set_result(acquired)

    async def _send(self, batch: list[tuple[str, int, int, asyncio.Future[bool]]]) -> list[bool]:
        bridge = self.storage.bridge
        # Limiter asks limits for redis-py (`implementation="redispy"`).
        assert isinstance(bridge, RedispyBridge)
        script = bridge.lua_acquire_moving_window
        keys = [bridge.prefixed_key(key) for key, *_ in batch]
        now = time.time()
        try:
            self.round_trips += 1
            if len(batch) == 1:
                # Alone in its moment: limits' own call (a pipeline costs more for one).
                _, limit, expiry, _ = batch[0]
                return [bool(await script(keys, [now, limit, expiry, 1]))]
            pipe = cast(Redis, bridge.get_connection()).pipeline(transaction=False)
            for name, (_, limit, expiry, _) in zip(keys, batch, strict=True):
                pipe.evalsha(script.sha, 1, name, now, limit, expiry, 1)
            replies = await pipe.execute(raise_on_error=False)
            results: list[bool] = []
            for name, (_, limit, expiry, _), reply in zip(keys, batch, replies, strict=True):
                if isinstance(reply, NoScriptError):
                    # Redis restarted without the script: limits' call loads it again.
                    reply = await script([name], [now, limit, expiry, 1])
                elif isinstance(reply, Exception):
                    raise reply
                results.append(bool(reply))
            return results
        except RedisError as exc:
            raise StorageError(exc) from exc


class SharedBudget(_Fallback):
    """A budget counted in Redis (a moving window, as the local one), seen by every process.

    While Redis cannot be reached, this process counts on its own rather than refusing
    everyone or letting everything through.
    """

    def __init__(
        self,
        storage: RedisStorage,
        redis: Redis,
        name: str,
        limit: int,
        seconds: int,
        acquires: _Acquires | None = None,
    ) -> None:
        super().__init__("Redis", name, limit, seconds)
        self.storage = storage
        self.acquires = acquires or _Acquires(storage)
        self.limiter = MovingWindowRateLimiter(storage)
        self.redis = redis
        self.item = RateLimitItemPerSecond(limit, seconds, namespace=name)

    async def hit(self, key: str) -> float:
        """Count an event if the budget allows it: 0 if it did, else the seconds to wait."""
        try:
            # One round trip when allowed; the wait is only looked up for a refusal.
            if await self._acquire(key):
                self._recovered()
                return 0.0
            stats = await self.limiter.get_window_stats(self.item, key)
        except StorageError:
            self._failed()
            return await self.fallback.hit(key)
        self._recovered()
        # An entry that expired between the two calls leaves a wait of 0: ask again later.
        return max(stats.reset_time - time.time(), 0.001)

    async def _acquire(self, key: str) -> bool:
        """limits' `MovingWindowRateLimiter.hit`, sent with the other hits of this moment."""
        return await self.acquires.acquire(
            self.item.key_for(key), self.item.amount, self.item.get_expiry()
        )

    async def refund(self, key: str) -> None:
        """Take back one counted event (a try that turned out not to count)."""
        # The moving window is a list of timestamps, newest first (limits' acquire script):
        # dropping the newest leaves the count right whichever process added it.
        name = self.storage.bridge.prefixed_key(self.item.key_for(key))
        try:
            await self.redis.lpop(name)
        except RedisError:
            self._failed()
            await self.fallback.refund(key)


# The window's row gains the event only while fewer than $2 events are younger than $3 seconds;
# ON CONFLICT DO UPDATE locks the row and evaluates its WHERE on the newest version, so
# concurrent hits from any process are counted one after the other. Times are the database's
# clock (one clock for every process). Returns 1 if the event was recorded, else 0.
_ACQUIRE = """
WITH counted AS (
    INSERT INTO "rate_window" AS w ("key", "hits", "expires_at")
    VALUES ($1, ARRAY[EXTRACT(EPOCH FROM clock_timestamp())::float8],
            clock_timestamp() + make_interval(secs => $3))
    ON CONFLICT ("key") DO UPDATE
    SET "hits" = ARRAY(SELECT h FROM unnest(w."hits") AS h WHERE h > EXCLUDED."hits"[1] - $3)
                 || EXCLUDED."hits"[1],
        "expires_at" = EXCLUDED."expires_at"
    WHERE (SELECT count(*) FROM unnest(w."hits") AS h WHERE h > EXCLUDED."hits"[1] - $3) < $2
    RETURNING 1
)
SELECT count(*) AS "n" FROM counted
"""
_WINDOW = """
SELECT "hits", EXTRACT(EPOCH FROM clock_timestamp())::float8 AS "now"
FROM "rate_window" WHERE "key" = $1
"""
# The newest event is the last one appended.
_REFUND = """
UPDATE "rate_window" SET "hits" = "hits"[1:cardinality("hits") - 1]
WHERE "key" = $1 AND cardinality("hits") > 0
"""
_SWEEP = 'DELETE FROM "rate_window" WHERE "expires_at" < clock_timestamp()'


class DatabaseWindows:
    """Moving windows in PostgreSQL's `rate_window` table, one row per budget and key.

    A row holds the times of the events still in its window (at most the limit of them), so
    one statement both counts and records; rows whose window has passed are swept every
    DB_SWEEP_SECONDS by each process.
    """

    def __init__(self) -> None:
        self._sweep_after = time.monotonic() + DB_SWEEP_SECONDS

    @staticmethod
    def row_key(name: str, key: str) -> str:
        """The row's key: the budget's name and a hash of the key (an address, a session
        token: kept out of the database as they are)."""
        return f"{name}:{hashlib.sha256(key.encode()).hexdigest()[:40]}"

    async def acquire(self, row: str, limit: int, seconds: int) -> bool:
        """Record an event if fewer than `limit` are in the window; True if it was recorded."""
        conn = Tortoise.get_connection("default")
        _, rows = await conn.execute_query(_ACQUIRE, [row, limit, float(seconds)])
        if time.monotonic() > self._sweep_after:
            self._sweep_after = time.monotonic() + DB_SWEEP_SECONDS
            await conn.execute_query(_SWEEP)
        return bool(rows[0]["n"])

    async def wait(self, row: str, limit: int, seconds: int) -> float:
        """Seconds until the window has room again (0 if it has now)."""
        _, rows = await Tortoise.get_connection("default").execute_query(_WINDOW, [row])
        if not rows:
            return 0.0
        now = float(rows[0]["now"])
        live = sorted(h for h in rows[0]["hits"] if h > now - seconds)
        if len(live) < limit:
            return 0.0
        return float(live[-limit] + seconds - now)

    async def refund(self, row: str) -> None:
        """Take back the newest event."""
        await Tortoise.get_connection("default").execute_query(_REFUND, [row])


class DatabaseBudget(_Fallback):
    """A budget counted in PostgreSQL (a moving window, as the others), seen by every process
    on the database and kept across restarts."""

    def __init__(self, windows: DatabaseWindows, name: str, limit: int, seconds: int) -> None:
        super().__init__("The database", name, limit, seconds)
        self.windows = windows
        self.limit = limit
        self.seconds = seconds

    async def hit(self, key: str) -> float:
        """Count an event if the budget allows it: 0 if it did, else the seconds to wait."""
        row = self.windows.row_key(self.name, key)
        try:
            if await self.windows.acquire(row, self.limit, self.seconds):
                self._recovered()
                return 0.0
            wait = await self.windows.wait(row, self.limit, self.seconds)
        except (BaseORMException, OSError):
            self._failed()
            return await self.fallback.hit(key)
        self._recovered()
        # An event that left the window between the two statements: ask again later.
        return max(wait, 0.001)

    async def refund(self, key: str) -> None:
        """Take back one counted event (a try that turned out not to count)."""
        try:
            await self.windows.refund(self.windows.row_key(self.name, key))
        except (BaseORMException, OSError):
            self._failed()
            await self.fallback.refund(key)


class Limiter:
    """Makes the app's budgets: in Redis when REDIS_URL is set, else in PostgreSQL when the
    database is PostgreSQL (processes on one database share them, a restart keeps them), else
    in memory (SQLite: one process)."""

    def __init__(self, redis_url: str = "", prefix: str = "sohbet", database_url: str = "") -> None:
        self.storage: RedisStorage | None = None
        self._redis: Redis | None = None
        self.database: DatabaseWindows | None = None
        self._acquires: _Acquires | None = None
        if redis_url:
            # redis-py's asyncio client (the one the Socket.IO manager uses); its errors arrive
            # as StorageError.
            self.storage = RedisStorage(
                f"async+{redis_url}",
                implementation="redispy",
                key_prefix=f"{prefix}:limits",
                wrap_exceptions=True,
            )
            # For what limits has no call for (a refund); connects on first use.
            self._redis = Redis.from_url(redis_url)
        elif database_url.startswith(("postgres://", "postgresql://")):
            self.database = DatabaseWindows()
        log.info(
            "rate budgets counted in %s",
            {
                "redis": "Redis",
                "database": "PostgreSQL (the per-message budget in this process's memory)",
                "memory": "this process's memory",
            }[self.where],
        )

    @property
    def shared(self) -> bool:
        """True if budgets are counted where every process sees them."""
        return self.storage is not None or self.database is not None

    @property
    def where(self) -> str:
        """Where budgets are counted: "redis", "database" or "memory"."""
        if self.storage is not None:
            return "redis"
        return "database" if self.database is not None else "memory"

    def budget(
        self,
        name: str,
        limit: int,
        seconds: int,
        *,
        hot: bool = False,
        seed: Callable[[str], Awaitable[list[float]]] | None = None,
    ) -> Budget:
        """A budget with the same meaning in every process (`name` keeps budgets apart).

        `hot`: checked on every chat message, so never a database round trip per event (see
        the module docstring): in Redis when there is one, else in this process's memory,
        learning each key's recent events from `seed` once (SeededBudget), if given.
        """
        if self.storage is not None and self._redis is not None:
            if self._acquires is None:
                self._acquires = _Acquires(self.storage)
            return SharedBudget(self.storage, self._redis, name, limit, seconds, self._acquires)
        if self.database is not None and not hot:
            return DatabaseBudget(self.database, name, limit, seconds)
        if seed is not None:
            return SeededBudget(limit, seconds, seed)
        return LocalBudget(limit, seconds)

    def local(self, limit: int, seconds: int) -> Budget:
        """A budget for keys that live in one process only (a socket id)."""
        return LocalBudget(limit, seconds)

    async def close(self) -> None:
        """Close the Redis connections, if any."""
        if self._redis is not None:
            await self._redis.aclose()
        if self.storage is not None:
            client = getattr(self.storage.bridge, "storage", None)
            if isinstance(client, Redis):
                await client.aclose()
