"""The running software's version and build, for ``perpbft --version``, ``GET /v1/status``
and the ``perpbft_build_info`` metric: an operator (and a dashboard) can tell which release
each node of a network runs."""

from __future__ import annotations

import importlib.metadata
import platform

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
    }


def version_line() -> str:
    info = build_info()
    return (
        f"perpbft {info['version']} ({info['implementation']} {info['python']}, "
        f"{info['platform']})"
    )
