"""Governance changes the epoch length (``SetEpochLength``, TAG 11): validated when proposed,
applied at its execution height to the epochs from the first one whose set is not fixed yet,
and the epochs before that keep their heights. Real blocks through ``apply_block`` (the
``GovHarness`` checks stored writes against ``entries()`` and a rebuilt state's digest)."""

from __future__ import annotations

import dataclasses

from consensus.epochs import EpochSchedule
from state_machine.exchange import ExchangeState
from state_machine.governance.codes import INVALID_PROPOSAL, NO_EPOCHS
from state_machine.governance.content import SetEpochLength, decode_content, encode_content
from state_machine.governance.epochlength import MAX_EPOCH_LENGTH_BLOCKS
from state_machine.staking.engine import StakingState
from state_machine.staking.genesis import StakingGenesis
from state_machine.staking.params import ATOMS_PER_POWER
from state_machine.staking.records import SCHEDULE_KEY
from tests.state_machine.helpers import VALIDATORS
from tests.state_machine.test_governance import GovHarness, business, gov_genesis

V0, V1, V2, _ = VALIDATORS

LENGTH = 4
UNBONDING = 40


def staking_harness() -> GovHarness:
    """Staking from the genesis section: the genesis validators, 10 USDC of stake each."""
    section = StakingGenesis(
        epoch_length_blocks=LENGTH,
        min_self_stake_atoms=ATOMS_PER_POWER,
        min_delegation_atoms=ATOMS_PER_POWER,
        unbonding_blocks=UNBONDING,
    )
    h = GovHarness(dataclasses.replace(gov_genesis(voting_blocks=3), staking=section))
    assert h.state.staking is not None and h.state.staking.params.epoch_length_blocks == LENGTH
    return h


def staking(h: GovHarness) -> StakingState:
    st = h.state.staking
    assert st is not None
    return st


def epoch_ends(h: GovHarness, blocks: int) -> list[int]:
    """Run ``blocks`` empty blocks; the heights whose execution fixed a set (an epoch end)."""
    ends = []
    for _ in range(blocks):
        h.block([])
        ends += [h.height for _ in h.events("epoch_set")]
    return ends


def test_the_content_round_trips_with_its_tag() -> None:
    data = encode_content(SetEpochLength(7))
    assert SetEpochLength.TAG == 11
    assert decode_content(data) == SetEpochLength(7)


def test_the_new_length_applies_from_the_epoch_after_next_and_not_before() -> None:
    h = staking_harness()
    assert not any(k == SCHEDULE_KEY for k, _ in h.state.entries())
    pid = h.pass_proposal(SetEpochLength(2))
    executed_at = h.height
    (scheduled,) = h.events("epoch_length_scheduled")
    epoch_now = (executed_at - 1) // LENGTH
    first_epoch = epoch_now + 2  # the epoch after next: the next one's set is fixed already
    first_height = first_epoch * LENGTH + 1
    assert (scheduled["first_epoch"], scheduled["first_height"]) == (first_epoch, first_height)
    assert (
        scheduled["length_blocks"] == 2 and h.events("proposal_executed")[0]["proposal_id"] == pid
    )
    schedule = staking(h).schedule
    assert schedule == EpochSchedule.constant(LENGTH).changed_from(first_epoch, 2)
    assert dict(h.state.entries())[SCHEDULE_KEY]  # its own record, under the root
    # Every epoch up to the one after the execution keeps its heights; then 2 blocks each.
    ends = epoch_ends(h, first_height + 7 - h.height)
    expected = [e for e in range(executed_at + 1, first_height) if e % LENGTH == 0]
    expected += list(range(first_height + 1, h.height + 1, 2))
    assert ends == expected
    assert h.height % 2 == 0 and schedule.is_epoch_end(h.height)
    assert max(staking(h).epoch_sets) == schedule.epoch_of(h.height) + 2
    h.check_stored()  # the state rebuilt from entries has the schedule (restart, catch-up)
    rebuilt = ExchangeState.from_entries(h.genesis, h.state.entries())
    assert rebuilt.staking is not None and rebuilt.staking.schedule == schedule


def test_a_change_back_to_the_genesis_length_before_it_applies_deletes_the_record() -> None:
    """Two proposals executing in one epoch: the second replaces the first's pending length;
    back at the genesis length for ever, the schedule record is deleted again."""
    h = staking_harness()
    assert h.propose(SetEpochLength(2)).ok
    assert h.propose(SetEpochLength(LENGTH)).ok
    h.vote(1, [V0, V1, V2])
    h.vote(2, [V0, V1, V2])
    lengths_seen = []
    while len(h.state.gov.active) > 0:
        h.block([])
        lengths_seen += [e["length_blocks"] for e in h.events("epoch_length_scheduled")]
    assert lengths_seen == [2, LENGTH]
    assert staking(h).schedule == EpochSchedule.constant(LENGTH)
    assert not any(k == SCHEDULE_KEY for k, _ in h.state.entries())
    h.check_stored()


def test_refusals_have_their_code_and_change_nothing() -> None:
    h = staking_harness()
    before = business(h.state)
    for length, code in (
        (0, INVALID_PROPOSAL),
        (UNBONDING + 1, INVALID_PROPOSAL),  # the unbonding period must still cover an epoch
        (MAX_EPOCH_LENGTH_BLOCKS + 1, INVALID_PROPOSAL),
    ):
        res = h.propose(SetEpochLength(length))
        assert res.code == code, (length, res)
        assert "length_blocks" in res.message
    assert business(h.state) == before and not h.state.gov.proposals
    # Without staking: one set for ever, nothing to change.
    fixed = GovHarness()
    res = fixed.propose(SetEpochLength(10))
    assert res.code == NO_EPOCHS and not fixed.state.gov.proposals


def test_a_passed_change_rechecked_at_execution() -> None:
    """The unbonding bound holds for the length in force at execution, like every change."""
    h = staking_harness()
    pid = h.pass_proposal(SetEpochLength(UNBONDING))  # the longest allowed
    assert h.state.gov.proposals[pid].status == "executed"
    assert staking(h).schedule.segments[-1].length_blocks == UNBONDING
    h.check_stored()


def test_longer_epochs_never_shorten_the_evidence_window() -> None:
    """Evidence stays acceptable for the unbonding period counted in the shortest epochs the
    chain had: after 4-block epochs become 8-block ones, still 40 // 4 epochs back."""
    h = staking_harness()
    assert staking(h).evidence_max_age_epochs == UNBONDING // LENGTH
    h.pass_proposal(SetEpochLength(2 * LENGTH))
    starts = staking(h).schedule.segments[-1].first_height
    h.idle(starts + 2 * LENGTH - h.height)  # the 8-block epochs are in force
    assert staking(h).schedule.length_of(staking(h).schedule.epoch_of(h.height)) == 2 * LENGTH
    assert staking(h).evidence_max_age_epochs == UNBONDING // LENGTH
    h.pass_proposal(SetEpochLength(LENGTH // 2))
    assert staking(h).evidence_max_age_epochs == UNBONDING // (LENGTH // 2)
    h.check_stored()
