"""The consensus-critical bytes match the pinned golden vectors (``tests/vectors/golden/``).

A failure here means a node built from this code would disagree with every node of an existing
chain (block hashes, tx ids, signatures, state roots): that is a chain upgrade, never a refactor.
"""

from __future__ import annotations

import pytest

import consensus.types
from tests.vectors import golden

UPGRADE = (
    "consensus-critical bytes changed: this needs a chain upgrade; if intended, regenerate with "
    f"`{golden.REGENERATE}` and record the upgrade (tests/vectors/README.md)"
)


@pytest.mark.parametrize("name", sorted(golden.PRODUCERS))
def test_golden_vectors_unchanged(name: str) -> None:
    diffs = golden.differences(name)
    if diffs:
        pytest.fail(UPGRADE + "\n" + "\n".join(diffs[:40]), pytrace=False)


def test_a_changed_encoding_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison does see a change: a new block domain tag changes the pinned hashes."""
    monkeypatch.setattr(consensus.types, "BLOCK_DOMAIN_TAG", b"perpbft/block/v2\x00")
    diffs = golden.differences("consensus.json")
    assert any(d.startswith("consensus.json.block_header.block_hash: pinned") for d in diffs)
    assert any(d.startswith("consensus.json.genesis_block_hash") for d in diffs)


def test_every_action_type_has_a_vector() -> None:
    from state_machine.tx import ACTION

    pinned = {type(a) for _, a in golden.one_of_each_action()}
    assert pinned == set(ACTION.members), "an action type has no golden signing bytes / tx id"
