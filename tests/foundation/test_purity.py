"""The pure cores import nothing that does I/O, reads clocks, draws randomness or runs threads."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

PURE_PACKAGES = ("consensus", "state_machine")
FORBIDDEN_MODULES = {"trio", "lmdb", "socket", "time", "random", "threading", "asyncio"}
FORBIDDEN_PACKAGES = {"node", "p2p", "cli", "localnet", "client", "bench"}
# Also banned in pure code: ways around the rules above.
FORBIDDEN_EXTRA = {"concurrent", "multiprocessing", "secrets", "os", "datetime", "subprocess"}


def imported_roots(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                found.append((node.lineno, node.module))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "__import__"
        ):
            found.append((node.lineno, "__import__"))
        elif isinstance(node, ast.Attribute) and node.attr == "import_module":
            found.append((node.lineno, "importlib.import_module"))
    return found


def violations_in(path: Path) -> list[str]:
    bad = []
    for lineno, module in imported_roots(path):
        root = module.split(".")[0]
        if root in FORBIDDEN_MODULES | FORBIDDEN_PACKAGES | FORBIDDEN_EXTRA or module in (
            "__import__",
            "importlib.import_module",
        ):
            bad.append(f"{path.relative_to(REPO_ROOT)}:{lineno} imports {module}")
    return bad


def pure_modules() -> list[Path]:
    return sorted(p for pkg in PURE_PACKAGES for p in (REPO_ROOT / pkg).rglob("*.py"))


def test_pure_packages_exist() -> None:
    assert len(pure_modules()) >= 2


@pytest.mark.parametrize("path", pure_modules(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_pure_module_imports(path: Path) -> None:
    assert violations_in(path) == []


def test_checker_catches_forbidden_imports(tmp_path: Path) -> None:
    """The checker itself must fail on each forbidden form."""
    samples = {
        "a.py": "import time\n",
        "b.py": "from trio import open_nursery\n",
        "c.py": "import node.storage\n",
        "d.py": "from p2p import peers\n",
        "e.py": "import random as r\n",
        "f.py": "def f():\n    import threading\n",
        "g.py": "x = __import__('socket')\n",
        "h.py": "import asyncio.tasks\n",
    }
    fake_root = tmp_path
    for name, text in samples.items():
        (fake_root / name).write_text(text)
    for name in samples:
        tree_imports = imported_roots(fake_root / name)
        roots = {m.split(".")[0] for _, m in tree_imports}
        assert roots & (FORBIDDEN_MODULES | FORBIDDEN_PACKAGES | {"__import__"}), name
