"""The product with python-socketio's own room scan on disconnect, for bench/storm.py's comparison.

LeanManager keeps its index of each socket's rooms, but a disconnect and `rooms()` go back to
python-socketio's BaseManager (a scan of every room of the namespace), and the pending
connect/disconnect tables back to lists: the manager as it was before the index.
"""

from __future__ import annotations

from typing import Any

from socketio.base_manager import BaseManager

from app.realtime.manager import LeanManager

_init = LeanManager.__init__


def _lists(self: LeanManager, *args: Any, **kwargs: Any) -> None:
    _init(self, *args, **kwargs)
    self.pending_connect = {}  # type: ignore[assignment]
    self.pending_disconnect = {}  # type: ignore[assignment]


LeanManager.__init__ = _lists  # type: ignore[method-assign]
LeanManager.basic_disconnect = BaseManager.basic_disconnect  # type: ignore[method-assign]
LeanManager.get_rooms = BaseManager.get_rooms  # type: ignore[method-assign]

from app.asgi import app  # noqa: E402  (after the manager is put back)

__all__ = ["app"]
