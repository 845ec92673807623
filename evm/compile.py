"""Compile contracts/*.vy into evm/artifacts/*.json (``python -m evm.compile``).

Needs the ``vyper`` package (a test dependency: the node itself only loads the artifacts).
The JSON is written deterministically (sorted keys, fixed indent) so recompiling an unchanged
source with the pinned compiler reproduces the committed file byte for byte.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import vyper

from evm.artifacts import CONTRACTS

REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCES = REPO_ROOT / "contracts"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def compile_text(name: str) -> str:
    """The artifact JSON of contracts/<name>.vy, as it is committed."""
    source = SOURCES / f"{name}.vy"
    out = vyper.compile_code(
        source.read_text(), contract_path=str(source.relative_to(REPO_ROOT)),
        output_formats=["abi", "bytecode"],
    )
    data = {
        "compiler": f"vyper {vyper.__version__}", "abi": out["abi"], "bytecode": out["bytecode"],
    }
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def main() -> int:
    ARTIFACTS.mkdir(exist_ok=True)
    for name in CONTRACTS:
        (ARTIFACTS / f"{name}.json").write_text(compile_text(name))
        print(f"evm/artifacts/{name}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
