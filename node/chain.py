"""The node's chain state: storage, the exchange working copy, and block execution.

Theory of operation
-------------------
:class:`Chain` owns the LMDB :class:`~node.storage.Store` and the in-memory
:class:`~state_machine.exchange.ExchangeState`, and is the only code that changes either.

* Opening: a new data dir is created from genesis (the genesis entries are written whole at
  height 0). An existing one is opened by the store (which checks its pages and recomputes the
  Merkle root from the stored entries); the exchange state is rebuilt from the same entries and
  its own entries must hash to the same root, else the node refuses to start.
* Executing a committed block (:meth:`Chain.execute`): decode the payload (signatures were
  verified before the block was voted on or synced), ``apply_block`` on the working copy, then
  ONE LMDB write transaction with block, commit QC, write set, Merkle nodes, results and events
  (:meth:`Store.commit_block`). The new state root goes back to consensus.
* A decode cache (:class:`DecodeCache`) maps raw transaction bytes to ``(Transaction, tx id,
  signature verdict)``. Admission, the pre-check of proposals and sync responses, the payload
  check and execution all consult it first, so a transaction is decoded and verified once per
  node whichever way it arrives (client, gossip, proposal, sync). The key is the raw bytes, not
  the tx id: the id hashes the signing bytes only, so a copy with a different signature shares
  it, while the bytes include the signature.

``execute`` is synchronous and runs on the event loop except for the LMDB commit, which the
driver runs in a worker thread (py-lmdb write transactions must stay on one thread; the
commit opens, writes and commits inside one call).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from consensus.types import (
    Block,
    CommittedBlock,
    QuorumCert,
    SafetyData,
)
from node.storage import Store, StoreError, StoreMissingError
from state_machine.codec import DecodeError, encode
from state_machine.crypto import verify
from state_machine.exchange import BlockContext, BlockResult, ExchangeState, apply_block
from state_machine.genesis import Genesis
from state_machine.merkle_state import MerkleState
from state_machine.tx import Transaction

DECODE_CACHE_MAX = 200_000


class ChainError(Exception):
    """The chain data cannot be used (wrong chain, mismatched roots, corrupt store)."""


@dataclasses.dataclass(slots=True)
class Executed:
    """What executing one committed block produced."""

    height: int
    block_hash: bytes
    state_root: bytes
    timestamp_ms: int
    txs: list[Transaction]
    tx_ids: list[bytes]
    result: BlockResult
    execute_s: float = 0.0
    persist_s: float = 0.0


def genesis_state_root(genesis: Genesis) -> bytes:
    """The root of the state at height 0: every validator computes the same one."""
    return MerkleState.from_entries(ExchangeState.from_genesis(genesis).entries()).root()


class DecodeCache:
    """Raw transaction bytes -> (transaction, tx id, signature verdict), bounded, FIFO.

    Bad verdicts are kept too: the same bytes always verify the same way."""

    def __init__(self, entries_max: int = DECODE_CACHE_MAX) -> None:
        self._entries: OrderedDict[bytes, tuple[Transaction, bytes, bool]] = OrderedDict()
        self.entries_max = entries_max

    def get(self, raw: bytes) -> tuple[Transaction, bytes, bool] | None:
        return self._entries.get(raw)

    def put(self, raw: bytes, tx: Transaction, tx_id: bytes, valid: bool) -> None:
        self._entries[raw] = (tx, tx_id, valid)
        while len(self._entries) > self.entries_max:
            self._entries.popitem(last=False)

    def decode_and_verify(self, raw: bytes) -> tuple[Transaction, bytes, bool] | None:
        """The cached verdict, or decode and verify now; None if the bytes do not decode."""
        hit = self._entries.get(raw)
        if hit is not None:
            return hit
        try:
            tx = Transaction.from_wire(raw)
        except DecodeError:
            return None
        signing = tx.signing_bytes()
        entry = (tx, Transaction.tx_id_from(signing), verify(tx.signer, signing, tx.signature))
        self.put(raw, *entry)
        return entry

    def __len__(self) -> int:
        return len(self._entries)


class Chain:
    def __init__(self, genesis: Genesis, store: Store, state: ExchangeState) -> None:
        self.genesis = genesis
        self.store = store
        self.state = state
        self.decoded = DecodeCache()

    # ---- opening -------------------------------------------------------------------------------

    @classmethod
    def open(cls, data_dir: Path, genesis: Genesis, *, map_size_bytes: int) -> Chain:
        """Open (or create from genesis) the chain data in ``data_dir``."""
        try:
            store = Store.open(data_dir, map_size_bytes=map_size_bytes)
        except StoreMissingError:
            state = ExchangeState.from_genesis(genesis)
            store = Store.create(
                data_dir,
                genesis.chain_id,
                genesis.hash(),
                state.entries(),
                map_size_bytes=map_size_bytes,
            )
            return cls(genesis, store, state)
        except StoreError as exc:
            raise ChainError(str(exc)) from None
        try:
            return cls._rebuild(genesis, store)
        except ChainError:
            store.close()
            raise

    @classmethod
    def open_existing(
        cls, data_dir: Path, genesis: Genesis, *, map_size_bytes: int, walk_pages: bool = True
    ) -> Chain:
        """Open the chain data in ``data_dir``, which must exist (ChainError otherwise)."""
        try:
            store = Store.open(data_dir, map_size_bytes=map_size_bytes, walk_pages=walk_pages)
        except StoreError as exc:
            raise ChainError(str(exc)) from None
        try:
            return cls._rebuild(genesis, store)
        except ChainError:
            store.close()
            raise

    @classmethod
    def _rebuild(cls, genesis: Genesis, store: Store) -> Chain:
        meta = store.meta
        if meta.chain_id != genesis.chain_id:
            raise ChainError(
                f"data belongs to chain {meta.chain_id!r}, genesis is {genesis.chain_id!r}"
            )
        if meta.genesis_hash != genesis.hash():
            raise ChainError("data was created from a different genesis file")
        entries = store.read_entries()
        try:
            state = ExchangeState.from_entries(genesis, entries)
        except Exception as exc:  # any failure here means the entries are not a valid state
            raise ChainError(f"cannot rebuild the exchange state: {exc}") from None
        rebuilt_root = MerkleState.from_entries(state.entries()).root()
        if rebuilt_root != meta.state_root:
            raise ChainError(
                f"rebuilt state root {rebuilt_root.hex()} differs from the stored root "
                f"{meta.state_root.hex()} at height {meta.height}"
            )
        if state.height != meta.height:
            raise ChainError(f"state height {state.height} differs from store {meta.height}")
        return cls(genesis, store, state)

    def close(self) -> None:
        self.store.close()

    # ---- reading ---------------------------------------------------------------------------

    @property
    def height(self) -> int:
        return self.store.height

    @property
    def state_root(self) -> bytes:
        return self.store.state_root

    def committed_block(self, height: int) -> CommittedBlock | None:
        raw_block = self.store.get_block(height)
        raw_qc = self.store.get_qc(height)
        if raw_block is None or raw_qc is None:
            return None
        return CommittedBlock(Block.from_wire(raw_block), QuorumCert.from_wire(raw_qc))

    def recent_committed(self, count: int) -> list[CommittedBlock]:
        """The last ``count`` committed blocks with QCs, in height order (for consensus)."""
        out: list[CommittedBlock] = []
        for height in range(max(1, self.height - count + 1), self.height + 1):
            entry = self.committed_block(height)
            if entry is not None:
                out.append(entry)
        return out

    def read_safety(self, chain_id: str) -> SafetyData | None:
        raw = self.store.read_safety_data()
        if raw is None:
            return None
        try:
            safety = SafetyData.from_wire(raw)
        except DecodeError as exc:
            # Refuse rather than guess: a validator that forgot its promises could equivocate.
            raise ChainError(
                f"stored consensus safety record does not decode ({exc.reason}); the data dir "
                "was written by an incompatible version"
            ) from None
        if safety.chain_id != chain_id:
            raise ChainError("stored safety data belongs to another chain")
        return safety

    # ---- executing ---------------------------------------------------------------------------

    def decode_payload(self, payload: Sequence[bytes]) -> tuple[list[Transaction], list[bytes]]:
        txs: list[Transaction] = []
        ids: list[bytes] = []
        for raw in payload:
            entry = self.decoded.decode_and_verify(raw)
            # A committed block's transactions were checked before the quorum voted for it.
            assert entry is not None and entry[2], "committed block holds an invalid transaction"
            txs.append(entry[0])
            ids.append(entry[1])
        return txs, ids

    def apply(self, block: Block) -> tuple[list[Transaction], list[bytes], BlockResult]:
        """Apply a committed block to the in-memory state (the first half of execution)."""
        header = block.header
        txs, ids = self.decode_payload(block.payload)
        ctx = BlockContext(header.height, header.timestamp_ms, header.proposer)
        result = apply_block(self.state, ctx, txs, ids)
        return txs, ids, result

    def persist(
        self, block: Block, commit_qc: QuorumCert, ids: Sequence[bytes], result: BlockResult
    ) -> bytes:
        """The one LMDB write of a block (the second half); returns the new state root.
        Runs in a worker thread."""
        tx_results = [
            (tx_id, encode(r.to_obj())) for tx_id, r in zip(ids, result.tx_results, strict=True)
        ]
        return self.store.commit_block(
            height=block.height,
            block_hash=block.block_hash(),
            block=block.to_wire(),
            qc=commit_qc.to_wire(),
            writes=result.writes,
            tx_results=tx_results,
            events=encode_events(result.events),
        )


def encode_events(events: Sequence[tuple[Any, ...]]) -> bytes:
    # msgpack writes a tuple as an array, byte for byte like a list, so the events need no
    # conversion (a copy of every event tuple cost more than the packing itself).
    return encode(events if isinstance(events, list) else list(events))
