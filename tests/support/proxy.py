"""A small TCP proxy that can cut every connection passing through it, to test reconnects."""

from __future__ import annotations

import asyncio
import contextlib

from tests.support.server import free_port


class CuttingProxy:
    """Forwards 127.0.0.1:<port> to a target; `cut()` drops all live connections at once."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.cuts = 0
        self.refusing = False
        # Set to some bytes: when a client next sends them, every live connection is cut right
        # there (once), before they reach the target.
        self.cut_at: bytes | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
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
                    self.cut()
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
        writers = list(self._writers)
        for writer in writers:
            writer.transport.abort()
        self._writers.clear()
        self.cuts += 1
        return len(writers)

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()


async def postgres_behind_proxy(url: str) -> tuple[CuttingProxy, str]:
    """A started proxy in front of the PostgreSQL server of `url`, and `url` through it."""
    host_port = url.split("@", 1)[1].split("/", 1)[0]
    proxy = await CuttingProxy(int(host_port.rsplit(":", 1)[1])).start()
    return proxy, url.replace(host_port, f"127.0.0.1:{proxy.port}")
