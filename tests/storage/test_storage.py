"""LMDB store: commit, reads, proofs, safety data, pruning, recovery checks, corruption."""

from __future__ import annotations

import hashlib
import random
import shutil
from pathlib import Path

import lmdb
import pytest

from node.storage import (
    Store,
    StoreCorruptError,
    StoreError,
    StoreMissingError,
    state_db_key,
    store_path,
)
from state_machine.merkle_state import DEFAULT_SHAPE, MerkleState, verify_proof
from state_machine.txroot import tx_root, verify_tx_inclusion
from tests.storage.helpers import (
    CHAIN_ID,
    GENESIS_ENTRIES,
    GENESIS_HASH,
    commit,
    expected_state,
    make_block,
)

SEED = 11


def new_store(data_dir: Path, blocks: int = 0) -> Store:
    store = Store.create(data_dir, CHAIN_ID, GENESIS_HASH, GENESIS_ENTRIES)
    for h in range(1, blocks + 1):
        commit(store, make_block(SEED, h))
    return store


def test_genesis_store_and_reopen(tmp_path: Path) -> None:
    with new_store(tmp_path) as store:
        assert store.height == 0
        assert store.state_root == MerkleState.from_entries(GENESIS_ENTRIES).root()
        assert store.meta.chain_id == CHAIN_ID and store.meta.genesis_hash == GENESIS_HASH
    with Store.open(tmp_path) as store:
        assert store.height == 0
        assert store.read_entries() == sorted(GENESIS_ENTRIES)
    with pytest.raises(StoreError, match="already exists"):
        Store.create(tmp_path, CHAIN_ID, GENESIS_HASH)


def test_commit_reopen_and_read_everything(tmp_path: Path) -> None:
    with new_store(tmp_path, blocks=40) as store:
        root = store.state_root
    with Store.open(tmp_path) as store:
        assert store.height == 40 and store.state_root == root
        state = expected_state(SEED, 40)
        assert store.read_entries() == sorted(state.items())
        assert store.state_root == MerkleState.from_entries(state.items()).root()
        for h in (1, 17, 40):
            b = make_block(SEED, h)
            assert store.get_block(h) == b.block
            assert store.get_qc(h) == b.qc
            assert store.get_events(h) == b.events
            assert store.get_height_of_block(b.block_hash) == h
            assert store.get_block_by_hash(b.block_hash) == (h, b.block)
            tx_ids = [t for t, _ in b.tx_results]
            for i, (tx_id, result) in enumerate(b.tx_results):
                record = store.get_tx_result(tx_id)
                assert record is not None and (record.height, record.index, record.result) == (
                    h,
                    i,
                    result,
                )
                found = store.tx_inclusion(tx_id)
                assert found is not None and found[0] == h
                assert verify_tx_inclusion(tx_id, found[1], tx_root(tx_ids))
        assert store.get_block(41) is None


def test_proofs_from_the_store_verify(tmp_path: Path) -> None:
    with new_store(tmp_path, blocks=10) as store:
        state = expected_state(SEED, 10)
        for key in [*list(state)[:20], b"absent", b"k/99999"]:
            at = store.prove(key)
            assert at.height == 10 and at.state_root == store.state_root
            assert at.value == state.get(key)
            assert verify_proof(at.state_root, key, at.value, at.proof)
            assert at.proof == store.tree.prove(key)


def test_commit_rejects_wrong_height_and_duplicate_hash(tmp_path: Path) -> None:
    with new_store(tmp_path, blocks=2) as store:
        b3 = make_block(SEED, 3)
        with pytest.raises(StoreError, match="does not follow"):
            store.commit_block(
                height=5, block_hash=b3.block_hash, block=b3.block, qc=b"", writes=[]
            )
        b2 = make_block(SEED, 2)
        with pytest.raises(StoreError, match="already stored"):
            store.commit_block(
                height=3, block_hash=b2.block_hash, block=b3.block, qc=b"", writes=[]
            )
        assert store.height == 2
        commit(store, b3)
        assert store.height == 3


def test_safety_data_is_durable_and_separate(tmp_path: Path) -> None:
    with new_store(tmp_path, blocks=1) as store:
        assert store.read_safety_data() is None
        store.write_safety_data(b"view=7 locked=abc")
        store.write_safety_data(b"view=8 locked=def")
        root = store.state_root
    with Store.open(tmp_path) as store:
        assert store.read_safety_data() == b"view=8 locked=def"
        assert store.state_root == root and store.height == 1


