"""The realtime stack: the Socket.IO server, presence, and the shared namespace base.

- server.py: the Socket.IO server (`create_sio`), built with the lighter pieces below;
- handshake.py: a handshake's origin and cookies;
- presence.py: who is connected right now (in memory for one process);
- redis_presence.py: the same across processes through Redis, healed by heartbeats;
- namespace.py: the base of the `/chat` and `/call` namespaces (identity, errors, events);
- outage.py: a database outage seen by those handlers, logged when it starts and ends;
- engine.py, lean_queue.py, protocol.py, manager.py, serving.py: lighter replacements of
  python-socketio, engine.io and Hypercorn pieces, measured in bench/README.md;
- patches.py: `install()`, the one call that puts every replacement of a library's internals
  in place, and the versions they were written for;
- lifespan.py: a failed start ends the process.

namespace.py is imported by the namespaces themselves (it needs the chat service's types).
"""

from app.realtime.handshake import cookies_of, origin_allowed
from app.realtime.lifespan import ExitOnFailedStart
from app.realtime.patches import install
from app.realtime.presence import MemoryPresence, Presence, create_presence
from app.realtime.redis_presence import RedisPresence
from app.realtime.server import MAX_PACKET_BYTES, create_sio, lean_server

__all__ = [
    "MAX_PACKET_BYTES",
    "ExitOnFailedStart",
    "MemoryPresence",
    "Presence",
    "RedisPresence",
    "cookies_of",
    "create_presence",
    "create_sio",
    "install",
    "lean_server",
    "origin_allowed",
]
