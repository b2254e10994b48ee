"""Live presence: who is connected right now, across tabs and (with Redis) processes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from app.config import Settings

# `announce(online, offline)`: keys that changed without a socket event of this process.
Announce = Callable[[list[str], list[str]], Awaitable[None]]


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

    @property
    def process(self) -> str:
        """This process's name among those sharing the presence."""

    async def beating(self, processes: list[str]) -> set[str]:
        """Of these processes, those whose heartbeat has not expired (this one always is)."""

    async def prune(self, live: Callable[[str], bool]) -> tuple[int, list[str]]:
        """Drop this process's sockets that `live` says are gone, and any socket of a process
        that no longer runs (Repair); return how many, and the keys that went offline."""

    async def start(self, announce: Announce) -> None:
        """Begin healing: `announce` hears of keys that changed because another process died
        (or this one was taken for dead and came back)."""

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

    @property
    def process(self) -> str:
        return "local"

    async def beating(self, processes: list[str]) -> set[str]:
        # One process: every socket is this one's.
        return set(processes)

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

    async def start(self, announce: Announce) -> None:
        return None  # one process: its sockets end with it

    async def close(self) -> None:
        self._sids.clear()


def create_presence(settings: Settings) -> Presence:
    """Memory presence for one process, Redis presence when REDIS_URL is set."""
    if settings.redis_url:
        from app.realtime.redis_presence import RedisPresence

        return RedisPresence(
            settings.redis_url, settings.redis_channel, settings.presence_ttl_seconds
        )
    return MemoryPresence()
