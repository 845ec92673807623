"""The exchange modules use integers only: no float literals, no true division, no float()."""

from __future__ import annotations

import ast

import pytest

from tests.conftest import REPO_ROOT

# Every module of the state machine (the domain packages included), found on disk so that a new
# module is covered without editing this list.
MODULES = sorted(
    str(p.relative_to(REPO_ROOT / "state_machine").with_suffix(""))
    for p in (REPO_ROOT / "state_machine").rglob("*.py")
    if p.name != "__init__.py"
)


def float_uses(source: str) -> list[str]:
    bad = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, float):
            bad.append(f"line {node.lineno}: float literal {node.value!r}")
        elif isinstance(node, ast.BinOp | ast.AugAssign) and isinstance(node.op, ast.Div):
            bad.append(f"line {node.lineno}: true division")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and (node.func.id in ("float", "round"))
        ):
            bad.append(f"line {node.lineno}: {node.func.id}()")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names]
            mod = getattr(node, "module", None) or ""
            if mod in ("decimal", "fractions", "math") or {"decimal", "fractions", "math"} & set(
                names
            ):
                bad.append(f"line {node.lineno}: imports {mod or names}")
    return bad


@pytest.mark.parametrize("name", MODULES)
def test_module_is_integer_only(name: str) -> None:
    path = REPO_ROOT / "state_machine" / f"{name}.py"
    assert path.exists(), path
    assert float_uses(path.read_text(encoding="utf-8")) == []


def test_the_domain_modules_are_covered() -> None:
    assert {"exchange", "clob/matching", "liquidation/risk", "perpetuals/margin"} <= set(MODULES)


def test_checker_catches_floats() -> None:
    assert float_uses("x = 1.5\n")
    assert float_uses("x = a / b\n")
    assert float_uses("x /= 2\n")
    assert float_uses("x = float(3)\n")
    assert float_uses("from decimal import Decimal\n")
    assert not float_uses("x = a // b\n")
