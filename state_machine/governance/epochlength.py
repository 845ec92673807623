"""Governance of the epoch length: the ``SetEpochLength`` proposal kind (TAG 11).

A change executed in epoch ``e`` makes epochs ``e + 2`` on ``length_blocks`` long: the first
epoch whose validator set is not fixed yet, so the change reaches consensus with that set at
the end of epoch ``e`` (``consensus/epochs.py`` argues why that keeps every height's set
agreed). The schedule is a staking record (0x2f), so full nodes, restarts and the light
client follow it from the state. Refused while staking is off (one set for ever, no epochs).
"""

from __future__ import annotations

from consensus.epochs import MAX_SCHEDULE_SEGMENTS
from state_machine.governance.codes import INVALID_PROPOSAL, NO_EPOCHS
from state_machine.governance.content import SetEpochLength
from state_machine.invariants import check
from state_machine.state import ExchangeCore

# One day at 2 blocks/s: longer epochs would leave a set in office (and an unbonding window
# counted in epochs) for longer than any operator can plan for.
MAX_EPOCH_LENGTH_BLOCKS = 172_800


def epoch_length_refusal(st: ExchangeCore, c: SetEpochLength) -> tuple[str, str] | None:
    """(result code, message) saying why ``c`` cannot run on ``st`` now, or None."""
    staking = st.staking
    if staking is None:
        return NO_EPOCHS, "staking is off: one validator set for ever, no epochs to change"
    if not 1 <= c.length_blocks <= MAX_EPOCH_LENGTH_BLOCKS:
        return INVALID_PROPOSAL, f"length_blocks must be in 1..{MAX_EPOCH_LENGTH_BLOCKS}"
    unbonding = staking.params.unbonding_blocks
    if c.length_blocks > unbonding:
        return INVALID_PROPOSAL, f"length_blocks above the unbonding period ({unbonding} blocks)"
    schedule = staking.schedule
    epoch = schedule.epoch_of(st.height) + 2
    kept = sum(1 for s in schedule.segments if s.first_epoch < epoch)
    if kept >= MAX_SCHEDULE_SEGMENTS and schedule.length_of(epoch - 1) != c.length_blocks:
        return INVALID_PROPOSAL, f"the epoch length changed {MAX_SCHEDULE_SEGMENTS - 1} times"
    return None


def epoch_length_problem(st: ExchangeCore, c: SetEpochLength) -> str | None:
    refusal = epoch_length_refusal(st, c)
    return None if refusal is None else refusal[1]


def set_epoch_length(st: ExchangeCore, c: SetEpochLength) -> None:
    """Run an accepted change: the schedule record changes now, the length from its epoch."""
    staking = st.staking
    check(staking is not None, "an epoch length change ran without staking")
    assert staking is not None
    epoch, height = staking.change_epoch_length(c.length_blocks)
    st.events.append(("epoch_length_scheduled", epoch, height, c.length_blocks))
