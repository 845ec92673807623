"""Use the compiled build of the hot state-machine modules only while it matches the sources.

Theory of operation. ``python -m nativebuild.compile`` (``make native``) compiles the modules of
:data:`nativebuild.modules.COMPILED_MODULES` with mypyc into ``build/mypyc/``, never beside the
sources, and writes ``build/mypyc/stamp.json`` last: the SHA-256 of every ``state_machine``
source as it was compiled, of every extension file, and the interpreter's extension suffix.
Nothing in ``build/mypyc/`` is on ``sys.path``, so by default every module runs from its
``.py`` file. :func:`activate` (called by the entry points before anything imports
``state_machine``: ``cli/__init__.py`` and ``tests/conftest.py``) hashes the sources again and,
only if every hash and the interpreter match, puts a finder first on ``sys.meta_path`` that
loads exactly the listed modules (and mypyc's shared library) from ``build/mypyc/``. Any
difference (an edited, added or removed source, a partial build, another Python) keeps the
pure-Python modules; the node says why once in its log at start (a
``state_machine_build_unused`` warning), the test session in its header. So a compiled module can
never shadow an edited source; ``make native`` rebuilds.

``PERPBFT_BUILD=pure`` forces the pure-Python modules (the comparison test runs both builds
this way). :func:`build_name` says which build runs ("compiled" or "pure"); the bench and the
test session print it.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Any

from nativebuild.modules import (
    BUILD_DIR,
    COMPILED_MODULES,
    GROUP_NAME,
    HASHED_PACKAGES,
    REPO_ROOT,
    STAMP_NAME,
)

ENV_BUILD = "PERPBFT_BUILD"
STAMP_VERSION = 1

_state: dict[str, str] = {}  # "build" and "reason" once activate() ran


def extension_suffix() -> str:
    return importlib.machinery.EXTENSION_SUFFIXES[0]


def shared_lib_module() -> str:
    return f"{GROUP_NAME}__mypyc"


def extension_path(module: str, build_dir: Path = BUILD_DIR) -> Path:
    parts = module.split(".")
    return build_dir.joinpath(*parts[:-1], parts[-1] + extension_suffix())


def source_hashes(root: Path = REPO_ROOT) -> dict[str, str]:
    """SHA-256 of every source the compiled build depends on, by path from the repository."""
    out: dict[str, str] = {}
    for package in HASHED_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            out[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def extension_hashes(build_dir: Path = BUILD_DIR) -> dict[str, str]:
    names = [*COMPILED_MODULES, shared_lib_module()]
    return {name: file_hash(extension_path(name, build_dir)) for name in names}


def make_stamp(sources: dict[str, str], build_dir: Path = BUILD_DIR) -> dict[str, Any]:
    return {
        "version": STAMP_VERSION,
        "extension_suffix": extension_suffix(),
        "modules": list(COMPILED_MODULES),
        "sources": sources,
        "extensions": extension_hashes(build_dir),
    }


def first_differences(old: dict[str, str], new: dict[str, str], limit: int = 3) -> str:
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    more = f" and {len(changed) - limit} more" if len(changed) > limit else ""
    return ", ".join(changed[:limit]) + more


def stale_reason(build_dir: Path = BUILD_DIR, root: Path = REPO_ROOT) -> str | None:
    """Why the compiled build in ``build_dir`` must not run, or None when it matches."""
    stamp_path = build_dir / STAMP_NAME
    if not stamp_path.is_file():
        return f"not built ({stamp_path} is missing; make native builds it)"
    try:
        stamp = json.loads(stamp_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"unreadable stamp {stamp_path}: {exc}"
    if stamp.get("version") != STAMP_VERSION or stamp.get("modules") != list(COMPILED_MODULES):
        return "built by another version of nativebuild (make native rebuilds it)"
    if stamp.get("extension_suffix") != extension_suffix():
        return f"built for {stamp.get('extension_suffix')}, this Python loads {extension_suffix()}"
    sources = source_hashes(root)
    if stamp.get("sources") != sources:
        changed = first_differences(stamp.get("sources") or {}, sources)
        return f"stale: sources changed since the build ({changed}); make native rebuilds it"
    try:
        extensions = extension_hashes(build_dir)
    except OSError as exc:
        return f"incomplete build: {exc}"
    if stamp.get("extensions") != extensions:
        return "incomplete build: extension files differ from the stamp (make native rebuilds it)"
    return None


class CompiledFinder(importlib.abc.MetaPathFinder):
    """Finds the compiled modules (and mypyc's shared library) in the build directory."""

    def __init__(self, build_dir: Path) -> None:
        names = [*COMPILED_MODULES, shared_lib_module()]
        self.paths = {name: extension_path(name, build_dir) for name in names}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        ext = self.paths.get(fullname)
        if ext is None:
            return None
        return importlib.util.spec_from_file_location(fullname, ext)


def already_imported() -> list[str]:
    return [m for m in COMPILED_MODULES if m in sys.modules]


def choose(build_dir: Path) -> tuple[str, str]:
    """("compiled" | "pure", why), without changing anything."""
    if os.environ.get(ENV_BUILD) == "pure":
        return "pure", f"{ENV_BUILD}=pure"
    reason = stale_reason(build_dir)
    if reason is not None:
        return "pure", reason
    early = already_imported()
    if early:
        return "pure", f"imported before the compiled build was enabled: {', '.join(early)}"
    return "compiled", f"{len(COMPILED_MODULES)} modules from {build_dir}"


def activate(build_dir: Path = BUILD_DIR) -> str:
    """Enable the compiled build if it matches the sources; returns the build that runs.

    Idempotent: the first call decides for the process. Silent (commands' stderr is their
    users'); a long-running process logs the outcome (:func:`build_name`, :func:`build_reason`,
    :func:`unused_build`) once its logging is set up.
    """
    if _state:
        return _state["build"]
    build, reason = choose(build_dir)
    if build == "compiled":
        sys.meta_path.insert(0, CompiledFinder(build_dir))
    unused = build == "pure" and (build_dir / STAMP_NAME).exists()
    _state.update(build=build, reason=reason, unused="1" if unused else "")
    return build


def unused_build() -> bool:
    """True when a compiled build exists but is not used (stale, altered, another Python,
    imported too early) and ``PERPBFT_BUILD=pure`` did not ask for that: a long-running
    process logs it as a warning (node/runner.py's ``state_machine_build_unused``)."""
    return bool(_state.get("unused")) and os.environ.get(ENV_BUILD) != "pure"


def build_name() -> str:
    """Which build the state machine runs: "compiled" when a listed module came from the
    build directory, else "pure" (also before or without activate())."""
    module = sys.modules.get(COMPILED_MODULES[0])
    if module is None:
        return _state.get("build", "pure")
    origin = getattr(module, "__file__", "") or ""
    return "compiled" if origin.endswith(extension_suffix()) else "pure"


def build_reason() -> str:
    return _state.get("reason", "activate() was not called")