def test_pruning_keeps_the_last_blocks_and_all_state(tmp_path: Path) -> None:
    with new_store(tmp_path, blocks=30) as store:
        root = store.state_root
        assert store.prune_blocks(keep_last=10, max_heights=5) == 5
        assert store.prune_blocks(keep_last=10) == 15
        assert store.prune_blocks(keep_last=10) == 0
        assert store.meta.base_height == 21
        for h in range(1, 21):
            b = make_block(SEED, h)
            assert store.get_block(h) is None and store.get_qc(h) is None
            assert store.get_height_of_block(b.block_hash) is None
            for tx_id, _ in b.tx_results:
                assert store.get_tx_result(tx_id) is None
        for h in range(21, 31):
            assert store.get_block(h) == make_block(SEED, h).block
        state = expected_state(SEED, 30)
        for key in list(state)[:10]:
            at = store.prove(key)
            assert verify_proof(root, key, state[key], at.proof)
        with pytest.raises(StoreError):
            store.prune_blocks(keep_last=0)
    with Store.open(tmp_path) as store:
        assert store.state_root == root and store.meta.base_height == 21
        commit(store, make_block(SEED, 31))


def raw_env(data_dir: Path) -> lmdb.Environment:
    return lmdb.open(str(store_path(data_dir)), max_dbs=16, subdir=True)


def test_tampered_state_entry_is_refused(tmp_path: Path) -> None:
    new_store(tmp_path, blocks=5).close()
    env = raw_env(tmp_path)
    with env.begin(write=True) as txn:
        db = env.open_db(b"state", txn=txn)
        txn.put(state_db_key(b"k/00001"), b"forged balance", db=db)
    env.close()
    with pytest.raises(StoreCorruptError, match="state root mismatch"):
        Store.open(tmp_path)


def test_tampered_merkle_node_is_refused(tmp_path: Path) -> None:
    new_store(tmp_path, blocks=5).close()
    env = raw_env(tmp_path)
    with env.begin(write=True) as txn:
        db = env.open_db(b"nodes", txn=txn)
        key, value = next(iter(txn.cursor(db=db)))
        txn.put(bytes(key), bytes(value) + b"\x00", db=db)
    env.close()
    with pytest.raises(StoreCorruptError, match="merkle node"):
        Store.open(tmp_path)


def test_tampered_block_is_refused(tmp_path: Path) -> None:
    new_store(tmp_path, blocks=5).close()
    env = raw_env(tmp_path)
    with env.begin(write=True) as txn:
        db = env.open_db(b"blocks", txn=txn)
        stored = txn.get((5).to_bytes(8, "big"), db=db)
        assert stored is not None
        value = bytearray(stored)
        value[-1] ^= 1
        txn.put((5).to_bytes(8, "big"), bytes(value), db=db)
    env.close()
    with pytest.raises(StoreCorruptError, match="checksum"):
        Store.open(tmp_path)


def test_missing_store_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no store"):
        Store.open(tmp_path / "nothing")


@pytest.fixture(scope="module")
def pristine(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, bytes, list[tuple[bytes, bytes]]]:
    data_dir = tmp_path_factory.mktemp("pristine")
    with new_store(data_dir, blocks=60) as store:
        return data_dir, store.state_root, store.read_entries()


@pytest.mark.parametrize("seed", range(24))
def test_damaged_data_file_gives_a_clear_error_or_the_right_state(
    tmp_path: Path, pristine: tuple[Path, bytes, list[tuple[bytes, bytes]]], seed: int
) -> None:
    """Truncated or garbled data.mdb: a StoreCorruptError, never a crash or wrong state.

    If the damage only hit pages LMDB no longer uses, the store may open; then it must hold
    exactly the state it held before.
    """
    src, root, entries = pristine
    shutil.copytree(store_path(src), store_path(tmp_path))
    data_file = store_path(tmp_path) / "data.mdb"
    data = bytearray(data_file.read_bytes())
    rng = random.Random(seed)
    mode = seed % 3
    if mode == 0:
        data = data[: rng.randrange(0, len(data))]
    elif mode == 1:
        for _ in range(16):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    else:
        start = rng.randrange(len(data) - 4096)
        data[start : start + 4096] = rng.randbytes(4096)
    data_file.write_bytes(bytes(data))
    try:
        store = Store.open(tmp_path)
    except StoreCorruptError as exc:
        assert str(exc)
        return
    with store:
        assert mode != 0, "a truncated file must never open"
        assert store.state_root == root
        assert store.read_entries() == entries


