"""The attack suite: every case is an input and the safe behaviour it expects.

At the end of a run the terminal summary says how many attack cases ran and how many failed
(a parametrized case counts once per parameter).
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
_outcomes: dict[str, str] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not Path(report.fspath).resolve().is_relative_to(HERE):
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        _outcomes[report.nodeid] = report.outcome
    elif report.when == "teardown" and report.failed:
        _outcomes[report.nodeid] = "failed"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _outcomes:
        return
    failed = sum(1 for outcome in _outcomes.values() if outcome == "failed")
    skipped = sum(1 for outcome in _outcomes.values() if outcome == "skipped")
    terminalreporter.write_sep(
        "=", f"attack suite: {len(_outcomes)} cases, {failed} failed, {skipped} skipped"
    )
