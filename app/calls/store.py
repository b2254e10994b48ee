"""Where call state lives so every process sees it: memory for one process, Redis for several.

A call is a hash of its fields (with a TTL, so a call whose process died ends by itself); the
one-winner rules are keys set only if absent: `conv:<id>` (one call per conversation),
`sid:<sid>` (a socket in a call is busy on every process), `answer:<call>` (one accept, or the
ring's end, wins) and `ended:<call>` (a call ends, and leaves its message, once). The calls not
yet ended are listed (`live`), so any process can end one whose ring ran out or whose party's
process died.
"""

from __future__ import annotations

import json
import time
from typing import Any, Protocol, cast

from app.calls.state import P2P, Call
from app.config import Settings


class CallStore(Protocol):
    """Call state shared by the processes that serve `/call`."""

    async def claim(self, key: str, value: str, ttl: int) -> bool:
        """Set `key` unless it is set already; True for the one caller that set it."""

    async def extend(self, key: str, ttl: int) -> None: ...

    async def value(self, key: str) -> str | None: ...

    async def values(self, keys: list[str]) -> list[str | None]: ...

    async def release(self, key: str, value: str) -> None:
        """Delete `key` if it still holds `value` (a newer owner keeps it)."""

    async def save(self, call_id: str, fields: dict[str, str], ttl: int) -> None: ...

    async def load(self, call_id: str) -> dict[str, str] | None: ...

    async def update(self, call_id: str, fields: dict[str, str]) -> None:
        """Change some fields of a stored call, leaving the others as they are."""

    async def forget(self, call_id: str) -> None: ...

    async def set_free(self, process: str, slots: int) -> None:
        """How many more calls `process`'s relay can take (None: it stopped)."""

    async def free_slots(self) -> dict[str, int]:
        """Free relay slots per process, as each last said."""

    async def list_live(self, call_id: str) -> None:
        """Count a call among those not ended yet (`live_calls`)."""

    async def unlist(self, call_id: str) -> None: ...

    async def live_calls(self) -> list[str]: ...

    async def close(self) -> None: ...


class MemoryCallStore:
    """Call state for a single process."""

    def __init__(self) -> None:
        self._keys: dict[str, tuple[str, float]] = {}
        self._calls: dict[str, tuple[dict[str, str], float]] = {}
        self._listed: set[str] = set()
        self._free: dict[str, int] = {}

    def _live(self, key: str) -> str | None:
        held = self._keys.get(key)
        if held is None:
            return None
        if held[1] < time.monotonic():
            del self._keys[key]
            return None
        return held[0]

    async def claim(self, key: str, value: str, ttl: int) -> bool:
        if self._live(key) is not None:
            return False
        if len(self._keys) > 1000:
            # Claims of ended calls expire; sweep them now and then so none pile up.
            for old in list(self._keys):
                self._live(old)
        self._keys[key] = (value, time.monotonic() + ttl)
        return True

    async def extend(self, key: str, ttl: int) -> None:
        value = self._live(key)
        if value is not None:
            self._keys[key] = (value, time.monotonic() + ttl)

    async def value(self, key: str) -> str | None:
        return self._live(key)

    async def values(self, keys: list[str]) -> list[str | None]:
        return [self._live(key) for key in keys]

    async def release(self, key: str, value: str) -> None:
        if self._live(key) == value:
            del self._keys[key]

    async def save(self, call_id: str, fields: dict[str, str], ttl: int) -> None:
        self._calls[call_id] = (dict(fields), time.monotonic() + ttl)

    async def load(self, call_id: str) -> dict[str, str] | None:
        held = self._calls.get(call_id)
        if held is None:
            return None
        if held[1] < time.monotonic():
            del self._calls[call_id]
            return None
        return dict(held[0])

    async def update(self, call_id: str, fields: dict[str, str]) -> None:
        held = self._calls.get(call_id)
        if held is not None:
            held[0].update(fields)

    async def forget(self, call_id: str) -> None:
        self._calls.pop(call_id, None)

    async def set_free(self, process: str, slots: int) -> None:
        self._free[process] = slots

    async def free_slots(self) -> dict[str, int]:
        return dict(self._free)

    async def list_live(self, call_id: str) -> None:
        self._listed.add(call_id)

    async def unlist(self, call_id: str) -> None:
        self._listed.discard(call_id)

    async def live_calls(self) -> list[str]:
        return list(self._listed)

    async def close(self) -> None:
        self._keys.clear()
        self._calls.clear()
        self._listed.clear()


