"""A small TCP proxy that can cut every connection passing through it, to test reconnects.

It runs on an event loop of its own, in its own thread: a test that blocks its loop (stopping
a server waits for the process) must not stall the traffic the server needs to shut down (a
pool closing its database connections through the proxy waited out the whole stop timeout).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from tests.support.server import free_port

T = TypeVar("T")


class CuttingProxy:
    """Forwards 127.0.0.1:<port> to a target; `cut()` drops all live connections at once."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.cuts = 0
        self.refusing = False
        # Why connections were refused while not `refusing` (the target could not be reached):
        # printed by tests that fail, so a stuck outage shows its cause.
        self.upstream_errors: list[str] = []
        # Set to some bytes: when a client next sends them, every live connection is cut right
        # there (once), before they reach the target.
        self.cut_at: bytes | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"proxy-{self.port}", daemon=True
        )
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _in_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def _call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the proxy's loop and return its result (at once when already there)."""
        if threading.current_thread() is self._thread:
            return fn()
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(fn())
            except BaseException as exc:
                done.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return done.result(10)

    async def start(self) -> CuttingProxy:
        self._thread.start()
        self._server = await self._in_loop(self._listen())
        return self

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError as exc:
            self.upstream_errors.append(repr(exc))
            writer.transport.abort()
            return
        self._writers.update({writer, up_writer})
        for src, dst, upstream in ((reader, up_writer, True), (up_reader, writer, False)):
            task = asyncio.create_task(self._pipe(src, dst, upstream))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, upstream: bool
    ) -> None:
        try:
            while data := await src.read(65536):
                if upstream and self.cut_at is not None and self.cut_at in data:
                    self.cut_at = None
                    self._cut()
                    return
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(dst)
            dst.transport.abort()

    def cut(self) -> int:
        """Abort every connection mid-stream (no clean close); return how many were cut."""
        return self._call(self._cut)

    def _cut(self) -> int:
        writers = list(self._writers)
        for writer in writers:
            writer.transport.abort()
        self._writers.clear()
        self.cuts += 1
        return len(writers)

    async def stop(self) -> None:
        if self._thread.is_alive():
            await self._in_loop(self._shutdown())
            self._loop.call_soon_threadsafe(self._loop.stop)
            await asyncio.to_thread(self._thread.join, 10)
        if not self._loop.is_running():
            self._loop.close()

    async def _shutdown(self) -> None:
        self._cut()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def postgres_behind_proxy(url: str) -> tuple[CuttingProxy, str]:
    """A started proxy in front of the PostgreSQL server of `url`, and `url` through it."""
    host_port = url.split("@", 1)[1].split("/", 1)[0]
    proxy = await CuttingProxy(int(host_port.rsplit(":", 1)[1])).start()
    return proxy, url.replace(host_port, f"127.0.0.1:{proxy.port}")
