"""Every replacement of a library's internals, put in place by one call: `install()`.

What is replaced, and where (each measured and explained in its module):

- engine.io (python-engineio): the socket class it creates for a lightened server
  (`async_server.async_socket`, engine.py), the socket's private WebSocket loop
  (`AsyncSocket._websocket_handler`) and its long-polling POST (`handle_post_request`, both
  answering a packet over the limit through the server's `refuse_oversized`), and the
  ASGI driver's request translation (`async_drivers.asgi._async`, engine.py);
- python-socketio: `AsyncServer._handle_eio_message` and `_handle_event` (server.py) and
  `AsyncManager`'s use of `server._send_eio_packet` (manager.py);
- Hypercorn: `TaskGroup.spawn_app` (its per-connection event queue) and the
  permessage-deflate class its WebSocket handshake looks up (serving.py);
- wsproto: `PerMessageDeflate.accept`, subclassed to decline (serving.py).

They were written against the versions in `TESTED_WITH`, which pyproject.toml pins: a new
release of one of these libraries must be checked against them (tests/test_socket_stack.py,
tests/test_serving.py and bench/README.md's measurements) before its pin moves.
"""

from __future__ import annotations

import logging
from importlib import metadata

from app.realtime import engine
from app.realtime.serving import lean_app_queues, websocket_compression

log = logging.getLogger("sohbet.realtime")

# Distribution name -> the release series the replacements were written and tested for.
TESTED_WITH = {
    "python-engineio": "4.15",
    "python-socketio": "5.18",
    "hypercorn": "0.18",
    "wsproto": "1.3",
}


def untested_versions() -> dict[str, str]:
    """The installed libraries whose release series is not the one in TESTED_WITH."""
    found: dict[str, str] = {}
    for name, series in TESTED_WITH.items():
        version = metadata.version(name)
        if version != series and not version.startswith(series + "."):
            found[name] = version
    return found


def install(*, ws_compression: bool) -> None:
    """Put every replacement in place for this process (called once, by app.asgi_app)."""
    for name, version in untested_versions().items():
        log.warning(
            "%s %s is installed; the realtime stack was tested with %s.x",
            name,
            version,
            TESTED_WITH[name],
        )
    engine.install()
    lean_app_queues()
    websocket_compression(ws_compression)
