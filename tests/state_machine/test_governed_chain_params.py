"""Governed chain parameters: SetStakingParams (the staking parameters but the epoch length)
and SetBlockLimits (block limits from a height known ahead), on real blocks.

Each is in force at its execution height and not before, an invalid one is refused with
``invalid_proposal`` and changes nothing, and the records survive a rebuild from entries.
"""

from __future__ import annotations

import dataclasses

from state_machine.exchange import ExchangeState
from state_machine.genesis import Genesis
from state_machine.governance.chainparams import (
    BLOCK_LIMITS_DELAY_BLOCKS,
    block_limit_schedule,
    limits_at,
)
from state_machine.governance.content import SetBlockLimits, SetEpochLength, SetStakingParams
from state_machine.governance.records import EXECUTED, FAILED
from state_machine.staking import codes, engine
from state_machine.staking.actions import CreateValidator, Delegate, SubmitEvidence, Undelegate
from state_machine.staking.genesis import StakingGenesis
from state_machine.staking.params import GOVERNED_FIELDS, governed_values
from state_machine.staking.records import GOVERNED_PARAMS_KEY
from tests.state_machine.helpers import USDC, VALIDATORS, acct
from tests.state_machine.test_governance import DELAY_BLOCKS, GovHarness, business, gov_genesis
from tests.state_machine.test_staking import (
    ALICE,
    ALICE_CONSENSUS,
    BOB,
    GENESIS_KEYS,
    Chain,
    active_alice,
    vote_equivocation,
)

V0, V1, V2, V3 = VALIDATORS
A1, A2 = acct(1), acct(2)
STAKING = StakingGenesis(
    epoch_length_blocks=4,
    active_set_size=4,
    min_self_stake_atoms=5 * USDC,
    min_delegation_atoms=USDC,
    unbonding_blocks=40,
    jail_blocks=6,
)


def staking_genesis() -> Genesis:
    return dataclasses.replace(gov_genesis(voting_blocks=3), staking=STAKING)


def change(**kw: int) -> SetStakingParams:
    """The parameters in force at genesis with ``kw`` changed."""
    values = dict(zip(GOVERNED_FIELDS, governed_values(STAKING.params()), strict=True))
    values.update(kw)
    return SetStakingParams(**values)


def governed(st: ExchangeState) -> list[tuple[bytes, bytes]]:
    """The governance records and the governed staking parameters (an epoch's end writes
    other staking records whatever happens)."""
    return [(k, v) for k, v in st.entries() if k[0] == 0x26 or 0x30 <= k[0] <= 0x37]


def run_until_executed(h: GovHarness, pid: int, before: int = 1) -> None:
    """Vote yes with three of four validators and run to ``before`` blocks before the
    execution height; the proposal must still be waiting then."""
    h.vote(pid, [V0, V1, V2])
    proposal = h.state.gov.proposals[pid]
    while h.height < proposal.voting_end_height + DELAY_BLOCKS - before:
        h.block([])
    assert proposal.status != EXECUTED


# ---- SetStakingParams ----------------------------------------------------------------------


def test_staking_params_change_at_the_execution_height_and_not_before() -> None:
    h = GovHarness(staking_genesis())
    before = h.state.entries()
    res = h.propose(change(min_delegation_atoms=7 * USDC, jail_blocks=50, active_set_size=3))
    assert res.ok, res
    run_until_executed(h, res.order_id, before=2)
    staking = h.state.staking
    assert staking is not None
    assert h.one(A1, Delegate(V0, 2 * USDC)).ok  # the block before: the old minimum rules
    assert staking.params == STAKING.params()
    h.block([])  # the execution height
    assert h.state.gov.proposals[res.order_id].status == EXECUTED
    assert staking.params.min_delegation_atoms == 7 * USDC and staking.params.jail_blocks == 50
    assert staking.params.epoch_length_blocks == STAKING.epoch_length_blocks
    assert h.events("staking_params_changed")
    res2 = h.one(A1, Delegate(V0, 2 * USDC))
    assert res2.code == codes.STAKE_TOO_SMALL, res2
    h.check_stored()
    rebuilt = ExchangeState.from_entries(h.genesis, h.state.entries())
    assert rebuilt.staking is not None and rebuilt.staking.params == staking.params
    assert GOVERNED_PARAMS_KEY in dict(h.state.entries())
    assert GOVERNED_PARAMS_KEY not in dict(before)  # nothing stored until a change ran