def test_a_creation_killed_half_way_leaves_no_store(tmp_path: Path) -> None:
    """Creation happens in a side directory renamed into place; leftovers are ignored."""
    leftover = store_path(tmp_path).with_name(store_path(tmp_path).name + ".creating")
    leftover.mkdir(parents=True)
    (leftover / "data.mdb").write_bytes(b"half written")
    with pytest.raises(StoreMissingError):
        Store.open(tmp_path)
    new_store(tmp_path, blocks=1).close()
    assert not leftover.exists()
    with Store.open(tmp_path) as store:
        assert store.height == 1


def test_state_entry_under_the_wrong_slot_is_refused(tmp_path: Path) -> None:
    new_store(tmp_path, blocks=3).close()
    env = raw_env(tmp_path)
    with env.begin(write=True) as txn:
        db = env.open_db(b"state", txn=txn)
        key = b"genesis/001"
        value = txn.get(state_db_key(key), db=db)
        assert value is not None
        txn.delete(state_db_key(key), db=db)
        wrong = bytes([state_db_key(key)[0] ^ 1]) + state_db_key(key)[1:]
        txn.put(wrong, value, db=db)
    env.close()
    with pytest.raises(StoreCorruptError, match="wrong slot"):
        Store.open(tmp_path)


# i such that sha256(b"crowd%d" % i) starts with 12 34: found once by brute force (about 5.4
# million hashes); the test re-checks them, which is cheap.
CROWD_NUMBERS = [
    27091, 72508, 124291, 310350, 364089, 531882, 603486, 624435, 642659, 737316, 742266,
    814017, 829176, 930659, 1075684, 1227151, 1287607, 1486490, 1645219, 1647377, 1861825,
    1886185, 1897665, 2205512, 2205754, 2230993, 2238390, 2304204, 2399734, 2425600, 2605241,
    2725892, 2809918, 2815607, 3102013, 3103245, 3156211, 3277212, 3306020, 3311275, 3392212,
    3475174, 3520816, 3756367, 3819092, 3823364, 4054916, 4085880, 4127922, 4173188, 4188901,
    4207052, 4311042, 4311403, 4502552, 4561764, 4575808, 4594514, 4635647, 4637270, 4659141,
    4833347, 4844914, 4949003, 5157688, 5172307, 5250918, 5413015,
]  # fmt: skip


def keys_in_one_slot(count: int) -> list[bytes]:
    """Keys whose sha256 shares its first two bytes: more than a bucket holds, in one slot."""
    keys = [b"crowd%d" % i for i in CROWD_NUMBERS[:count]]
    assert len(keys) == count
    assert all(hashlib.sha256(k).digest()[:2] == b"\x12\x34" for k in keys)
    return keys


def test_proofs_from_the_store_in_an_overflowing_slot(tmp_path: Path) -> None:
    """A slot with more keys than a bucket holds splits; store proofs walk the split nodes."""
    crowd = keys_in_one_slot(DEFAULT_SHAPE.bucket_cap + 4)
    with new_store(tmp_path, blocks=2) as store:
        store.commit_block(
            height=3, block_hash=b"h3", block=b"b", qc=b"q", writes=[(k, k) for k in sorted(crowd)]
        )
        for key in (crowd[0], crowd[-1], b"crowd-absent"):
            at = store.prove(key)
            assert len(at.proof.siblings) >= DEFAULT_SHAPE.min_depth
            assert at.proof == store.tree.prove(key)
            assert verify_proof(store.state_root, key, at.value, at.proof)
        assert len(store.prove(crowd[0]).proof.siblings) > DEFAULT_SHAPE.min_depth
        store.commit_block(
            height=4, block_hash=b"h4", block=b"b", qc=b"q", writes=[(k, None) for k in crowd[:10]]
        )
        root = store.state_root
        assert len(store.prove(crowd[-1]).proof.siblings) == DEFAULT_SHAPE.min_depth
        assert verify_proof(root, crowd[-1], crowd[-1], store.prove(crowd[-1]).proof)
    with Store.open(tmp_path) as store:  # the collapsed subtree left no stale inner nodes
        assert store.state_root == root


def test_an_empty_or_metadata_less_store_is_corrupt_not_missing(tmp_path: Path) -> None:
    """Never start afresh over a damaged store: its safety data may be lost with it."""
    store_path(tmp_path).mkdir(parents=True)
    (store_path(tmp_path) / "data.mdb").write_bytes(b"")
    with pytest.raises(StoreCorruptError, match="empty"):
        Store.open(tmp_path)
    new_store(tmp_path / "b", blocks=1).close()
    env = raw_env(tmp_path / "b")
    with env.begin(write=True) as txn:
        txn.delete(b"meta", db=env.open_db(b"meta", txn=txn))
    env.close()
    with pytest.raises(StoreCorruptError, match="no metadata"):
        Store.open(tmp_path / "b")
