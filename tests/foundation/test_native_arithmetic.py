"""The compiled build's integer products are exact at every size and sign (nativebuild/compile.py
builds against a copy of mypyc's runtime header whose small-int multiplication check is exact
instead of conservative: a wrong check would silently wrap a product in C)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nativebuild import loader
from nativebuild.compile import MUL_CHECK_EXACT, patched_runtime_header
from state_machine import rounding

needs_compiled = pytest.mark.skipif(
    loader.build_name() != "compiled",
    reason=f"the compiled build is not loaded ({loader.build_reason()}; make native builds it)",
)

# Around the edges that matter: mypyc's short ints (62 bits with the tag), the old conservative
# limit (2**30), the C product's 64 bits, and beyond.
EDGES = sorted(
    {
        sign * (2**k + d)
        for k in (0, 29, 30, 31, 32, 61, 62, 63, 64, 90)
        for d in (-1, 0, 1)
        for sign in (1, -1)
    }
)


@needs_compiled
def test_the_compiled_module_is_the_one_tested() -> None:
    assert Path(rounding.__file__).suffix != ".py"


@given(a=st.sampled_from(EDGES) | st.integers(), b=st.sampled_from(EDGES) | st.integers())
@settings(max_examples=3000, deadline=None)
def test_compiled_products_equal_exact_ones(a: int, b: int) -> None:
    # mul_ppm_floor multiplies its arguments in compiled code; the expected value is computed
    # here, interpreted.
    assert rounding.mul_ppm_floor(a, b) == (a * b) // 1_000_000
    assert rounding.mul_ppm_ceil(a, b) == -((-a * b) // 1_000_000)


def test_every_edge_pair_multiplies_exactly() -> None:
    for a in EDGES:
        for b in EDGES:
            assert rounding.mul_ppm_floor(a, b) == (a * b) // 1_000_000, (a, b)


def test_the_pinned_mypyc_header_gets_the_exact_check(tmp_path: Path) -> None:
    """If a new mypyc changes the header, the build uses it unpatched (slower, still correct):
    this test says so, so the patch is looked at again."""
    from mypyc.build import include_dir

    patched = patched_runtime_header(Path(include_dir()), tmp_path / "rt")
    assert patched is not None
    text = (patched / "CPy.h").read_text(encoding="utf-8")
    assert text.count(MUL_CHECK_EXACT) == 1
    assert "This is conservative" not in text