def test_invalid_staking_params_are_refused_and_change_nothing() -> None:
    h = GovHarness(staking_genesis())
    params = h.state.staking.params if h.state.staking is not None else None
    cases = {
        "unbonding period must cover": change(unbonding_blocks=3),  # < the epoch length 4
        "active_set_size": change(active_set_size=0),
        "minimum stakes": change(min_self_stake_atoms=1),
        "basis points": change(slash_bps=10_001),
        "max_unbondings_per_pair": change(max_unbondings_per_pair=0),
        "unbonding_blocks: at most": change(unbonding_blocks=10**12),
        "max_validators: at most": change(max_validators=10**6),
    }
    for expected, content in cases.items():
        before = governed(h.state)
        res = h.propose(content)
        assert res.code == "invalid_proposal" and expected in res.message, (expected, res)
        assert governed(h.state) == before
    assert h.state.staking is not None and h.state.staking.params == params
    # A chain without staking has no staking parameters to change.
    plain = GovHarness()
    res = plain.propose(change())
    assert res.code == "invalid_proposal" and "staking is not enabled" in res.message


def test_a_shorter_unbonding_period_keeps_the_entries_in_flight_and_their_order() -> None:
    """An entry keeps its completion height; one started after the change completes after the
    period in force but never before an earlier entry (payouts run in id order)."""
    h = GovHarness(staking_genesis())
    h.audited = True
    assert h.one(A1, Delegate(V0, 20 * USDC)).ok
    assert h.one(A1, Undelegate(V0, 5 * USDC)).ok
    staking = h.state.staking
    assert staking is not None
    first = next(iter(staking.unbondings.values()))
    first_complete = first.complete_height
    res = h.propose(change(unbonding_blocks=8))
    assert res.ok
    run_until_executed(h, res.order_id)
    h.block([])
    assert staking.params.unbonding_blocks == 8
    assert first.complete_height == first_complete
    assert h.one(A1, Undelegate(V0, 5 * USDC)).ok
    second = list(staking.unbondings.values())[-1]
    assert second.complete_height == first_complete  # not h.height + 8, which is earlier
    assert h.height + 8 < first_complete
    while h.height < first_complete:
        h.block([])
    assert not staking.unbondings  # both paid at the first one's height
    paid = [e for e in h.events("unbonded") if e["delegator"] == A1]
    assert len(paid) == 2
    assert h.one(A1, Undelegate(V0, 5 * USDC)).ok  # and from now on the new period
    assert list(staking.unbondings.values())[-1].complete_height == h.height + 8
    h.check_stored()


def test_a_staking_change_that_no_longer_fits_at_execution_fails() -> None:
    """Checked again at execution: the epoch length in force then rules (here the same
    record is changed underneath, as the epoch-length kind would)."""
    h = GovHarness(staking_genesis())
    res = h.propose(change(unbonding_blocks=4))
    assert res.ok
    run_until_executed(h, res.order_id)
    staking = h.state.staking
    assert staking is not None
    staking.params = dataclasses.replace(staking.params, epoch_length_blocks=5, unbonding_blocks=40)
    h.block([])
    proposal = h.state.gov.proposals[res.order_id]
    assert proposal.status == FAILED and "unbonding period" in proposal.message
    assert staking.params.unbonding_blocks == 40


def test_a_new_jail_time_applies_to_new_jailings_only() -> None:
    chain = Chain()
    active_alice(chain)
    assert chain.do(BOB, SubmitEvidence(2, vote_equivocation(ALICE_CONSENSUS, 40, 9))).ok
    alice = chain.staking.validators[ALICE.public_key]
    alice_until = alice.jailed_until_height
    assert alice_until == chain.staking.height + 6
    values = list(governed_values(chain.staking.params))
    values[GOVERNED_FIELDS.index("jail_blocks")] = 30
    engine.set_governed_params(chain.staking, tuple(values))
    assert alice.jailed_until_height == alice_until  # keeps its jail end
    chain.next_block()
    members = {k for k, _ in chain.staking.epoch_sets[2].members}
    offender = next(k for k in GENESIS_KEYS if k.public_key in members)
    assert chain.do(BOB, SubmitEvidence(2, vote_equivocation(offender, 41, 9))).ok
    jailed = chain.staking.validators[offender.public_key]
    assert jailed.jailed_until_height == chain.staking.height + 30


