"""Rate budgets: in this process, or in Redis so that every process shares them."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Protocol, cast

from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.storage.redis.redispy import RedispyBridge
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

log = logging.getLogger("sohbet.ratelimit")

# Keys are forgotten once their window has passed, checked when the table has doubled since the
# last sweep (amortised: a sweep on every event would cost O(keys) per event).
SWEEP_AT = 10_000


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
            self._events = {k: v for k, v in self._events.items() if v[-1] > cutoff}
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


class SharedBudget:
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
        self.storage = storage
        self.acquires = acquires or _Acquires(storage)
        self.limiter = MovingWindowRateLimiter(storage)
        self.redis = redis
        self.item = RateLimitItemPerSecond(limit, seconds, namespace=name)
        self.fallback = LocalBudget(limit, seconds)
        self._failing = False

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

    def _failed(self) -> None:
        if not self._failing:
            self._failing = True
            log.warning("Redis unreachable: %s counted per process", self.item.namespace)

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            log.warning("Redis reachable again: %s shared again", self.item.namespace)


class Limiter:
    """Makes the app's budgets: in Redis when REDIS_URL is set, so N processes allow what one
    would; else in memory (one process, which is all a deployment without Redis may run)."""

    def __init__(self, redis_url: str = "", prefix: str = "sohbet") -> None:
        self.storage: RedisStorage | None = None
        self._redis: Redis | None = None
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

    @property
    def shared(self) -> bool:
        """True if budgets are counted where every process sees them."""
        return self.storage is not None

    def budget(self, name: str, limit: int, seconds: int) -> Budget:
        """A budget with the same meaning in every process (`name` keeps budgets apart)."""
        if self.storage is None or self._redis is None:
            return LocalBudget(limit, seconds)
        if self._acquires is None:
            self._acquires = _Acquires(self.storage)
        return SharedBudget(self.storage, self._redis, name, limit, seconds, self._acquires)

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
