"""Consensus parameters. Chain-wide ones (chain id, genesis, limits) must be equal on every
validator; the timing ones only need to be sensible."""

from __future__ import annotations

import dataclasses

from consensus.types import CHAIN_ID_CHARS, MAX_BLOCK_TXS_WIRE, MAX_CHAIN_ID_LEN, MAX_SYNC_BLOCKS


@dataclasses.dataclass(frozen=True, slots=True)
class ConsensusConfig:
    chain_id: str
    genesis_time_ms: int
    genesis_state_root: bytes
    block_interval_ms: int = 500
    view_timeout_base_ms: int = 2_000
    view_timeout_cap_ms: int = 60_000
    max_clock_drift_ms: int = 1_000
    max_block_txs: int = 10_000
    max_block_bytes: int = 4 * 1024 * 1024
    # Committed blocks (with QCs) kept in memory to answer sync requests and check ancestry.
    retain_blocks: int = 1_024
    sync_batch_blocks: int = 16
    sync_response_max_bytes: int = 8 * 1024 * 1024
    # Messages for views further ahead than this are dropped, not buffered.
    max_future_views: int = 64

    def __post_init__(self) -> None:
        if not 1 <= len(self.chain_id) <= MAX_CHAIN_ID_LEN or any(
            c not in CHAIN_ID_CHARS for c in self.chain_id
        ):
            raise ValueError(f"chain id must be 1..{MAX_CHAIN_ID_LEN} chars of [a-z0-9-]")
        if len(self.genesis_state_root) != 32:
            raise ValueError("genesis_state_root must be 32 bytes")
        if self.block_interval_ms < 0 or self.view_timeout_base_ms <= 0:
            raise ValueError("block interval and view timeout must be positive")
        if self.view_timeout_cap_ms < self.view_timeout_base_ms:
            raise ValueError("view_timeout_cap_ms must be at least view_timeout_base_ms")
        if not 0 < self.max_block_txs <= MAX_BLOCK_TXS_WIRE:
            raise ValueError(f"max_block_txs must be in 1..{MAX_BLOCK_TXS_WIRE}")
        if not 0 < self.sync_batch_blocks <= MAX_SYNC_BLOCKS:
            raise ValueError(f"sync_batch_blocks must be in 1..{MAX_SYNC_BLOCKS}")
        if self.retain_blocks < 2:
            raise ValueError("retain_blocks must be at least 2")
