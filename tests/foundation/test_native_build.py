"""The compiled build (nativebuild/) computes what the pure-Python modules compute, and is used
only while it matches the sources."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nativebuild import loader
from nativebuild.modules import BUILD_DIR, COMPILED_MODULES, STAMP_NAME
from node.logs import configure_logging
from node.runner import log_state_machine_build
from tests.conftest import REPO_ROOT

needs_compiled = pytest.mark.skipif(
    loader.build_name() != "compiled",
    reason=f"the compiled build is not loaded ({loader.build_reason()}; make native builds it)",
)


def run_python(args: list[str], env_build: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != loader.ENV_BUILD}
    if env_build is not None:
        env[loader.ENV_BUILD] = env_build
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )


def flows(env_build: str | None) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(
        run_python(["-m", "tests.foundation.native_flows"], env_build).stdout
    )
    return out


@needs_compiled
def test_compiled_and_pure_builds_compute_the_same_bytes() -> None:
    compiled, pure = flows(None), flows("pure")
    assert (compiled.pop("build"), pure.pop("build")) == ("compiled", "pure")
    assert "adl" in compiled["cascade"]["kinds"]  # the cascade reached the ladder's last rung
    for name in sorted(compiled):
        assert compiled[name] == pure[name], f"{name} differs between the builds"


def probe(build_dir: Path) -> dict[str, Any]:
    """In a fresh interpreter: activate() with ``build_dir``, import a compiled module."""
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from nativebuild import loader\n"
        f"build = loader.activate(Path({str(build_dir)!r}))\n"
        f"import {COMPILED_MODULES[0]} as m\n"
        "print(json.dumps({'build': build, 'name': loader.build_name(), 'file': m.__file__,"
        " 'reason': loader.build_reason(), 'unused': loader.unused_build()}))\n"
    )
    res = run_python(["-c", code], None)
    out: dict[str, Any] = json.loads(res.stdout)
    out["stderr"] = res.stderr
    return out


@needs_compiled
def test_a_matching_build_loads_compiled_modules(tmp_path: Path) -> None:
    copy = tmp_path / "mypyc"
    shutil.copytree(BUILD_DIR, copy)
    got = probe(copy)
    assert (got["build"], got["name"]) == ("compiled", "compiled")
    assert got["file"].startswith(str(copy))
    assert (got["unused"], got["stderr"]) == (False, "")


@needs_compiled
def test_a_stale_build_is_not_used_and_says_why(tmp_path: Path) -> None:
    """A source edited after the build: the stamp's hash differs, pure Python runs, and the
    process knows to warn (a node logs it); a command's stderr stays its own."""
    copy = tmp_path / "mypyc"
    shutil.copytree(BUILD_DIR, copy)
    stamp = json.loads((copy / STAMP_NAME).read_text())
    edited = "state_machine/clob/place.py"
    stamp["sources"][edited] = "0" * 64
    (copy / STAMP_NAME).write_text(json.dumps(stamp))
    got = probe(copy)
    assert (got["build"], got["name"]) == ("pure", "pure")
    assert got["file"].endswith(".py")
    assert edited in got["reason"]
    assert got["unused"] is True
    assert got["stderr"] == ""


@needs_compiled
def test_a_changed_extension_file_is_not_used(tmp_path: Path) -> None:
    copy = tmp_path / "mypyc"
    shutil.copytree(BUILD_DIR, copy)
    ext = loader.extension_path(COMPILED_MODULES[0], copy)
    ext.write_bytes(ext.read_bytes() + b"\0")
    got = probe(copy)
    assert (got["name"], got["unused"]) == ("pure", True)
    assert "extension files differ" in got["reason"]


def test_without_a_build_the_sources_run(tmp_path: Path) -> None:
    got = probe(tmp_path / "never-built")
    assert (got["build"], got["name"]) == ("pure", "pure")
    assert got["file"] == str(REPO_ROOT / "state_machine" / "accounts" / "records.py")
    assert (got["unused"], got["stderr"]) == (False, "")  # no compiler: normal, no warning


def test_the_stamp_covers_every_state_machine_source() -> None:
    hashed = set(loader.source_hashes())
    on_disk = {p.relative_to(REPO_ROOT).as_posix() for p in REPO_ROOT.glob("state_machine/**/*.py")}
    assert hashed == on_disk
    for module in COMPILED_MODULES:
        assert module.replace(".", "/") + ".py" in hashed


def test_the_node_logs_which_build_runs() -> None:
    out = io.StringIO()
    configure_logging("json", "info", out)
    log_state_machine_build()
    body = json.loads(out.getvalue().splitlines()[0])
    assert body["event"] == "state_machine_build"  # this session's build is in use, no warning
    assert body["build"] == loader.build_name()
    assert body["reason"] == loader.build_reason()
