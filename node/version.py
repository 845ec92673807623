"""The running software's version and build, for ``perpbft --version``, ``GET /v1/status``
and the ``perpbft_build_info`` metric (with which build of the state machine runs, compiled
or pure Python): an operator (and a dashboard) can tell which release
each node of a network runs."""

from __future__ import annotations

import importlib.metadata
import platform

from nativebuild.loader import build_name

PACKAGE = "perpbft"


def version() -> str:
    """The installed package's version; "unknown" when run from a tree that is not installed."""
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def build_info() -> dict[str, str]:
    return {
        "version": version(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": f"{platform.system().lower()}-{platform.machine()}",
        # "compiled" or "pure": which build of the hot state-machine modules runs (nativebuild/)
        "state_machine": build_name(),
    }


def version_line() -> str:
    info = build_info()
    return (
        f"perpbft {info['version']} ({info['implementation']} {info['python']}, "
        f"{info['platform']}; state machine: {info['state_machine']})"
    )
