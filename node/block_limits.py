"""The node's side of governed block limits (state_machine/governance/chainparams.py).

* After each executed block, the state's schedule goes to the replica with ``BlockExecuted``
  (and after a restart, straight from the stored state), so consensus checks and proposes
  every height with the limits the chain set for it (consensus/block_limits.py).
* What this node proposes is bounded by the chain's limit of that height and by its own
  configuration (``consensus.max_block_txs``, ``max_block_actions`` and the p2p frame size):
  an operator can only lower what it proposes, never make a block others refuse.
* A block's action count is checked against the chain's limit once one is in force (before
  that, as always, only the proposer bounds actions). A transaction carries at most
  ``MAX_ACTIONS_PER_TX`` actions, which is the lowest limit a proposal may set, so no
  transaction is ever too large for every block.
"""

from __future__ import annotations

from collections.abc import Iterable

from consensus.types import Block
from state_machine.governance.chainparams import block_limit_schedule, limits_at
from state_machine.state import ExchangeCore
from state_machine.tx import Transaction


def consensus_limit_changes(state: ExchangeCore) -> tuple[tuple[int, int, int], ...]:
    """The schedule as consensus takes it: (from_height, max_block_txs, max_block_bytes)."""
    return tuple((h, txs, nbytes) for h, txs, nbytes, _ in block_limit_schedule(state))


def proposal_actions_max(state: ExchangeCore, height: int, configured_max: int) -> int:
    """Most actions this node puts in its proposal of block ``height``."""
    governed = limits_at(block_limit_schedule(state), height)
    return configured_max if governed is None else min(configured_max, governed[2])


def block_actions_ok(state: ExchangeCore, block: Block, txs: Iterable[Transaction]) -> bool:
    """False when a governed action limit is in force at the block's height and the block's
    decoded transactions carry more actions."""
    governed = limits_at(block_limit_schedule(state), block.height)
    if governed is None:
        return True
    return sum(len(tx.actions) for tx in txs) <= governed[2]


def block_limits_json(state: ExchangeCore, configured: tuple[int, int, int]) -> dict[str, object]:
    """``/v1/status`` ``block_limits``: the chain's limits of the next block (``null`` fields
    while none is governed: each node's configuration rules), the scheduled changes, and
    what this node puts in its own proposals at most (``configured``: its max_block_txs,
    max_block_bytes, max_block_actions)."""
    schedule = block_limit_schedule(state)
    governed = limits_at(schedule, state.height + 1)
    txs, nbytes, actions = governed if governed is not None else (None, None, None)
    return {
        "governed": governed is not None,
        "max_block_txs": txs,
        "max_block_bytes": nbytes,
        "max_block_actions": actions,
        "scheduled": [
            {"from_height": h, "max_block_txs": t, "max_block_bytes": b, "max_block_actions": a}
            for h, t, b, a in schedule
            if h > state.height + 1
        ],
        "node_max": {
            "max_block_txs": configured[0],
            "max_block_bytes": configured[1],
            "max_block_actions": configured[2],
        },
    }