# Delete a key only while it holds the value this process set (another call may own it now).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisCallStore:
    """Call state shared by several processes through Redis."""

    def __init__(self, url: str, prefix: str) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(url, decode_responses=True)
        self._prefix = f"{prefix}:calls:"
        self._release: Any = self._redis.register_script(_RELEASE)

    async def claim(self, key: str, value: str, ttl: int) -> bool:
        return bool(await self._redis.set(self._prefix + key, value, nx=True, ex=ttl))

    async def extend(self, key: str, ttl: int) -> None:
        await self._redis.expire(self._prefix + key, ttl)

    async def value(self, key: str) -> str | None:
        found = await self._redis.get(self._prefix + key)
        return str(found) if found is not None else None

    async def values(self, keys: list[str]) -> list[str | None]:
        if not keys:
            return []
        found = await self._redis.mget([self._prefix + key for key in keys])
        return [str(v) if v is not None else None for v in found]

    async def release(self, key: str, value: str) -> None:
        await self._release(keys=[self._prefix + key], args=[value])

    async def save(self, call_id: str, fields: dict[str, str], ttl: int) -> None:
        pipe = self._redis.pipeline()
        pipe.hset(self._prefix + "call:" + call_id, mapping=cast(Any, fields))
        pipe.expire(self._prefix + "call:" + call_id, ttl)
        await pipe.execute()

    async def load(self, call_id: str) -> dict[str, str] | None:
        found = await self._redis.hgetall(self._prefix + "call:" + call_id)
        return {str(k): str(v) for k, v in found.items()} if found else None

    async def update(self, call_id: str, fields: dict[str, str]) -> None:
        key = self._prefix + "call:" + call_id
        if await self._redis.exists(key):  # an ended call's state is not brought back
            await self._redis.hset(key, mapping=cast(Any, fields))

    async def forget(self, call_id: str) -> None:
        await self._redis.delete(self._prefix + "call:" + call_id)

    async def set_free(self, process: str, slots: int) -> None:
        await self._redis.hset(self._prefix + "relay-free", process, str(slots))

    async def free_slots(self) -> dict[str, int]:
        found = await self._redis.hgetall(self._prefix + "relay-free")
        return {str(process): int(slots) for process, slots in found.items()}

    async def list_live(self, call_id: str) -> None:
        await self._redis.sadd(self._prefix + "live", call_id)

    async def unlist(self, call_id: str) -> None:
        await self._redis.srem(self._prefix + "live", call_id)

    async def live_calls(self) -> list[str]:
        return [str(call_id) for call_id in await self._redis.smembers(self._prefix + "live")]

    async def close(self) -> None:
        await self._redis.aclose()


def create_call_store(settings: Settings) -> CallStore:
    """Memory for one process, Redis when REDIS_URL is set."""
    if settings.redis_url:
        return RedisCallStore(settings.redis_url, settings.redis_channel)
    return MemoryCallStore()


# Monotonic times are per process: the store holds wall-clock times and converts them back.
def _wall(moment: float | None) -> str:
    return "" if moment is None else repr(time.time() - (time.monotonic() - moment))


def _monotonic(wall: str) -> float | None:
    return None if not wall else time.monotonic() - (time.time() - float(wall))


def call_fields(call: Call) -> dict[str, str]:
    """A call as the store keeps it."""
    return {
        "id": call.id,
        "conversation_id": str(call.conversation_id),
        "cid": call.cid,
        "caller": call.caller,
        "video": "1" if call.video else "",
        "mode": call.mode,
        "state": call.state,
        "created": _wall(call.created_at),
        "answered": _wall(call.answered_at),
        "connected": _wall(call.connected_at),
        "sids": json.dumps(call.sids),
        "processes": json.dumps(call.processes),
        "relay": call.relay_process,
        "synthetic": "1" if call.synthetic else "",
    }


def call_from(fields: dict[str, str]) -> Call:
    """A call another process started, as this one sees it."""
    call = Call(
        id=fields["id"],
        conversation_id=int(fields["conversation_id"]),
        cid=fields["cid"],
        caller=fields["caller"],
        video=bool(fields.get("video")),
        synthetic=bool(fields.get("synthetic")),
    )
    merge(call, fields)
    call.created_at = _monotonic(fields.get("created", "")) or call.created_at
    return call


def merge(call: Call, fields: dict[str, str]) -> None:
    """Take what other processes changed: state, mode, who is in it, answered and connected."""
    call.state = fields.get("state", call.state)
    if call.mode == P2P:
        # A call only moves from P2P to the server, and its relay is on the process that has it.
        call.mode = fields.get("mode", call.mode)
    call.sids = {**call.sids, **json.loads(fields.get("sids") or "{}")}
    call.processes = {**call.processes, **json.loads(fields.get("processes") or "{}")}
    call.relay_process = call.relay_process or fields.get("relay", "")
    call.answered_at = call.answered_at or _monotonic(fields.get("answered", ""))
    call.connected_at = call.connected_at or _monotonic(fields.get("connected", ""))