def test_a_smaller_active_set_takes_effect_at_the_next_set_computation() -> None:
    h = GovHarness(staking_genesis())
    assert h.one(A2, CreateValidator(acct(9), "10.0.0.9:26656", 0, 5 * USDC)).ok
    res = h.propose(change(active_set_size=2))
    assert res.ok
    run_until_executed(h, res.order_id)
    h.block([])
    staking = h.state.staking
    assert staking is not None and staking.params.active_set_size == 2
    epoch_now = (h.height - 1) // STAKING.epoch_length_blocks
    decided = [e for e in staking.epoch_sets if e <= epoch_now + 1]
    assert all(len(staking.epoch_sets[e].members) >= 4 for e in decided)  # sets fixed before
    while h.height % STAKING.epoch_length_blocks:
        h.block([])  # to the epoch's last block: the next computation
    newest = max(staking.epoch_sets)
    assert len(staking.epoch_sets[newest].members) == 2


# ---- SetBlockLimits ------------------------------------------------------------------------


def test_block_limits_are_scheduled_a_fixed_margin_after_execution() -> None:
    h = GovHarness()
    assert block_limit_schedule(h.state) == ()
    res = h.propose(SetBlockLimits(3, 64 * 1024, 500))
    assert res.ok
    run_until_executed(h, res.order_id)
    assert block_limit_schedule(h.state) == ()
    h.block([])
    executed_at = h.height
    schedule = block_limit_schedule(h.state)
    assert schedule == ((executed_at + BLOCK_LIMITS_DELAY_BLOCKS, 3, 64 * 1024, 500),)
    assert limits_at(schedule, executed_at + BLOCK_LIMITS_DELAY_BLOCKS - 1) is None
    assert limits_at(schedule, executed_at + BLOCK_LIMITS_DELAY_BLOCKS) == (3, 64 * 1024, 500)
    events = h.events("block_limits_changed")
    assert events and events[0]["from_height"] == executed_at + BLOCK_LIMITS_DELAY_BLOCKS
    h.check_stored()
    rebuilt = ExchangeState.from_entries(h.genesis, h.state.entries())
    assert block_limit_schedule(rebuilt) == schedule
    # A second change: the first stays in force until the second's height; once that is
    # reached by the next change's execution, the superseded entry is dropped.
    for _ in range(BLOCK_LIMITS_DELAY_BLOCKS):
        h.block([])
    res = h.propose(SetBlockLimits(7, 128 * 1024, 900))
    assert res.ok
    run_until_executed(h, res.order_id)
    h.block([])
    schedule2 = block_limit_schedule(h.state)
    assert schedule2 == (schedule[0], (h.height + BLOCK_LIMITS_DELAY_BLOCKS, 7, 128 * 1024, 900))
    h.check_stored()


def test_invalid_block_limits_are_refused_and_change_nothing() -> None:
    h = GovHarness()
    cases = {
        "max_block_txs": SetBlockLimits(0, 64 * 1024, 500),
        "max_block_bytes": SetBlockLimits(10, 100, 500),
        "max_block_bytes: between": SetBlockLimits(10, 64 * 1024 * 1024, 500),
        "max_block_actions": SetBlockLimits(10, 64 * 1024, 1),
    }
    for expected, content in cases.items():
        before = business(h.state)
        res = h.propose(content)
        assert res.code == "invalid_proposal" and expected in res.message, (expected, res)
        assert business(h.state) == before
    assert SetBlockLimits(100_001, 64 * 1024, 500).max_block_txs > 100_000
    res = h.propose(SetBlockLimits(100_001, 64 * 1024, 500))
    assert res.code == "invalid_proposal" and "max_block_txs" in res.message


def test_an_unbonding_period_must_cover_a_scheduled_longer_epoch() -> None:
    """The genesis length (4) is not the only one: once an epoch_length proposal scheduled 20
    blocks, an unbonding period of 10 no longer covers an epoch and is refused."""
    h = GovHarness(staking_genesis())
    assert h.propose(change(unbonding_blocks=10)).code == "ok"  # covers 4-block epochs
    pid = h.propose(SetEpochLength(20)).order_id
    run_until_executed(h, pid)
    h.block([])
    assert h.state.gov.proposals[pid].status == EXECUTED
    before = governed(h.state)
    res = h.propose(change(unbonding_blocks=10))
    assert res.code == "invalid_proposal" and "must cover an epoch (20 blocks" in res.message
    assert governed(h.state) == before
