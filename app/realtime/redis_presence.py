"""Presence shared by several processes through Redis, healed when a process stops beating."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable
from typing import Any

from app.realtime.presence import Announce

log = logging.getLogger("sohbet.presence")


# Drop the sockets of a process whose heartbeat expired, once: the script is atomic, so of the
# processes that notice, the one that removes it from the process set does the work, and a
# process that beat again in the meantime is left alone. Returns [dropped, offline keys...].
_REAP = """
if redis.call('EXISTS', KEYS[1]) == 1 then return {0} end
if redis.call('SREM', KEYS[3], ARGV[2]) == 0 then return {0} end
local mine, dropped, result = ARGV[2] .. ':', 0, {0}
for _, key in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local full, removed = ARGV[1] .. key, 0
  for _, member in ipairs(redis.call('SMEMBERS', full)) do
    if string.sub(member, 1, #mine) == mine then
      redis.call('SREM', full, member)
      removed = removed + 1
    end
  end
  dropped = dropped + removed
  if removed > 0 and redis.call('SCARD', full) == 0 then table.insert(result, key) end
end
redis.call('DEL', KEYS[2])
result[1] = dropped
return result
"""


class RedisPresence:
    """Presence shared by several processes: one Redis set per key, members `<process>:<sid>`.

    Each process renews a heartbeat key that expires after `ttl` seconds; the others drop the
    sockets of a process whose heartbeat is gone (it was killed or froze), so no one stays
    "online" because of a process that no longer runs.
    """

    def __init__(self, url: str, prefix: str, ttl: int = 15) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(url, decode_responses=True)
        self._prefix = f"{prefix}:presence:"
        self._processes = f"{prefix}:presence-processes"
        self._beats = f"{prefix}:presence-beat:"
        self._held = f"{prefix}:presence-held:"
        # A restarted process (same host and pid, as in a container) is a new one.
        self._process = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._ttl = ttl
        self._mine: dict[str, set[str]] = {}
        self._reap: Any = self._redis.register_script(_REAP)
        self._task: asyncio.Task[None] | None = None
        self._announce: Announce | None = None
        self._registered = False

    def _member(self, sid: str) -> str:
        return f"{self._process}:{sid}"

    def _forget(self, key: str, sids: set[str]) -> bool:
        """Drop sockets of this process from a key; True when it holds none there any more (no
        set per past conversation stays behind in a long-running process)."""
        mine = self._mine.get(key)
        if mine is None:
            return False
        mine -= sids
        if not mine:
            del self._mine[key]
            return True
        return False

    async def add(self, key: str, sid: str) -> bool:
        self._mine.setdefault(key, set()).add(sid)
        pipe = self._redis.pipeline()
        pipe.sadd(self._held + self._process, key)
        pipe.sadd(self._prefix + key, self._member(sid))
        pipe.scard(self._prefix + key)
        _, _, count = await pipe.execute()
        return int(count) == 1

    async def remove(self, key: str, sid: str) -> bool:
        pipe = self._redis.pipeline()
        if self._forget(key, {sid}):
            pipe.srem(self._held + self._process, key)
        pipe.srem(self._prefix + key, self._member(sid))
        pipe.scard(self._prefix + key)
        *_, removed, count = await pipe.execute()
        return bool(removed) and int(count) == 0

    async def online(self, key: str) -> bool:
        return bool(await self._redis.scard(self._prefix + key))

    async def online_many(self, keys: list[str]) -> dict[str, bool]:
        if not keys:
            return {}
        pipe = self._redis.pipeline()
        for key in keys:
            pipe.scard(self._prefix + key)
        counts = await pipe.execute()
        return {key: bool(count) for key, count in zip(keys, counts, strict=True)}

    async def members(self, key: str) -> list[str]:
        # A socket of a process that stopped beating is gone, even before the reaper drops it.
        members = [
            str(member).rpartition(":") for member in await self._redis.smembers(self._prefix + key)
        ]
        beating = await self.beating(list({process for process, _, _ in members}))
        return [sid for process, _, sid in members if process in beating]

    @property
    def process(self) -> str:
        return self._process

    async def beating(self, processes: list[str]) -> set[str]:
        others = [p for p in processes if p != self._process]
        pipe = self._redis.pipeline()
        for process in others:
            pipe.exists(self._beats + process)
        alive = await pipe.execute() if others else []
        return {self._process} & set(processes) | {
            p for p, up in zip(others, alive, strict=True) if up
        }

    async def prune(self, live: Callable[[str], bool]) -> tuple[int, list[str]]:
        # Only this process can tell whether its own sockets are alive; of the others, only
        # whether they still beat.
        dropped, offline = 0, []
        for key, sids in list(self._mine.items()):
            gone = {sid for sid in sids if not live(sid)}
            if not gone:
                continue
            pipe = self._redis.pipeline()
            if self._forget(key, gone):
                pipe.srem(self._held + self._process, key)
            for sid in gone:
                pipe.srem(self._prefix + key, self._member(sid))
            pipe.scard(self._prefix + key)
            *removed, count = await pipe.execute()
            dropped += sum(int(n) for n in removed[-len(gone) :])
            if any(removed[-len(gone) :]) and int(count) == 0:
                offline.append(key)
        reaped, reaped_offline = await self._reap_dead()
        leftovers, leftover_offline = await self._drop_orphans()
        return dropped + reaped + leftovers, offline + reaped_offline + leftover_offline

    async def _reap_dead(self) -> tuple[int, list[str]]:
        """Drop the sockets of every registered process whose heartbeat expired."""
        registered = await self._redis.smembers(self._processes)
        others = [str(p) for p in registered if str(p) != self._process]
        if not others:
            return 0, []
        pipe = self._redis.pipeline()
        for process in others:
            pipe.exists(self._beats + process)
        alive = await pipe.execute()
        dropped, offline = 0, []
        for process, beating in zip(others, alive, strict=True):
            if beating:
                continue
            keys = [self._beats + process, self._held + process, self._processes]
            result = await self._reap(keys=keys, args=[self._prefix, process])
            dropped += int(result[0])
            offline += [str(key) for key in result[1:]]
            if result[0]:
                log.info("presence: %s stopped beating; %s sockets dropped", process, result[0])
        return dropped, offline

    async def _drop_orphans(self) -> tuple[int, list[str]]:
        """Drop members of any process without a heartbeat that no process registered (left
        by a version that kept no heartbeat, or by a Redis that lost the registry)."""
        dropped, offline = 0, []
        # A registered process is the reaper's (which lets it come back if it only froze).
        registered = {str(p) for p in await self._redis.smembers(self._processes)}
        async for full in self._redis.scan_iter(match=self._prefix + "*", count=500):
            members = await self._redis.smembers(full)
            processes = {str(m).rpartition(":")[0] for m in members} - registered - {self._process}
            if not processes:
                continue
            pipe = self._redis.pipeline()
            for process in processes:
                pipe.exists(self._beats + process)
            dead = {p for p, up in zip(processes, await pipe.execute(), strict=True) if not up}
            gone = [m for m in members if str(m).rpartition(":")[0] in dead]
            if not gone:
                continue
            pipe = self._redis.pipeline()
            pipe.srem(full, *gone)
            pipe.scard(full)
            removed, count = await pipe.execute()
            dropped += int(removed)
            if removed and int(count) == 0:
                offline.append(str(full)[len(self._prefix) :])
        return dropped, offline

    async def _beat(self) -> list[str]:
        """Renew this process's heartbeat; if it had been taken for dead (frozen longer than
        the TTL), put its sockets back and return the keys that came online again."""
        pipe = self._redis.pipeline()
        pipe.set(self._beats + self._process, "1", ex=self._ttl)
        pipe.sadd(self._processes, self._process)
        _, added = await pipe.execute()
        if not added or not self._registered:
            self._registered = True
            return []
        log.warning("presence: this process was taken for dead; its sockets are back")
        back = []
        for key, sids in list(self._mine.items()):
            pipe = self._redis.pipeline()
            pipe.sadd(self._held + self._process, key)
            pipe.sadd(self._prefix + key, *(self._member(sid) for sid in sids))
            pipe.scard(self._prefix + key)
            _, restored, count = await pipe.execute()
            if restored and int(count) == int(restored):
                back.append(key)
        return back

    async def start(self, announce: Announce) -> None:
        self._announce = announce
        try:
            await self._beat()
        except Exception:
            # Redis not reachable yet: the loop's next beat registers this process.
            log.warning("presence: first heartbeat failed", exc_info=True)
        self._task = asyncio.get_running_loop().create_task(self._heal())

    async def _heal(self) -> None:
        """Beat every third of the TTL, and drop the sockets of processes that stopped."""
        assert self._announce is not None
        while True:
            await asyncio.sleep(self._ttl / 3)
            try:
                back = await self._beat()
                _, offline = await self._reap_dead()
                if back or offline:
                    await self._announce(back, offline)
            except Exception:
                # Redis or the database away for a moment: the next beat tries again.
                log.warning("presence: heartbeat failed", exc_info=True)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # Sockets of this process are gone with it; leave no ghost "online" behind.
        pipe = self._redis.pipeline()
        for key, sids in self._mine.items():
            for sid in sids:
                pipe.srem(self._prefix + key, self._member(sid))
        pipe.delete(self._beats + self._process, self._held + self._process)
        pipe.srem(self._processes, self._process)
        await pipe.execute()
        await self._redis.aclose()
