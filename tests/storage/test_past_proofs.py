"""Proofs at past heights: the latest state rolled back by the stored undo records."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.storage import ProofHeightError, Store, StoreCorruptError, StoreError, height_key
from state_machine.merkle_state import DEFAULT_SHAPE, MerkleState, verify_proof
from tests.storage.helpers import (
    CHAIN_ID,
    GENESIS_ENTRIES,
    GENESIS_HASH,
    commit,
    expected_state,
    make_block,
)
from tests.storage.test_storage import keys_in_one_slot

SEED = 23
BLOCKS = 40


def undo_heights(store: Store) -> list[int]:
    with store.read_txn() as txn:
        cursor = txn.cursor(db=store._dbs["undo"])
        return [int.from_bytes(k, "big") for k in cursor.iternext(keys=True, values=False)]


def check_proofs_at(store: Store, height: int, keys: list[bytes]) -> None:
    state = expected_state(SEED, height)
    tree = MerkleState.from_entries(sorted(state.items()))
    root = tree.root()
    proofs = store.prove_many(keys, height)
    for key, at in zip(keys, proofs, strict=True):
        assert (at.height, at.state_root, at.key) == (height, root, key)
        assert at.value == state.get(key), (height, key)
        assert verify_proof(root, key, at.value, at.proof), (height, key)
        # The proof is exactly the one a tree of that height's state gives.
        assert at.proof == tree.prove(key)


def test_every_kept_height_proves_its_own_state(tmp_path: Path) -> None:
    with Store.create(tmp_path, CHAIN_ID, GENESIS_HASH, GENESIS_ENTRIES) as store:
        store.proof_history_heights = 25
        for h in range(1, BLOCKS + 1):
            commit(store, make_block(SEED, h))
        # Keys that were inserted, updated, deleted and re-inserted over the run, plus
        # genesis keys and keys never written.
        keys = sorted({k for h in range(1, BLOCKS + 1) for k, _ in make_block(SEED, h).writes})
        keys = [*keys[::5], GENESIS_ENTRIES[0][0], b"never-written"]
        for height in range(BLOCKS - 25, BLOCKS + 1):
            check_proofs_at(store, height, keys)
        # Only the last 25 undo records are kept: heights 15..40 are provable, 14 is not.
        assert undo_heights(store) == list(range(BLOCKS - 24, BLOCKS + 1))
        with pytest.raises(ProofHeightError, match="no longer kept"):
            store.prove_many(keys, BLOCKS - 26)
        with pytest.raises(ProofHeightError, match="not committed yet"):
            store.prove_many(keys, BLOCKS + 1)


def test_history_survives_a_reopen_and_shrinks_with_the_setting(tmp_path: Path) -> None:
    with Store.create(tmp_path, CHAIN_ID, GENESIS_HASH, GENESIS_ENTRIES) as store:
        for h in range(1, 11):
            commit(store, make_block(SEED, h))
    with Store.open(tmp_path) as store:
        check_proofs_at(store, 0, [GENESIS_ENTRIES[3][0], b"k/00001", b"k/00002"])
        store.proof_history_heights = 3
        commit(store, make_block(SEED, 11))
        assert undo_heights(store) == [9, 10, 11]
        check_proofs_at(store, 8, [b"k/00001", b"k/00017"])


def test_no_history_kept_means_latest_only(tmp_path: Path) -> None:
    with Store.create(tmp_path, CHAIN_ID, GENESIS_HASH, GENESIS_ENTRIES) as store:
        store.proof_history_heights = 0
        for h in range(1, 6):
            commit(store, make_block(SEED, h))
        assert undo_heights(store) == []
        check_proofs_at(store, 5, [b"k/00001"])
        with pytest.raises(ProofHeightError, match="no longer kept"):
            store.prove_many([b"k/00001"], 4)


@pytest.mark.parametrize("archive", [False, True])
def test_past_proofs_across_a_split_and_collapsed_slot(tmp_path: Path, archive: bool) -> None:
    """Inner nodes below the fixed top come and go; the undo records (or, in an archive, the
    version index) restore them."""
    crowd = sorted(keys_in_one_slot(DEFAULT_SHAPE.bucket_cap + 4))
    with Store.create(tmp_path, CHAIN_ID, GENESIS_HASH, GENESIS_ENTRIES) as store:
        store.archive = archive
        states = {0: dict(GENESIS_ENTRIES)}
        script: list[list[tuple[bytes, bytes | None]]] = [
            [(k, k) for k in crowd],  # the slot overflows: split into deeper inner nodes
            [(k, b"v2") for k in crowd[::3]],
            [(k, None) for k in crowd[:10]],  # back under the cap: collapses to a bucket
            [(crowd[0], b"back")],
        ]
        for height, writes in enumerate(script, start=1):
            store.commit_block(
                height=height, block_hash=b"h%d" % height, block=b"b", qc=b"q", writes=writes
            )
            state = dict(states[height - 1])
            for k, v in writes:
                if v is None:
                    state.pop(k, None)
                else:
                    state[k] = v
            states[height] = state
        for height, state in states.items():
            root = MerkleState.from_entries(sorted(state.items())).root()
            proofs = store.prove_many([crowd[0], crowd[5], crowd[-1], b"absent"], height)
            for at in proofs:
                assert at.state_root == root and at.value == state.get(at.key)
                assert verify_proof(root, at.key, at.value, at.proof)


def test_a_garbled_undo_record_is_an_error_not_a_wrong_proof(tmp_path: Path) -> None:
    with Store.create(tmp_path, CHAIN_ID, GENESIS_HASH, GENESIS_ENTRIES) as store:
        for h in range(1, 4):
            commit(store, make_block(SEED, h))
        with store._env.begin(write=True) as txn:
            raw = bytearray(txn.get(height_key(3), db=store._dbs["undo"]))
            raw[-1] ^= 1
            txn.put(height_key(3), bytes(raw), db=store._dbs["undo"])
        with pytest.raises(StoreCorruptError, match="undo record 3"):
            store.prove_many([b"k/00001"], 1)


@pytest.mark.parametrize("archive", [False, True])
def test_a_key_written_twice_in_one_block_rolls_back_to_its_value_before_it(
    tmp_path: Path, archive: bool
) -> None:
    key = GENESIS_ENTRIES[1][0]
    with Store.create(tmp_path, CHAIN_ID, GENESIS_HASH, GENESIS_ENTRIES) as store:
        store.archive = archive
        store.commit_block(
            height=1, block_hash=b"h1", block=b"b", qc=b"q", writes=[(key, b"one"), (key, b"two")]
        )
        assert store.prove_many([key], 1)[0].value == b"two"
        assert store.prove_many([key], 0)[0].value == GENESIS_ENTRIES[1][1]


def test_a_proof_reads_a_bounded_amount_of_undo_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A remote client cannot make one proof decode an unbounded history."""
    with Store.create(tmp_path, CHAIN_ID, GENESIS_HASH, GENESIS_ENTRIES) as store:
        for h in range(1, 11):
            commit(store, make_block(SEED, h))
        with store.read_txn() as txn:
            sizes = [len(txn.get(height_key(h), db=store._dbs["undo"])) for h in range(1, 11)]
        monkeypatch.setattr("node.storage.PROOF_UNDO_BYTES_MAX", sum(sizes[5:]))
        check_proofs_at(store, 5, [b"k/00001"])  # needs exactly the records of 6..10
        with pytest.raises(ProofHeightError, match="too far back to prove here"):
            store.prove_many([b"k/00001"], 4)
        with store.read_txn() as txn:  # an operator's export is not bounded
            entries, _ = store.state_at(txn, 0)
        assert entries == sorted(GENESIS_ENTRIES)


