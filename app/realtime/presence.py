"""Live presence: who is connected right now, across tabs and (with Redis) processes."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Protocol

from app.config import Settings


class Presence(Protocol):
    """Counts live sockets per key: a room name (app/chat/rooms.py: "admins", "v:<id>", "list")."""

    async def add(self, key: str, sid: str) -> bool:
        """Register a socket; True when the key just went online."""

    async def remove(self, key: str, sid: str) -> bool:
        """Forget a socket; True when the key just went offline."""

    async def online(self, key: str) -> bool: ...

    async def online_many(self, keys: list[str]) -> dict[str, bool]: ...

    async def members(self, key: str) -> list[str]:
        """The socket ids under a key, in every process."""

    async def prune(self, live: Callable[[str], bool]) -> tuple[int, list[str]]:
        """Drop this process's sockets that `live` says are gone (Repair); return how many,
        and the keys that went offline because of it."""

    async def close(self) -> None: ...


class MemoryPresence:
    """Presence for a single process."""

    def __init__(self) -> None:
        self._sids: dict[str, set[str]] = {}

    async def add(self, key: str, sid: str) -> bool:
        sids = self._sids.setdefault(key, set())
        sids.add(sid)
        return len(sids) == 1

    async def remove(self, key: str, sid: str) -> bool:
        sids = self._sids.get(key)
        if not sids or sid not in sids:
            return False
        sids.discard(sid)
        if not sids:
            del self._sids[key]
            return True
        return False

    async def online(self, key: str) -> bool:
        return bool(self._sids.get(key))

    async def online_many(self, keys: list[str]) -> dict[str, bool]:
        return {key: bool(self._sids.get(key)) for key in keys}

    async def members(self, key: str) -> list[str]:
        return list(self._sids.get(key, ()))

    async def prune(self, live: Callable[[str], bool]) -> tuple[int, list[str]]:
        dropped, offline = 0, []
        for key, sids in list(self._sids.items()):
            gone = {sid for sid in sids if not live(sid)}
            dropped += len(gone)
            sids -= gone
            if gone and not sids:
                del self._sids[key]
                offline.append(key)
        return dropped, offline

    async def close(self) -> None:
        self._sids.clear()


class RedisPresence:
    """Presence shared by several processes: one Redis set per key, members `<process>:<sid>`."""

    def __init__(self, url: str, prefix: str) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(url, decode_responses=True)
        self._prefix = f"{prefix}:presence:"
        self._process = f"{socket.gethostname()}-{os.getpid()}"
        self._mine: dict[str, set[str]] = {}

    def _member(self, sid: str) -> str:
        return f"{self._process}:{sid}"

    def _forget(self, key: str, sids: set[str]) -> None:
        """Drop sockets of this process from a key; a key left empty goes (no set per past
        conversation stays behind in a long-running process)."""
        mine = self._mine.get(key)
        if mine is not None:
            mine -= sids
            if not mine:
                del self._mine[key]

    async def add(self, key: str, sid: str) -> bool:
        self._mine.setdefault(key, set()).add(sid)
        pipe = self._redis.pipeline()
        pipe.sadd(self._prefix + key, self._member(sid))
        pipe.scard(self._prefix + key)
        _, count = await pipe.execute()
        return int(count) == 1

    async def remove(self, key: str, sid: str) -> bool:
        self._forget(key, {sid})
        pipe = self._redis.pipeline()
        pipe.srem(self._prefix + key, self._member(sid))
        pipe.scard(self._prefix + key)
        removed, count = await pipe.execute()
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
        members = await self._redis.smembers(self._prefix + key)
        return [str(member).rpartition(":")[2] for member in members]

    async def prune(self, live: Callable[[str], bool]) -> tuple[int, list[str]]:
        # Only this process can tell whether its own sockets are alive.
        dropped, offline = 0, []
        for key, sids in list(self._mine.items()):
            gone = {sid for sid in sids if not live(sid)}
            if not gone:
                continue
            self._forget(key, gone)
            pipe = self._redis.pipeline()
            for sid in gone:
                pipe.srem(self._prefix + key, self._member(sid))
            pipe.scard(self._prefix + key)
            *removed, count = await pipe.execute()
            dropped += sum(int(n) for n in removed)
            if any(removed) and int(count) == 0:
                offline.append(key)
        return dropped, offline

    async def close(self) -> None:
        # Sockets of this process are gone with it; leave no ghost "online" behind.
        pipe = self._redis.pipeline()
        for key, sids in self._mine.items():
            for sid in sids:
                pipe.srem(self._prefix + key, self._member(sid))
        await pipe.execute()
        await self._redis.aclose()


def create_presence(settings: Settings) -> Presence:
    """Memory presence for one process, Redis presence when REDIS_URL is set."""
    if settings.redis_url:
        return RedisPresence(settings.redis_url, settings.redis_channel)
    return MemoryPresence()
