"""Governed chain parameters: the staking parameters (SetStakingParams) and the block limits
(SetBlockLimits).

Both are checked by the same function when proposed and again at execution
(markets.change_problem calls :func:`chain_change_problem`), like every other kind.

Staking parameters are in force from the execution block's transactions on; the staking
engine reads them from ``StakingState.params`` only (state_machine/staking/engine.py), and
what is in flight keeps what it got (docs/ARCHITECTURE.md, "Governed staking parameters").

Block limits bind consensus, which checks a proposal before any node executes it. So a new
limit is in force only from block ``execution height + BLOCK_LIMITS_DELAY_BLOCKS``: a replica
checks block h only once it has executed block h - 1 (the header carries that state root), so
every honest replica knows the limit of block h before it judges or proposes block h, as long
as the delay is at least one; the margin of several blocks leaves the node's feeding of the
limits to the replica and mempool out of any race (docs/ARCHITECTURE.md, "Governed block
limits"). Until a proposal sets them, each node's configuration rules, as it always did.
"""

from __future__ import annotations

from consensus.types import MAX_BLOCK_TXS_WIRE, MAX_TX_BYTES_WIRE
from state_machine.governance.content import SetBlockLimits, SetStakingParams
from state_machine.governance.records import BlockLimitsRecord
from state_machine.invariants import check
from state_machine.staking.engine import set_governed_params
from state_machine.staking.params import governed_params_problem
from state_machine.state import ExchangeCore

BLOCK_LIMITS_DELAY_BLOCKS = 10
# The ranges a proposal may choose: within what the wire and the p2p frames carry (a block's
# payload travels in one 8 MiB frame with its QCs; the node's own cap has been 4 MiB), and at
# least one largest transaction per block.
MAX_BLOCK_BYTES_GOVERNED = 4 * 1024 * 1024
MIN_BLOCK_BYTES_GOVERNED = MAX_TX_BYTES_WIRE
MIN_BLOCK_ACTIONS_GOVERNED = 64
MAX_BLOCK_ACTIONS_GOVERNED = 10_000_000

Limits = tuple[int, int, int]  # max_block_txs, max_block_bytes, max_block_actions


def staking_values(c: SetStakingParams) -> tuple[int, ...]:
    """The proposal's values in params.GOVERNED_FIELDS order (the wire order)."""
    return tuple(getattr(c, name) for name, _ in c.WIRE)


def staking_params_problem(st: ExchangeCore, c: SetStakingParams) -> str | None:
    if st.staking is None:
        return "staking is not enabled on this chain"
    problem = governed_params_problem(st.staking.params, staking_values(c))
    if problem is not None:
        return problem
    return unbonding_schedule_problem(st, c.unbonding_blocks)


def unbonding_schedule_problem(st: ExchangeCore, unbonding_blocks: int) -> str | None:
    """The unbonding period must cover an epoch of every length in force or scheduled (a
    governed epoch length may be longer than the genesis one checked with the parameters)."""
    if st.staking is None:
        return "staking is not enabled on this chain"
    schedule = st.staking.schedule
    now = schedule.segment_of_height(max(st.height, 1)).first_epoch
    longest = max(s.length_blocks for s in schedule.segments if s.first_epoch >= now)
    if unbonding_blocks < longest:
        return f"unbonding_blocks must cover an epoch ({longest} blocks in force or scheduled)"
    return None


def block_limits_problem(c: SetBlockLimits) -> str | None:
    if not 1 <= c.max_block_txs <= MAX_BLOCK_TXS_WIRE:
        return f"max_block_txs: between 1 and {MAX_BLOCK_TXS_WIRE}"
    if not MIN_BLOCK_BYTES_GOVERNED <= c.max_block_bytes <= MAX_BLOCK_BYTES_GOVERNED:
        return f"max_block_bytes: between {MIN_BLOCK_BYTES_GOVERNED} and {MAX_BLOCK_BYTES_GOVERNED}"
    if not MIN_BLOCK_ACTIONS_GOVERNED <= c.max_block_actions <= MAX_BLOCK_ACTIONS_GOVERNED:
        return (
            f"max_block_actions: between {MIN_BLOCK_ACTIONS_GOVERNED} and "
            f"{MAX_BLOCK_ACTIONS_GOVERNED}"
        )
    return None


def chain_change_problem(st: ExchangeCore, c: SetStakingParams | SetBlockLimits) -> str | None:
    if isinstance(c, SetStakingParams):
        return staking_params_problem(st, c)
    return block_limits_problem(c)


def apply_chain_change(st: ExchangeCore, c: SetStakingParams | SetBlockLimits) -> None:
    if isinstance(c, SetStakingParams):
        staking = st.staking
        check(staking is not None, "staking parameters applied without staking")
        assert staking is not None
        set_governed_params(staking, staking_values(c))
        st.events.append(("staking_params_changed",))
    else:
        set_block_limits(st, c)


# ---- block limits ---------------------------------------------------------------------------


def set_block_limits(st: ExchangeCore, c: SetBlockLimits) -> None:
    """Schedule ``c`` from block st.height + BLOCK_LIMITS_DELAY_BLOCKS. Entries no block can
    use any more (followed by one already in force) are dropped, so the record stays small."""
    from_height = st.height + BLOCK_LIMITS_DELAY_BLOCKS
    record = st.gov.block_limits
    if record is None:
        record = BlockLimitsRecord()
        st.gov.block_limits = record
    entries = [e for e in record.entries if e[0] < from_height]  # a later run replaces
    entries.append((from_height, c.max_block_txs, c.max_block_bytes, c.max_block_actions))
    first_needed = max((i for i, e in enumerate(entries) if e[0] <= st.height + 1), default=0)
    record.entries = tuple(entries[first_needed:])
    st.touch(record)
    st.events.append(
        ("block_limits_changed", from_height, c.max_block_txs, c.max_block_bytes,
         c.max_block_actions)
    )  # fmt: skip


def block_limit_schedule(st: ExchangeCore) -> tuple[tuple[int, int, int, int], ...]:
    """(from_height, max_block_txs, max_block_bytes, max_block_actions), ascending: what the
    node gives consensus and its proposer after each block."""
    record = st.gov.block_limits
    return () if record is None else record.entries


def limits_at(schedule: tuple[tuple[int, int, int, int], ...], height: int) -> Limits | None:
    """The governed limits of block ``height``, or None while none is in force (each node's
    configuration rules)."""
    found: Limits | None = None
    for from_height, txs, nbytes, actions in schedule:
        if from_height > height:
            break
        found = (txs, nbytes, actions)
    return found
