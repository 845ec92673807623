"""Block limits by height: the configured limits until the chain's state schedules others.

Governance (state_machine/governance/chainparams.py) schedules new limits for the blocks from
``execution height + BLOCK_LIMITS_DELAY_BLOCKS`` on; the driver reports the schedule with each
``BlockExecuted``. The replica checks block ``h`` (and proposes it) only after executing block
``h - 1`` (the header carries that state root, and uncommitted blocks are one level deep), so
the limit of block ``h`` is known to every honest replica before it judges or proposes ``h``
whenever the delay is at least one block: limits are, like the validator set, a function of
the committed chain strictly below the height they govern.
"""

from __future__ import annotations

from collections.abc import Iterable

from consensus.check import check

# (from_height, max_block_txs, max_block_bytes)
LimitChange = tuple[int, int, int]
MAX_PENDING_CHANGES = 256  # a schedule is short: one entry per executed proposal, pruned


class BlockLimits:
    """The limits of every height from the configured ones and the learned changes."""

    __slots__ = ("_changes", "base_bytes", "base_txs")

    def __init__(self, base_txs: int, base_bytes: int) -> None:
        self.base_txs = base_txs
        self.base_bytes = base_bytes
        self._changes: dict[int, tuple[int, int]] = {}

    def learn(self, changes: Iterable[LimitChange]) -> None:
        """Add scheduled changes (the same change learned twice is one)."""
        for from_height, txs, nbytes in changes:
            check(txs > 0 and nbytes > 0, f"block limits from {from_height} must be positive")
            self._changes[from_height] = (txs, nbytes)
        check(len(self._changes) <= MAX_PENDING_CHANGES, "too many block limit changes kept")

    def at(self, height: int) -> tuple[int, int]:
        """(max_block_txs, max_block_bytes) of block ``height``."""
        best = -1
        for from_height in self._changes:
            if best < from_height <= height:
                best = from_height
        return self._changes[best] if best >= 0 else (self.base_txs, self.base_bytes)

    def forget_before(self, height: int) -> None:
        """Drop changes superseded by one in force at ``height`` (nothing below is checked
        again: those heights are committed)."""
        in_force = [h for h in self._changes if h <= height]
        for h in sorted(in_force)[:-1]:
            del self._changes[h]
