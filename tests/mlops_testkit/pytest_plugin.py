"""The skip policy of every pytest run in this repository (tests/, role tests, Molecule verifiers).

Loaded by pyproject.toml's `addopts = "-p mlops_testkit.pytest_plugin"`, which pytest reads
for any test under the repository root, so a Molecule verifier (pytest on
roles/<role>/molecule/default/tests) applies it as the main suite does.

Under CI (environment variable CI set to anything but "", "0", "false", "no"), a skip is a
failure: a missing tool, engine or image there is a broken setup, not a reason to pass. A test
that may legitimately skip everywhere says so, with its reason:

    @pytest.mark.allow_skip(reason="needs an x86-64 CPU with AVX2")

Off CI, skips stay skips (a laptop without a Docker Engine still runs the rest). Expected
failures (xfail) are not skips and are left alone.

It also orders tests: one marked `@pytest.mark.rerun` (it runs the playbook again and changes
the host: a recreated container, other variables) runs after every unmarked test of the
session, in collection order otherwise, so that the read-only checks see the converged host.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

MARKER = "allow_skip"
RERUN = "rerun"


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(reason): this test may skip even under CI (reason required); without it a skip fails under CI",
    )
    config.addinivalue_line(
        "markers", f"{RERUN}: re-runs the playbook and changes the host; runs after every unmarked test"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A stable sort: unmarked tests first, each group in its collection order.
    items.sort(key=lambda item: item.get_closest_marker(RERUN) is not None)


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr: Any = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _allowed(item: pytest.Item) -> str | None:
    """The reason an allow_skip marker gives, or None when the test has none (or no reason)."""
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        return None
    reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
    return str(reason).strip() or None


def _fail(report: pytest.TestReport | pytest.CollectReport, what: str) -> None:
    reason = _skip_reason(report)
    report.outcome = "failed"
    report.longrepr = (
        f"{what} skipped under CI (CI={os.environ.get('CI')!r}): {reason}\n"
        "Under CI every skip is a failure: install what is missing, or mark the test "
        f"@pytest.mark.{MARKER}(reason=...) if it may skip on every CI machine."
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report: pytest.TestReport = yield
    if report.skipped and not hasattr(report, "wasxfail") and under_ci() and _allowed(item) is None:
        _fail(report, "test")
    return report


SKIPPED_MODULES = pytest.StashKey[list[str]]()


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, Any]:
    # A module that skips itself while being collected (pytest.skip(allow_module_level=True),
    # pytest.importorskip at module level) never produces items to mark. Turning its report into
    # a failure would stop the whole session at collection: it is counted here instead, and the
    # session fails at its end (pytest_sessionfinish) after every other test has run.
    report: pytest.CollectReport = yield
    if report.skipped and under_ci():
        skipped = collector.config.stash.setdefault(SKIPPED_MODULES, [])
        skipped.append(f"{collector.nodeid}: {_skip_reason(report)}")
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if session.config.stash.get(SKIPPED_MODULES, []) and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    skipped = config.stash.get(SKIPPED_MODULES, [])
    if skipped:
        terminalreporter.section("modules skipped under CI (a failure)", red=True)
        for line in skipped:
            terminalreporter.line(line)
        terminalreporter.line(f"Under CI every skip is a failure: install what is missing, or mark it {MARKER}.")
