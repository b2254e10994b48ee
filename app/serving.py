"""Serving-layer settings Hypercorn does not expose.

Hypercorn offers permessage-deflate to every WebSocket client and browsers always accept it.
For chat traffic (frames of a few hundred bytes) it saves little bandwidth but costs a zlib
compressor and decompressor per connection: measured with bench/chat_load.py, an idle
Socket.IO connection took ~145-150 KiB with it and ~36-42 KiB without, and the server spent
~3-5 % of its CPU compressing frames under load. So it is declined unless WS_COMPRESSION=1.
"""

from __future__ import annotations

from hypercorn.protocol import ws_stream
from wsproto.extensions import PerMessageDeflate


class _DeclinedDeflate(PerMessageDeflate):
    """permessage-deflate that turns every offer down (the handshake then names no extension)."""

    def accept(self, offer: str) -> None:
        return None


_ORIGINAL = PerMessageDeflate


def websocket_compression(enabled: bool) -> None:
    """Let Hypercorn negotiate permessage-deflate, or decline it (process-wide)."""
    # Hypercorn looks the class up in its module at each handshake (ws_stream.WSStream.accept).
    ws_stream.PerMessageDeflate = _ORIGINAL if enabled else _DeclinedDeflate  # type: ignore[attr-defined]
