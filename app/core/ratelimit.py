"""An in-process sliding-window limiter for cheap per-client budgets."""

from __future__ import annotations

import time
from collections import deque

# Keys are forgotten once their window has passed, checked when the table has doubled since the
# last sweep (amortised: a sweep on every event would cost O(keys) per event).
SWEEP_AT = 10_000


class SlidingWindow:
    """At most `limit` events per `seconds` for each key."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self._events: dict[str, deque[float]] = {}
        self._sweep_at = SWEEP_AT

    def __len__(self) -> int:
        """How many keys are remembered."""
        return len(self._events)

    def wait(self, key: str) -> float:
        """0 if another event is allowed now, else the seconds until it is."""
        now = time.monotonic()
        events = self._events.get(key)
        if not events:
            return 0.0
        while events and events[0] <= now - self.seconds:
            events.popleft()
        return events[0] + self.seconds - now if len(events) >= self.limit else 0.0

    def add(self, key: str) -> None:
        """Record an event."""
        now = time.monotonic()
        self._events.setdefault(key, deque()).append(now)
        if len(self._events) > self._sweep_at:
            cutoff = now - self.seconds
            self._events = {k: v for k, v in self._events.items() if v[-1] > cutoff}
            self._sweep_at = max(SWEEP_AT, 2 * len(self._events))

    def hit(self, key: str) -> float:
        """Record an event if allowed; return 0 if it was, else the seconds to wait."""
        wait = self.wait(key)
        if not wait:
            self.add(key)
        return wait