def test_an_archive_store_keeps_every_height_provable_and_refuses_pruning(
    tmp_path: Path,
) -> None:
    # proof_history_heights = 0 would keep nothing; archive overrides it and keeps all.
    with Store.create(tmp_path, CHAIN_ID, GENESIS_HASH, GENESIS_ENTRIES) as store:
        store.proof_history_heights = 0
        store.archive = True
        for h in range(1, BLOCKS + 1):
            commit(store, make_block(SEED, h))
        assert undo_heights(store) == list(range(1, BLOCKS + 1))
        with pytest.raises(StoreError, match="archive"):
            store.prune_blocks(5)
        assert store.get_block(1) is not None
    # A reopened store is not an archive until told; the node sets it from the config at
    # start-up, before any commit, so nothing is dropped in between.
    with Store.open(tmp_path) as store:
        store.archive = True
        store.proof_history_heights = 3
        commit(store, make_block(SEED, BLOCKS + 1))
        assert undo_heights(store) == list(range(1, BLOCKS + 2))
        keys = sorted({k for h in range(1, BLOCKS + 1) for k, _ in make_block(SEED, h).writes})
        keys = [*keys[::7], GENESIS_ENTRIES[0][0], b"never-written"]
        for height in range(0, BLOCKS + 2):
            check_proofs_at(store, height, keys)


