"""Pytest plugin: under CI, any skipped test fails the session.

need() already fails instead of skipping under CI; this catches what bypasses it (a
plugin's skip, a skip marker added later). Loaded by tests/conftest.py."""

from __future__ import annotations

import pytest

from tests.support.skips import in_ci

_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and in_ci():
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skipped and in_ci():
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _skipped and in_ci():
        terminalreporter.write_sep("=", "skips are failures under CI", red=True)
        for nodeid in _skipped:
            terminalreporter.write_line(f"SKIPPED under CI: {nodeid}")
