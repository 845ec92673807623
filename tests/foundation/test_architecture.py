"""Architecture rules of the two cores (consensus/ and state_machine/), checked on the source.

* Modules depend on each other in one direction: the import graph between the modules of
  the two packages has no cycle. Every import counts, wherever it is written; imports inside
  functions (the usual way to hide a cycle) are refused outright. Imports under
  ``if TYPE_CHECKING:`` are left out: they only feed the type checker and never run.
* Functions stay small: none over ``MAX_FUNCTION_LINES`` lines, except the few listed in
  ``LONG_FUNCTIONS`` with the reason each one is long.

docs/ARCHITECTURE.md describes the layering these rules protect.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO_ROOT

PACKAGES = ("consensus", "state_machine")
MAX_FUNCTION_LINES = 70

# "module:function" -> why it may be longer. Keep this short.
LONG_FUNCTIONS: dict[str, str] = {
    "state_machine.clob.matching:match_order": (
        "the matching hot loop, written out flat on purpose: a helper call per maker costs "
        "throughput (perpbft bench matching)"
    ),
}


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO_ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def core_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((REPO_ROOT / pkg).rglob("*.py"))}


def type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside ``if TYPE_CHECKING:`` blocks."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and (
            (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
            or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")
        ):
            for sub in node.body:
                out.update(id(n) for n in ast.walk(sub))
    return out


def imports_of(tree: ast.AST, modules: set[str]) -> tuple[set[str], list[str]]:
    """(core modules imported, descriptions of imports written inside a function)."""
    skip = type_checking_nodes(tree)
    targets: set[str] = set()
    nested: list[str] = []
    for func in ast.walk(tree):
        if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(func):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    nested.append(f"line {node.lineno} in {func.name}()")
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                if sub in modules:
                    targets.add(sub)
                elif node.module in modules:
                    targets.add(node.module)
    return targets, nested


def import_graph() -> tuple[dict[str, set[str]], dict[str, list[str]]]:
    mods = core_modules()
    graph: dict[str, set[str]] = {}
    nested: dict[str, list[str]] = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[name], found = imports_of(tree, set(mods))
        graph[name].discard(name)
        if found:
            nested[name] = found
    return graph, nested


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def long_functions(tree: ast.AST, module: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            n = node.end_lineno - node.lineno + 1
            if n > MAX_FUNCTION_LINES:
                out[f"{module}:{node.name}"] = n
    return out


def test_the_graph_covers_both_packages() -> None:
    graph, _ = import_graph()
    assert "state_machine.exchange" in graph and "consensus.replica" in graph
    assert "state_machine.clob.matching" in graph["state_machine.liquidation.risk"]


def test_no_imports_inside_functions() -> None:
    _, nested = import_graph()
    assert nested == {}


def test_no_import_cycles() -> None:
    graph, _ = import_graph()
    assert cycles(graph) == []


def test_no_long_functions_beyond_the_listed_exceptions() -> None:
    found: dict[str, int] = {}
    for name, path in core_modules().items():
        found.update(long_functions(ast.parse(path.read_text(encoding="utf-8")), name))
    assert sorted(found) == sorted(LONG_FUNCTIONS), found


def test_the_checkers_catch_what_they_name() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from x.b import B\n"
        "from x import c\n"
        "def f():\n    import x.d\n"
    )
    targets, nested = imports_of(tree, {"x.b", "x.c", "x.d"})
    assert targets == {"x.c", "x.d"} and nested == ["line 6 in f()"]
    body = "\n".join(f"    x = {i}" for i in range(MAX_FUNCTION_LINES))
    assert long_functions(ast.parse(f"def g():\n{body}\n"), "m") == {"m:g": 71}
