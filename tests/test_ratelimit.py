"""The in-process sliding-window limiter: budgets per key, and keys forgotten after their window."""

from __future__ import annotations

import time

from app.core.ratelimit import SWEEP_AT, SlidingWindow


def test_budget_per_key() -> None:
    window = SlidingWindow(2, 60)
    assert window.hit("a") == 0 and window.hit("a") == 0
    assert 59 < window.hit("a") <= 60, "the third event in a minute waits for the first to age"
    assert window.hit("b") == 0, "another key has its own budget"


def test_keys_whose_window_passed_are_forgotten() -> None:
    """A long-running process sees a key per conversation or socket ever seen: the ones whose
    window has passed must go, or the table grows for ever. (Before, only keys with no events
    left were swept, which a key whose window passed unchecked never is; past 10,000 keys every
    event then rebuilt the table: ~490 µs per message here.)"""
    window = SlidingWindow(30, 0.05)
    for n in range(SWEEP_AT):
        window.hit(f"old-{n}")
    time.sleep(0.1)
    for n in range(SWEEP_AT):
        window.hit(f"new-{n}")
    assert len(window) <= SWEEP_AT + 1, len(window)
    assert window.hit("new-0") == 0 and len(window) <= SWEEP_AT + 1
