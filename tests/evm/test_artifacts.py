"""The committed contract artifacts (evm/artifacts/*.json) are what the pinned vyper makes of
contracts/*.vy today: a changed source without `python -m evm.compile` fails here."""

from __future__ import annotations

import json

import pytest

from evm import artifacts
from evm.compile import compile_text


@pytest.mark.parametrize("name", artifacts.CONTRACTS)
def test_committed_artifact_matches_a_fresh_compile(name: str) -> None:
    assert artifacts.artifact_text(name) == compile_text(name)


def test_artifacts_load() -> None:
    bridge = artifacts.load("bridge")
    assert bridge.bytecode.startswith("0x") and bridge.compiler.startswith("vyper 0.4")
    names = {e.get("name") for e in bridge.abi}
    assert {"deposit", "withdraw", "finalize", "freeze", "unfreeze", "update_validators"} <= names
    with pytest.raises(ValueError, match="no contract"):
        artifacts.load("nope")
    assert json.loads(artifacts.artifact_text("token"))["abi"]
