"""A registry of small named steps (checks, repairs), each run alone with a time limit.

A check returns `passed(detail)` or `off(detail)`, or raises `CheckFailed(detail)`; anything
else it raises is a failure too, described in one line. New checks (calls, storage) plug in
with `@registry.check(...)` and need nothing else.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from app.i18n import gettext as _

log = logging.getLogger("sohbet.selftest")

PASS, FAIL, OFF = "pass", "fail", "off"
ICONS = {PASS: "✅", FAIL: "❌", OFF: "⚪"}
C = TypeVar("C")


class CheckFailed(Exception):
    """A check found a fault; the message is its one-line detail."""

    def __init__(self, detail: str, count: int | None = None) -> None:
        super().__init__(detail)
        self.count = count


@dataclass(frozen=True)
class Outcome:
    status: str
    detail: str
    count: int | None = None  # what a repair step cleaned up


def passed(detail: str, count: int | None = None) -> Outcome:
    return Outcome(PASS, detail, count)


def off(detail: str) -> Outcome:
    """The part is not configured: neither a pass nor a failure."""
    return Outcome(OFF, detail)


@dataclass(frozen=True)
class Result:
    """One check's result in a report."""

    name: str
    status: str
    ms: int
    detail: str
    count: int | None = None

    def as_dict(self) -> dict[str, Any]:
        found = {"name": self.name, "status": self.status, "ms": self.ms, "detail": self.detail}
        return found if self.count is None else {**found, "count": self.count}


def describe(exc: BaseException) -> str:
    """One line about an exception, for a detail."""
    text = " ".join(str(exc).split())
    if isinstance(exc, TimeoutError) and not text:
        return _("timed out")
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


@dataclass(frozen=True)
class Step(Generic[C]):
    name: str
    label: str  # English, marked with N_; translated where it is shown
    fn: Callable[[C], Awaitable[Outcome]]
    timeout: float


class Registry(Generic[C]):
    """Named steps in the order they were added, run one after the other."""

    def __init__(self) -> None:
        self._steps: dict[str, Step[C]] = {}

    def check(
        self, name: str, label: str, *, timeout: float = 10.0
    ) -> Callable[[Callable[[C], Awaitable[Outcome]]], Callable[[C], Awaitable[Outcome]]]:
        """Decorator: add a step under `name`, shown as `label`."""

        def add(fn: Callable[[C], Awaitable[Outcome]]) -> Callable[[C], Awaitable[Outcome]]:
            self._steps[name] = Step(name, label, fn, timeout)
            return fn

        return add

    def __iter__(self) -> Iterator[Step[C]]:
        return iter(list(self._steps.values()))

    def label(self, name: str) -> str:
        """The translated label of a step (its name when it is no longer registered)."""
        step = self._steps.get(name)
        return _(step.label) if step else name

    async def run_one(self, step: Step[C], context: C) -> Result:
        """Run one step within its time limit; every exception becomes a failed result."""
        start = time.perf_counter()
        limit = asyncio.timeout(step.timeout)
        try:
            async with limit:
                outcome = await step.fn(context)
        except CheckFailed as exc:
            outcome = Outcome(FAIL, str(exc), exc.count)
        except Exception as exc:
            if isinstance(exc, TimeoutError) and limit.expired():
                outcome = Outcome(FAIL, _("No answer within %(s)s s", s=f"{step.timeout:g}"))
            else:
                log.warning("self-test step %s failed", step.name, exc_info=True)
                outcome = Outcome(FAIL, describe(exc))
        ms = round((time.perf_counter() - start) * 1000)
        return Result(step.name, outcome.status, ms, outcome.detail, outcome.count)

    async def run(self, context: C, skip: Collection[str] = ()) -> list[Result]:
        """Run every step in order (one at a time, so each one's time is its own); steps named
        in `skip` are reported as off."""
        return [
            Result(step.name, OFF, 0, _("Skipped (SELFTEST_SKIP)"))
            if step.name in skip
            else await self.run_one(step, context)
            for step in self
        ]
