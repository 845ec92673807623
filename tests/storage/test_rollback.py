"""``Store.roll_back_one_height``: the last block undone in one transaction, back to exactly
the previous state, the safety record untouched (``perpbft rollback``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.storage import Store, StoreError
from state_machine.merkle_state import MerkleState
from tests.storage.helpers import CHAIN_ID, GENESIS_ENTRIES, GENESIS_HASH, commit, make_block
from tests.storage.helpers import expected_state as state_at

SEED = 23


def store_at(data_dir: Path, height: int, history: int = 300) -> tuple[Store, list[bytes]]:
    store = Store.create(data_dir, CHAIN_ID, GENESIS_HASH, GENESIS_ENTRIES)
    store.proof_history_heights = history
    roots = [store.state_root]
    for h in range(1, height + 1):
        roots.append(commit(store, make_block(SEED, h)))
    return store, roots


def test_rollback_restores_the_previous_state_and_keeps_the_safety_record(
    tmp_path: Path,
) -> None:
    store, roots = store_at(tmp_path, 10)
    store.write_safety_data(b"promises made at view 12")
    assert store.roll_back_one_height() == 9
    assert store.state_root == roots[9] == store.tree.root()
    assert store.read_entries() == sorted(state_at(SEED, 9).items())
    assert store.meta.block_hash == make_block(SEED, 9).block_hash
    assert store.get_block(10) is None and store.get_qc(10) is None
    assert store.read_safety_data() == b"promises made at view 12"
    assert store.roll_back_one_height() == 8 and store.state_root == roots[8]
    # The chain continues from there with the same blocks and roots...
    assert commit(store, make_block(SEED, 9)) == roots[9]
    assert commit(store, make_block(SEED, 10)) == roots[10]
    store.close()
    # ... and the store passes the full check a restart makes.
    with Store.open(tmp_path) as reopened:
        assert reopened.height == 10 and reopened.state_root == roots[10]
        assert reopened.read_safety_data() == b"promises made at view 12"


def test_rollback_to_genesis(tmp_path: Path) -> None:
    store, roots = store_at(tmp_path, 1)
    assert store.roll_back_one_height() == 0
    assert store.state_root == roots[0] == MerkleState.from_entries(GENESIS_ENTRIES).root()
    assert store.meta.block_hash == b""
    with pytest.raises(StoreError, match="genesis"):
        store.roll_back_one_height()
    store.close()
    Store.open(tmp_path).close()


def test_rollback_refusals_change_nothing(tmp_path: Path) -> None:
    store, roots = store_at(tmp_path / "a", 3, history=0)
    with pytest.raises(StoreError, match="no undo record of height 3"):
        store.roll_back_one_height()
    assert store.height == 3 and store.state_root == roots[3]
    store.close()
    store, roots = store_at(tmp_path / "b", 12)
    assert store.prune_blocks(keep_last=1) == 11  # only block 12 is kept
    with pytest.raises(StoreError, match="block 11 is not stored"):
        store.roll_back_one_height()
    assert store.height == 12 and store.read_entries() == sorted(state_at(SEED, 12).items())
    store.close()
