"""Shared test configuration: vectors folder, Hypothesis profiles, the CI rule on skips.

CI (``.ci/run``) exports ``PERPBFT_CI=1``. Then:

* Hypothesis runs the ``ci`` profile: ``CI_EXAMPLES_FACTOR`` times the examples of a local run
  (tests with their own ``max_examples`` take it through :func:`examples`), a failure prints
  its ``@reproduce_failure`` blob, and examples are drawn afresh on every run
  (``derandomize=False``): CI starts from a fresh clone, so no example database survives between
  runs (``database=None`` says so); the blob in the log is what reproduces a failure.
* a skipped test fails the session: every test must run in CI, and the summary lists each skip
  with its reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from nativebuild import loader as native

# Before any test module imports state_machine: the compiled build when it matches the sources.
native.activate()

REPO_ROOT = Path(__file__).resolve().parent.parent
# Third-party vectors copied from ../shared/vectors (see tests/vectors/README.md).
VECTORS_DIR = Path(os.environ.get("PERPBFT_VECTORS", REPO_ROOT / "tests" / "vectors"))

IN_CI = os.environ.get("PERPBFT_CI") == "1"
CI_EXAMPLES_FACTOR = 3
LOCAL_DEFAULT_EXAMPLES = 100


def examples(local: int) -> int:
    """A test's ``max_examples``: ``local`` on a developer's machine, more in CI."""
    return local * CI_EXAMPLES_FACTOR if IN_CI else local


settings.register_profile(
    "ci",
    max_examples=examples(LOCAL_DEFAULT_EXAMPLES),
    derandomize=False,
    database=None,
    print_blob=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev",
    max_examples=LOCAL_DEFAULT_EXAMPLES,
    print_blob=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("ci" if IN_CI else "dev")


# ---- in CI, a skipped test fails the run ---------------------------------------------------

_skipped: list[tuple[str, str]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else ""
        reason = reason.removeprefix("Skipped: ")
        _skipped.append((report.nodeid, reason))


# ---- which build of the state machine runs (nativebuild/loader.py) --------------------------


def compiled_build_missing() -> bool:
    """In CI the compiled build is expected (make native ran before pytest) unless the run
    asked for pure Python (PERPBFT_BUILD=pure)."""
    wanted_pure = os.environ.get(native.ENV_BUILD) == "pure"
    return IN_CI and not wanted_pure and native.build_name() != "compiled"


def pytest_report_header() -> str:
    return f"state machine build: {native.build_name()} ({native.build_reason()})"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if compiled_build_missing():
        terminalreporter.section("the compiled build was expected (PERPBFT_CI=1)", red=True)
        terminalreporter.write_line(f"pure Python ran: {native.build_reason()}")
    if IN_CI and _skipped:
        terminalreporter.section("skipped tests fail the CI run (PERPBFT_CI=1)", red=True)
        for nodeid, reason in _skipped:
            terminalreporter.write_line(f"SKIPPED {nodeid}: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if ((IN_CI and _skipped) or compiled_build_missing()) and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