def test_archive_proofs_use_the_version_index_not_the_undo_walk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the undo walk allowed one byte, only the archive's version index can prove a past
    height: it covers exactly the heights after an unbroken run of archive commits began."""
    monkeypatch.setattr("node.storage.PROOF_UNDO_BYTES_MAX", 1)
    keys = sorted({k for h in range(1, 31) for k, _ in make_block(SEED, h).writes})
    keys = [*keys[::6], GENESIS_ENTRIES[0][0], b"never-written"]
    with Store.create(tmp_path, CHAIN_ID, GENESIS_HASH, GENESIS_ENTRIES) as store:
        for h in range(1, 11):  # not yet an archive: undo records only
            commit(store, make_block(SEED, h))
        store.archive = True
        for h in range(11, 31):
            commit(store, make_block(SEED, h))
        for height in range(10, 31):  # every block after these wrote its versions
            check_proofs_at(store, height, keys)
        with pytest.raises(ProofHeightError, match="too far back"):
            store.prove_many(keys, 9)  # block 10 has no versions: the bounded walk
        store.archive = False  # a commit without versions breaks the run
        commit(store, make_block(SEED, 31))
        with pytest.raises(ProofHeightError, match="too far back"):
            store.prove_many(keys, 20)
        monkeypatch.setattr("node.storage.PROOF_UNDO_BYTES_MAX", 64 * 1024 * 1024)
        check_proofs_at(store, 20, keys)  # the undo walk still proves it


def test_archive_versions_stay_true_after_a_rollback_and_another_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rolled-back block's versions are not deleted: each says what a key held before that
    height, which the other block at that height does not change."""
    monkeypatch.setattr("node.storage.PROOF_UNDO_BYTES_MAX", 1)  # the index alone proves
    other = make_block(SEED + 1, 12)  # different keys and values than block 12 of SEED
    with Store.create(tmp_path, CHAIN_ID, GENESIS_HASH, GENESIS_ENTRIES) as store:
        store.archive = True
        for h in range(1, 13):
            commit(store, make_block(SEED, h))
        assert store.roll_back_one_height() == 11
        commit(store, other)
        commit(store, make_block(SEED + 1, 13))
        states = {h: expected_state(SEED, h) for h in range(12)}
        for h in (12, 13):
            states[h] = dict(states[h - 1])
            for k, v in make_block(SEED + 1, h).writes:
                if v is None:
                    states[h].pop(k, None)
                else:
                    states[h][k] = v
        keys = [*sorted({k for s in states.values() for k in s})[::4], b"never-written"]
        for height in range(0, 13):
            tree = MerkleState.from_entries(sorted(states[height].items()))
            for key, at in zip(keys, store.prove_many(keys, height), strict=True):
                assert at.state_root == tree.root(), height
                assert at.value == states[height].get(key), (height, key)
                assert at.proof == tree.prove(key)
