"""Which modules the compiled build holds, and where it lives (shared by build and loader).

The list is the hot path of ``perpbft bench matching`` (order placement, matching, cancels,
amends, margin checks, the books, the records they touch, the end-of-block risk pass and the
per-block write-out, the ADL rankings a crash cascade keeps). Tests must not patch or subclass
what a compiled module uses (a compiled caller binds native classes and functions of its group
directly): tests/state_machine/test_adl_rankings.py checks the kept ADL rankings through the
risk index's own self-check switch for that reason. Left interpreted: modules mypyc cannot
compile as written (``state_machine.invariants``: ``InvariantError`` derives from
``RuntimeError``), and the rest of the package, off the hot path.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# Compiled extension modules and the stamp; never beside the sources (a stale .so there would
# shadow an edited .py).
BUILD_DIR = REPO_ROOT / "build" / "mypyc"
# mypyc's generated C and the compiler's object files.
WORK_DIR = REPO_ROOT / "build" / "mypyc-work"
STAMP_NAME = "stamp.json"
GROUP_NAME = "perpbft_native"
# Every source whose edit makes the build stale: the whole state machine (the compiled modules
# are built against the types of the modules they import).
HASHED_PACKAGES = ("state_machine",)

COMPILED_MODULES: tuple[str, ...] = (
    "state_machine.accounts.records",
    "state_machine.book",
    "state_machine.clob.amend",
    "state_machine.clob.cancel",
    "state_machine.clob.checks",
    "state_machine.clob.matching",
    "state_machine.clob.place",
    "state_machine.exchange",
    "state_machine.liquidation.adl",
    "state_machine.liquidation.index",
    "state_machine.liquidation.risk",
    "state_machine.nonces",
    "state_machine.perpetuals.margin",
    "state_machine.perpetuals.positions",
    "state_machine.perpetuals.records",
    "state_machine.prices.records",
    "state_machine.results",
    "state_machine.rounding",
    "state_machine.state",
    "state_machine.triggers.records",
)


def source_path(module: str) -> Path:
    return REPO_ROOT.joinpath(*module.split(".")).with_suffix(".py")
