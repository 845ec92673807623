"""Deterministic generic blocks for storage tests (no exchange engine needed)."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from node.storage import Store

CHAIN_ID = "storage-test"
GENESIS_HASH = hashlib.sha256(b"genesis").digest()
GENESIS_ENTRIES = [(b"genesis/%03d" % i, b"g" * (i % 7)) for i in range(50)]


@dataclass(frozen=True)
class GenericBlock:
    height: int
    block_hash: bytes
    block: bytes
    qc: bytes
    writes: list[tuple[bytes, bytes | None]]
    tx_results: list[tuple[bytes, bytes]]
    events: bytes


def make_block(seed: int, height: int, key_space: int = 400, changes: int = 30) -> GenericBlock:
    """Block ``height`` of chain ``seed``: the same arguments always give the same block."""
    rng = random.Random(seed * 1_000_003 + height)
    writes: dict[bytes, bytes | None] = {}
    for _ in range(changes):
        key = b"k/%05d" % rng.randrange(key_space)
        writes[key] = None if rng.random() < 0.2 else rng.randbytes(rng.randrange(1, 80))
    tx_ids = [
        hashlib.sha256(b"tx%d/%d/%d" % (seed, height, i)).digest()
        for i in range(rng.randrange(0, 5))
    ]
    block = b"block %d " % height + rng.randbytes(rng.randrange(10, 300))
    return GenericBlock(
        height=height,
        block_hash=hashlib.sha256(block).digest(),
        block=block,
        qc=b"qc for %d" % height,
        writes=sorted(writes.items()),
        tx_results=[(t, b"result %d" % i) for i, t in enumerate(tx_ids)],
        events=b"events %d" % height,
    )


def commit(store: Store, b: GenericBlock) -> bytes:
    return store.commit_block(
        height=b.height,
        block_hash=b.block_hash,
        block=b.block,
        qc=b.qc,
        writes=b.writes,
        tx_results=b.tx_results,
        events=b.events,
    )


def expected_state(seed: int, height: int) -> dict[bytes, bytes]:
    state = dict(GENESIS_ENTRIES)
    for h in range(1, height + 1):
        for k, v in make_block(seed, h).writes:
            if v is None:
                state.pop(k, None)
            else:
                state[k] = v
    return state
