"""The compiled contracts, committed as JSON beside this module (evm/artifacts/*.json).

``python -m evm.compile`` rebuilds them from contracts/*.vy with the pinned vyper; a test
(tests/evm/test_artifacts.py) recompiles and fails if a committed artifact is stale, so the
node never deploys bytecode that differs from the reviewed source.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONTRACTS = ("token", "bridge")
ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"


@dataclass(frozen=True)
class Artifact:
    name: str
    compiler: str
    abi: list[dict[str, Any]]
    bytecode: str  # 0x-hex init code


def artifact_text(name: str) -> str:
    if name not in CONTRACTS:
        raise ValueError(f"no contract {name!r} (have {', '.join(CONTRACTS)})")
    # Beside this module, not importlib.resources: a process whose working directory has an
    # ``evm/`` folder (a localnet home) sees ``evm`` as a namespace too, and resources would
    # look in that folder first.
    return (ARTIFACTS_DIR / f"{name}.json").read_text()


def load(name: str) -> Artifact:
    data = json.loads(artifact_text(name))
    return Artifact(name, data["compiler"], data["abi"], data["bytecode"])
