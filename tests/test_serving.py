"""WebSocket compression is declined by default (memory per idle socket) and can be enabled."""

from __future__ import annotations

from pathlib import Path

import websockets

from tests.support.inprocess import InProcessServer
from tests.support.server import Server

PATH = "/socket.io/?EIO=4&transport=websocket"


async def negotiated(base_url: str) -> str | None:
    url = base_url.replace("http://", "ws://") + PATH
    async with websockets.connect(url, compression="deflate") as ws:
        assert str(await ws.recv()).startswith("0{")  # engine.io's open packet: the socket works
        assert ws.response is not None
        return ws.response.headers.get("Sec-WebSocket-Extensions")


async def test_deflate_is_declined_by_default(tmp_path: Path) -> None:
    server = Server(database_url=f"sqlite://{tmp_path / 'a.db'}", workdir=tmp_path)
    await server.start()
    try:
        assert await negotiated(server.url) is None
    finally:
        server.stop()


async def test_deflate_when_enabled(tmp_path: Path) -> None:
    server = await InProcessServer(tmp_path, {"WS_COMPRESSION": "1"}).start()
    try:
        assert "permessage-deflate" in (await negotiated(server.url) or "")
    finally:
        await server.stop()
