"""Restart equivalence with the real exchange engine.

A long run of random blocks from the engine is committed through the store. At checkpoints
the store is closed and reopened (full recovery checks), the exchange state is rebuilt from the
stored entries, and both must match the state that never stopped: same entries, same digest,
same Merkle root; then both copies execute the same further blocks with identical results.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from node.storage import Store
from state_machine.codec import encode
from state_machine.exchange import BlockContext, BlockResult, ExchangeState, apply_block
from state_machine.merkle_state import MerkleState, verify_proof
from state_machine.tx import Transaction
from state_machine.txroot import tx_root, verify_tx_inclusion
from tests.state_machine.helpers import make_genesis
from tests.state_machine.randgen import RandomFlow

BLOCKS = 240
CHECKPOINT_EVERY = 60


def commit(store: Store, height: int, txs: list[Transaction], res: BlockResult) -> bytes:
    tx_ids = [r.tx_id for r in res.tx_results]
    block = encode([height, tx_root(tx_ids), [t.to_obj() for t in txs]])
    return store.commit_block(
        height=height,
        block_hash=hashlib.sha256(block).digest(),
        block=block,
        qc=b"commit qc %d" % height,
        writes=res.writes,
        tx_results=[(r.tx_id, encode(r.to_obj())) for r in res.tx_results],
        events=repr(res.events).encode(),
    )


def step(st: ExchangeState, flow: RandomFlow) -> tuple[list[Transaction], BlockResult]:
    txs = flow.block(st)
    res = apply_block(st, BlockContext(st.height + 1, st.timestamp_ms + 500, b""), txs)
    return txs, res


@pytest.mark.parametrize("seed", [3, 4])
def test_state_rebuilt_from_lmdb_equals_the_running_state(tmp_path: Path, seed: int) -> None:
    genesis = make_genesis(6)
    st = ExchangeState.from_genesis(genesis)
    store = Store.create(tmp_path, genesis.chain_id, genesis.hash(), st.entries())
    assert store.state_root == MerkleState.from_entries(st.entries()).root()
    flow = RandomFlow(seed)
    last_res: BlockResult | None = None
    last_height = 0
    checkpoints = 0
    while st.height < BLOCKS:
        txs, last_res = step(st, flow)
        last_height = st.height
        root = commit(store, st.height, txs, last_res)
        if st.height % CHECKPOINT_EVERY:
            continue
        checkpoints += 1
        store.close()
        store = Store.open(tmp_path)
        assert store.height == st.height and store.state_root == root
        entries = store.read_entries()
        assert entries == st.entries()
        assert root == MerkleState.from_entries(st.entries()).root()
        rebuilt = ExchangeState.from_entries(genesis, entries)
        assert rebuilt.digest() == st.digest()
        # Proofs of real entries verify against the committed root.
        for key, value in entries[:: max(1, len(entries) // 25)]:
            at = store.prove(key)
            assert at.value == value and verify_proof(root, key, value, at.proof)
        # The rebuilt copy and the running copy behave identically from here on.
        probe_running, probe_rebuilt = RandomFlow(seed + 100), RandomFlow(seed + 100)
        for _ in range(3):
            txs, ra = step(st, probe_running)
            commit(store, st.height, txs, ra)
            _, rb = step(rebuilt, probe_rebuilt)
            assert [r.to_obj() for r in ra.tx_results] == [r.to_obj() for r in rb.tx_results]
            assert ra.writes == rb.writes and ra.events == rb.events
            assert rebuilt.digest() == st.digest()
    assert checkpoints >= 3
    assert last_res is not None and last_res.tx_results
    tx_ids = [r.tx_id for r in last_res.tx_results]
    found = store.tx_inclusion(tx_ids[-1])
    assert found is not None and found[0] == last_height
    assert verify_tx_inclusion(tx_ids[-1], found[1], tx_root(tx_ids))
    # The run changed real state: many distinct keys and a root unlike genesis.
    assert len(store.read_entries()) > 30
    store.close()
