"""python-socketio's packet class and the JSON module for both libraries, with less work per packet.

Given to python-socketio through its public options (`serializer`, `json`); the packets on the
wire are byte for byte the same. On bench/floor_server.py (the stack with no work of Sohbet's)
these two and the room manager (app/realtime/manager.py) were a third of its CPU:

- `LeanPacket`: python-socketio looks for bytes in every packet's data (binary attachments)
  with a recursive scan that builds a list and a `functools.reduce` per level and never stops
  early (16 % of the floor's CPU); this scan stops at the first bytes it finds;
- `JSON`: engine.io's `loads` passes `parse_int` (its guard against huge numbers), and
  python-socketio's `dumps` passes `separators`, so the standard library built a new decoder
  or encoder for every packet; these are built once, with the same settings.
"""

from __future__ import annotations

import json
from typing import Any

from socketio import packet as sio_packet


class LeanPacket(sio_packet.Packet):  # type: ignore[misc]
    """python-socketio's packet, with a binary scan that stops at the first bytes it finds."""

    @classmethod
    def data_is_binary(cls, data: Any) -> bool:
        if isinstance(data, (bytes, bytearray)):
            return True
        if isinstance(data, dict):
            data = data.values()
        elif not isinstance(data, list):
            return False
        return any(cls.data_is_binary(item) for item in data)


def _safe_int(text: str) -> int:
    """engine.io's guard: a number of more than 100 digits in a packet is refused."""
    if len(text) > 100:
        raise ValueError("Integer is too large")
    return int(text)


class JSON:
    """The json module for engine.io and python-socketio, with its coders built once.

    Same output and the same guard as theirs (`engineio.json`): compact separators where they
    ask for them, `parse_int` limited to 100 digits. Any other arguments go to the standard
    library as they would have.
    """

    _decode = json.JSONDecoder(parse_int=_safe_int).decode
    _compact = json.JSONEncoder(separators=(",", ":")).encode

    @staticmethod
    def loads(text: str | bytes, **kwargs: Any) -> Any:
        if kwargs:
            kwargs.setdefault("parse_int", _safe_int)
            return json.loads(text, **kwargs)
        if isinstance(text, (bytes, bytearray)):
            text = text.decode()
        if text.startswith("\ufeff"):
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        return JSON._decode(text)

    @staticmethod
    def dumps(obj: Any, **kwargs: Any) -> str:
        if kwargs == {"separators": (",", ":")}:
            return JSON._compact(obj)
        return json.dumps(obj, **kwargs)
