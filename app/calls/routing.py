"""Requests between processes about a call's server media: a relayed (or echo) call's legs all
live in one process, so a party on another process has its offers, candidates and media events
carried there and the result brought back.

With Redis each process listens on a channel of its own; a request names the process that holds
the call's media and waits for its reply. Requests about one call are served in order (an offer
before the candidates that follow it). Without Redis there is one process and nothing to route.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from app.calls.state import CallError

log = logging.getLogger("sohbet.calls.routing")

# The answer to a routed offer includes the server's ICE gathering: well under this.
REQUEST_SECONDS = 10.0

Handler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


class CallRouter:
    """Sends call-media requests to the process that holds a call's media, and serves those
    sent to this one."""

    def __init__(self, url: str, prefix: str, process: str) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(url, decode_responses=True)
        self._channel = f"{prefix}:calls:route:"
        self.process = process
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        # One queue of requests per call: served in the order they came.
        self._locks: dict[str, asyncio.Lock] = {}
        self._queued: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._listening: asyncio.Task[None] | None = None
        self._pubsub: Any = None

    async def start(self, handle: Handler) -> None:
        self._pubsub = self._redis.pubsub()
        await self._pubsub.subscribe(self._channel + self.process)
        self._listening = asyncio.get_running_loop().create_task(self._listen(handle))

    async def request(self, process: str, op: str, args: dict[str, Any]) -> dict[str, Any]:
        """Ask `process` to do `op` for a call; its reply (a refusal raises `CallError`)."""
        request_id = secrets.token_hex(8)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        body = {"id": request_id, "from": self.process, "op": op, "args": args}
        try:
            if not await self._redis.publish(self._channel + process, json.dumps(body)):
                raise CallError("call_gone")  # that process no longer runs: its media is gone
            reply = await asyncio.wait_for(future, REQUEST_SECONDS)
        except TimeoutError:
            raise CallError("call_gone") from None
        finally:
            self._waiting.pop(request_id, None)
        error = reply.get("error")
        if isinstance(error, str):
            raise CallError(error)
        return reply

    async def _listen(self, handle: Handler) -> None:
        while True:
            try:
                async for message in self._pubsub.listen():
                    if message.get("type") == "message":
                        self._take(handle, json.loads(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception:
                # Redis away for a moment: listen again (requests meanwhile time out).
                log.warning("call routing: listening failed", exc_info=True)
                await asyncio.sleep(1)

    def _take(self, handle: Handler, body: dict[str, Any]) -> None:
        if "op" not in body:
            future = self._waiting.get(str(body.get("id")))
            if future is not None and not future.done():
                future.set_result(body.get("result") or {})
            return
        task = asyncio.get_running_loop().create_task(self._serve(handle, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, handle: Handler, body: dict[str, Any]) -> None:
        args = body.get("args") or {}
        call_id = str(args.get("call_id"))
        lock = self._locks.setdefault(call_id, asyncio.Lock())
        self._queued[call_id] = self._queued.get(call_id, 0) + 1
        try:
            async with lock:
                try:
                    result = await handle(str(body["op"]), args)
                except CallError as exc:
                    result = {"error": exc.code}
                except Exception:
                    log.exception("call routing: %s failed", body.get("op"))
                    result = {"error": "bad_signal"}
        finally:
            self._queued[call_id] -= 1
            if not self._queued[call_id]:
                del self._queued[call_id], self._locks[call_id]
        reply = {"id": body.get("id"), "result": result}
        await self._redis.publish(self._channel + str(body.get("from")), json.dumps(reply))

    async def close(self) -> None:
        for task in (self._listening, *self._tasks):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        await self._redis.aclose()
