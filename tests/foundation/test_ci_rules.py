"""The CI rules of tests/conftest.py, run on a throw-away test file in a child pytest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

CHILD_CONFTEST = (
    "from tests.conftest import (pytest_runtest_logreport, pytest_sessionfinish,\n"
    "                            pytest_terminal_summary)\n"
)
CHILD_TESTS = (
    "import pytest\n"
    "def test_runs():\n    assert True\n"
    "def test_needs_something():\n    pytest.skip('something is missing')\n"
)


def run_child(tmp_path: Path, ci: bool) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(CHILD_CONFTEST)
    (tmp_path / "test_child.py").write_text(CHILD_TESTS)
    env = {k: v for k, v in os.environ.items() if k != "PERPBFT_CI"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    if ci:
        env["PERPBFT_CI"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         "-c", os.devnull, str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_a_skipped_test_fails_the_ci_run(tmp_path: Path) -> None:
    result = run_child(tmp_path, ci=True)
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout + result.stderr
    assert "skipped tests fail the CI run" in result.stdout
    assert "test_child.py::test_needs_something: something is missing" in result.stdout


def test_a_skip_outside_ci_is_only_reported(tmp_path: Path) -> None:
    result = run_child(tmp_path, ci=False)
    assert result.returncode == pytest.ExitCode.OK, result.stdout + result.stderr
    assert "1 passed, 1 skipped" in result.stdout


def test_ci_script_sets_the_ci_variable() -> None:
    script = (REPO_ROOT / ".ci" / "run").read_text()
    assert "export PERPBFT_CI=1" in script
    assert "make test" in script.split("export PERPBFT_CI=1", 1)[1]
