"""An in-process sliding-window limiter for cheap per-client budgets."""

from __future__ import annotations

import time
from collections import deque


class SlidingWindow:
    """At most `limit` events per `seconds` for each key."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self._events: dict[str, deque[float]] = {}

    def hit(self, key: str) -> float:
        """Record an event; return 0 if allowed, else the seconds until the next is allowed."""
        now = time.monotonic()
        events = self._events.setdefault(key, deque())
        while events and events[0] <= now - self.seconds:
            events.popleft()
        if len(events) >= self.limit:
            return events[0] + self.seconds - now
        events.append(now)
        if len(self._events) > 10_000:
            self._events = {k: v for k, v in self._events.items() if v}
        return 0.0
