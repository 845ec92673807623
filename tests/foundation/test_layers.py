"""The package map as a test: which top-level package may import which (docs/ARCHITECTURE.md,
"Package map and import directions").

The layers, lowest first: the chain's plumbing (``state_machine``'s codec, crypto, invariants and
transaction root, named ``plumbing`` here), ``consensus``, the rest of ``state_machine`` (the
exchange and staking: staking checks equivocation evidence in consensus's own message format,
as a Cosmos SDK chain's evidence module reads CometBFT's types), ``p2p``, ``node``, ``client``,
``localnet``, ``bench``, ``cli``; the pure ones are checked by test_purity.py. A package
imports only packages below it, so there is no cycle between packages and each can be read,
tested and replaced without the ones above. ``client`` is held tighter: of the node it uses
only the key files and the unit conversions, so a program that only talks to the API does not
pull in storage, p2p or consensus. Dynamic imports by name (``importlib.import_module("bench.x")``,
how ``cli`` loads its command and benchmark modules) count as imports. Starting the
``perpbft`` program as a process (``localnet`` runs ``python -m cli.main start`` for each
validator) is not an import: the localnet depends on the command, not on its code.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

# package -> the other top-level packages it may import (its own is always allowed)
ALLOWED: dict[str, frozenset[str]] = {
    "plumbing": frozenset(),
    # The compiled build's loader and builder (nativebuild/): the standard library only; the
    # entry points (cli, node's version and start, bench) call it before state_machine loads.
    "nativebuild": frozenset(),
    # The bridge's EVM side (contract artifacts, vouchers, JSON-RPC calls): third-party only.
    "evm": frozenset(),
    "consensus": frozenset({"plumbing"}),
    "state_machine": frozenset({"plumbing", "consensus"}),
    "p2p": frozenset({"consensus", "state_machine", "plumbing"}),
    "node": frozenset({"p2p", "consensus", "state_machine", "plumbing", "evm", "nativebuild"}),
    "client": frozenset({"node", "state_machine", "plumbing", "evm"}),
    "localnet": frozenset(
        {"client", "node", "p2p", "consensus", "state_machine", "plumbing", "evm", "nativebuild"}
    ),
    "bench": frozenset(
        {"client", "localnet", "node", "p2p", "consensus", "state_machine", "plumbing", "evm",
         "nativebuild"}
    ),
    "cli": frozenset(
        {"bench", "client", "localnet", "node", "p2p", "consensus", "state_machine", "plumbing",
         "evm", "nativebuild"}
    ),
}
# The modules of ``state_machine`` that form the ``plumbing`` layer below consensus.
PLUMBING_MODULES = frozenset(
    {
        "state_machine.codec",
        "state_machine.crypto",
        "state_machine.intmath",
        "state_machine.invariants",
        "state_machine.txroot",
    }
)


def layer_of(module: str) -> str:
    """The layer of a dotted module name (or of a name imported from it)."""
    if any(module == m or module.startswith(m + ".") for m in PLUMBING_MODULES):
        return "plumbing"
    return module.split(".")[0]
# Finer rule for ``client``: the only modules of ``node`` it may import.
CLIENT_NODE_MODULES = frozenset({"node.keys", "node.api.units"})
# Packages whose functions must stay short (the style rule: one rule per small function).
SHORT_FUNCTION_PACKAGES = ("client", "bench", "cli", "localnet")
FUNCTION_LINES_MAX = 70


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports, at any depth, including by ``import_module("name")``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    dynamic = any(isinstance(n, ast.Call) and _is_import_module(n.func) for n in ast.walk(tree))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.extend((node.lineno, f"{node.module}.{a.name}") for a in node.names)
        elif isinstance(node, ast.Call) and _is_import_module(node.func) and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.append((node.lineno, arg.value))
        elif dynamic and isinstance(node, ast.Constant) and _is_module_name(node.value):
            # In a module that imports by name: module names in its tables (cli.main's
            # command modules, cli.bench's benchmarks) count as imports.
            found.append((node.lineno, str(node.value)))
    return found


def _is_import_module(func: ast.expr) -> bool:
    return (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
        isinstance(func, ast.Name) and func.id == "import_module"
    )


def _is_module_name(value: object) -> bool:
    if not isinstance(value, str):
        return False
    parts = value.split(".")
    return len(parts) >= 2 and parts[0] in ALLOWED and all(p.isidentifier() for p in parts)


def violations_in(path: Path, package: str) -> list[str]:
    bad = []
    for lineno, module in imported_modules(path):
        root = layer_of(module)
        if root == package or root not in ALLOWED:
            continue
        where = f"{path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}"
        if root not in ALLOWED[package]:
            bad.append(f"{where}:{lineno} ({package}) imports {module}")
        elif package == "client" and root == "node" and not _client_may_use(module):
            bad.append(f"{where}:{lineno} (client) imports {module}")
    return bad


def _client_may_use(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in CLIENT_NODE_MODULES)


def long_functions_in(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if lines > FUNCTION_LINES_MAX:
                out.append(f"{path.name}:{node.lineno} {node.name} has {lines} lines")
    return out


def package_files(package: str) -> list[Path]:
    if package == "plumbing":
        return sorted(REPO_ROOT / f"{m.replace('.', '/')}.py" for m in PLUMBING_MODULES)
    files = sorted((REPO_ROOT / package).rglob("*.py"))
    return [f for f in files if layer_of(_module_name(f)) == package]


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)


def test_every_package_has_a_layer() -> None:
    on_disk = {
        p.name
        for p in REPO_ROOT.iterdir()
        if (p / "__init__.py").is_file() and p.name not in ("tests",)
    }
    assert on_disk == set(ALLOWED) - {"plumbing"}


def test_layers_have_no_cycle() -> None:
    order: list[str] = []
    pending = dict(ALLOWED)
    while pending:
        ready = sorted(p for p, deps in pending.items() if deps <= set(order))
        assert ready, f"cycle among {sorted(pending)}"
        order.extend(ready)
        for p in ready:
            del pending[p]


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_layers_below(package: str) -> None:
    files = package_files(package)
    assert files
    assert [v for f in files for v in violations_in(f, package)] == []


@pytest.mark.parametrize("package", SHORT_FUNCTION_PACKAGES)
def test_functions_are_short(package: str) -> None:
    assert [v for f in package_files(package) for v in long_functions_in(f)] == []


def test_checker_catches_each_form(tmp_path: Path) -> None:
    """The checker itself fails on each way of importing upward."""
    samples = {
        "a.py": ("localnet", "from cli.trade_common import MarketInfo\n"),
        "b.py": ("localnet", "def f():\n    import cli.errors\n"),
        "c.py": ("client", "import localnet.net\n"),
        "d.py": ("client", "from node.storage import Store\n"),
        "e.py": ("bench", "import importlib\nimportlib.import_module('cli.main')\n"),
        "f.py": ("node", "import importlib\nM = ('client.http',)\nimportlib.import_module(M[0])\n"),
        "g.py": ("plumbing", "from consensus import types\n"),
        "h.py": ("consensus", "from state_machine.exchange import apply_block\n"),
        "i.py": ("plumbing", "from state_machine.exchange import apply_block\n"),
    }
    for name, (package, text) in samples.items():
        (tmp_path / name).write_text(text)
        assert violations_in(tmp_path / name, package), name
    ok = tmp_path / "ok.py"
    ok.write_text("from node.keys import read_key_file\nfrom node.api.units import parse_decimal\n")
    assert violations_in(ok, "client") == []
    long_fn = tmp_path / "long.py"
    long_fn.write_text("def f():\n" + "    x = 1\n" * FUNCTION_LINES_MAX)
    assert long_functions_in(long_fn) == [f"long.py:1 f has {FUNCTION_LINES_MAX + 1} lines"]
