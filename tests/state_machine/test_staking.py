"""The staking state machine (``state_machine/staking``) on the real exchange balances: each
action's effect, every refusal with its code and no change, epochs, unbonding, evidence,
jailing and slashing."""

from __future__ import annotations

from typing import Any

import pytest

from consensus import PREPARE
from consensus.types import ProposalEquivocation, VoteEquivocation
from consensus.verify import sign_proposal, sign_vote
from state_machine.crypto import Keypair, sha256
from state_machine.exchange import ExchangeState
from state_machine.genesis import default_genesis
from state_machine.staking import codes, engine
from state_machine.staking.actions import (
    CreateValidator,
    Delegate,
    EditValidator,
    SubmitEvidence,
    Undelegate,
    Unjail,
)
from state_machine.staking.hook import ExchangeLedger, apply_staking_action
from state_machine.staking.params import ATOMS_PER_POWER, StakingParams
from state_machine.staking.records import META_KEY

CHAIN = "staking-test"
USDC = ATOMS_PER_POWER
PARAMS = StakingParams(
    epoch_length_blocks=4,
    active_set_size=3,
    min_self_stake_atoms=100 * USDC,
    min_delegation_atoms=10 * USDC,
    unbonding_blocks=8,
    jail_blocks=6,
    slash_bps=1_000,
)
GENESIS_KEYS = [Keypair(sha256(b"staking-genesis-%d" % i)) for i in range(4)]
ALICE = Keypair(sha256(b"staking-alice"))  # operator of a new validator
ALICE_CONSENSUS = Keypair(sha256(b"staking-alice-consensus"))
BOB = Keypair(sha256(b"staking-bob"))  # a delegator
POOR = Keypair(sha256(b"staking-poor"))  # no balance


class Chain:
    """An exchange state and a staking state driven block by block through the hook."""

    def __init__(self) -> None:
        genesis = default_genesis(
            CHAIN,
            [(k.public_key, 150) for k in GENESIS_KEYS],
            [ALICE.public_key, BOB.public_key],
        )
        self.exchange = ExchangeState.from_genesis(genesis)
        self.ledger = ExchangeLedger(self.exchange)
        validators = [(k.public_key, 150) for k in GENESIS_KEYS]
        self.staking = engine.StakingState.from_genesis(CHAIN, PARAMS, validators)
        self.staking.take_writes()

    def usdc(self, who: Keypair) -> int:
        return self.ledger.movable_atoms(who.public_key)

    def do(self, who: Keypair, action: Any) -> engine.Result:
        return apply_staking_action(self.staking, self.ledger, who.public_key, action)

    def refused(self, who: Keypair, action: Any, code: str) -> None:
        """``action`` is refused with ``code`` and changes nothing."""
        self.staking.take_writes()
        before = (self.staking.entries(), self.exchange.digest())
        result = self.do(who, action)
        assert result.code == code, result
        assert (self.staking.entries(), self.exchange.digest()) == before
        assert [key for key, _ in self.staking.take_writes()] == [META_KEY]  # nothing touched

    def next_block(self) -> Any:
        engine.begin_block(self.staking, self.ledger, self.staking.height + 1)
        return engine.end_block(self.staking)

    def run_to(self, height: int) -> None:
        while self.staking.height < height:
            self.next_block()


def create_alice(chain: Chain, stake_usdc: int = 200) -> None:
    action = CreateValidator(ALICE_CONSENSUS.public_key, "10.0.0.5:26656", 500, stake_usdc * USDC)
    assert chain.do(ALICE, action).ok


# ---- registration and delegation --------------------------------------------------------------


def test_create_validator_bonds_the_self_stake_from_the_balance() -> None:
    chain = Chain()
    before = chain.usdc(ALICE)
    create_alice(chain)
    assert chain.usdc(ALICE) == before - 200 * USDC
    record = chain.staking.validators[ALICE.public_key]
    assert record.tokens_atoms == 200 * USDC and not record.jailed
    assert chain.staking.self_stake_atoms(record) == 200 * USDC


def test_create_validator_refusals() -> None:
    chain = Chain()
    key = ALICE_CONSENSUS.public_key
    chain.refused(ALICE, CreateValidator(key, "h:1", 0, 99 * USDC), codes.STAKE_TOO_SMALL)
    chain.refused(ALICE, CreateValidator(key, "h:1", 9_000, 200 * USDC), codes.COMMISSION_TOO_HIGH)
    chain.refused(ALICE, CreateValidator(key, "no-port", 0, 200 * USDC), codes.BAD_P2P_ADDRESS)
    chain.refused(POOR, CreateValidator(key, "h:1", 0, 200 * USDC), codes.INSUFFICIENT_BALANCE)
    taken = GENESIS_KEYS[0].public_key
    chain.refused(ALICE, CreateValidator(taken, "h:1", 0, 200 * USDC), codes.CONSENSUS_KEY_IN_USE)
    create_alice(chain)
    other = BOB.public_key
    chain.refused(ALICE, CreateValidator(other, "h:1", 0, 200 * USDC), codes.VALIDATOR_EXISTS)
    chain.refused(BOB, EditValidator("h:1", 0), codes.NOT_A_VALIDATOR)
    assert chain.do(ALICE, EditValidator("10.0.0.6:1", 100)).ok
    assert chain.staking.validators[ALICE.public_key].p2p_address == "10.0.0.6:1"


def test_delegation_and_undelegation_with_the_unbonding_period() -> None:
    chain = Chain()
    create_alice(chain)
    start = chain.usdc(BOB)
    assert chain.do(BOB, Delegate(ALICE.public_key, 50 * USDC)).ok
    assert chain.staking.delegation_atoms(ALICE.public_key, BOB.public_key) == 50 * USDC
    chain.refused(BOB, Delegate(ALICE.public_key, 9 * USDC), codes.STAKE_TOO_SMALL)
    chain.refused(BOB, Delegate(BOB.public_key, 50 * USDC), codes.UNKNOWN_VALIDATOR)
    chain.refused(BOB, Undelegate(ALICE.public_key, 51 * USDC), codes.INSUFFICIENT_DELEGATION)
    chain.refused(POOR, Undelegate(ALICE.public_key, 1), codes.NO_DELEGATION)
    chain.refused(BOB, Undelegate(ALICE.public_key, 0), codes.INVALID_AMOUNT)
    assert chain.do(BOB, Undelegate(ALICE.public_key, 20 * USDC)).ok
    assert chain.usdc(BOB) == start - 50 * USDC  # not back yet: unbonding
    chain.run_to(PARAMS.unbonding_blocks - 1)
    assert chain.usdc(BOB) == start - 50 * USDC
    chain.run_to(PARAMS.unbonding_blocks)
    assert chain.usdc(BOB) == start - 30 * USDC
    assert chain.staking.unbondings == {}


def test_unbonding_entries_per_pair_are_limited() -> None:
    chain = Chain()
    create_alice(chain)
    assert chain.do(BOB, Delegate(ALICE.public_key, 100 * USDC)).ok
    for _ in range(PARAMS.max_unbondings_per_pair):
        assert chain.do(BOB, Undelegate(ALICE.public_key, USDC)).ok
    chain.refused(BOB, Undelegate(ALICE.public_key, USDC), codes.TOO_MANY_UNBONDINGS)


# ---- epochs -----------------------------------------------------------------------------------


def test_the_last_block_of_an_epoch_computes_the_top_n_set_two_epochs_on() -> None:
    chain = Chain()
    create_alice(chain, stake_usdc=500)  # more than any genesis validator (150 USDC each)
    sets = [chain.next_block() for _ in range(PARAMS.epoch_length_blocks)]
    assert sets[:-1] == [None, None, None]
    new = sets[-1]
    assert new is not None and len(new) == PARAMS.active_set_size
    assert new.keys[0] == ALICE_CONSENSUS.public_key and new.powers[0] == 500
    assert chain.staking.validator_set(2) == new
    assert chain.staking.power_of(ALICE_CONSENSUS.public_key, 2) == 500


# ---- evidence, jailing, slashing ---------------------------------------------------------------


def vote_equivocation(key: Keypair, view: int, height: int) -> VoteEquivocation:
    a = sign_vote(key, CHAIN, PREPARE, view, height, sha256(b"a"))
    b = sign_vote(key, CHAIN, PREPARE, view, height, sha256(b"b"))
    return VoteEquivocation(a, b)


def active_alice(chain: Chain) -> None:
    """Alice validates from epoch 2 on, with Bob's delegation and a pending unbonding."""
    create_alice(chain, stake_usdc=500)
    assert chain.do(BOB, Delegate(ALICE.public_key, 100 * USDC)).ok
    chain.run_to(2 * PARAMS.epoch_length_blocks + 1)  # first block of epoch 2
    assert chain.do(BOB, Undelegate(ALICE.public_key, 50 * USDC)).ok


def test_evidence_jails_slashes_stake_delegations_and_unbonding_and_applies_once() -> None:
    chain = Chain()
    active_alice(chain)
    evidence = vote_equivocation(ALICE_CONSENSUS, 40, chain.staking.height)
    assert chain.do(BOB, SubmitEvidence(2, evidence)).ok
    record = chain.staking.validators[ALICE.public_key]
    assert record.jailed
    assert record.tokens_atoms == 550 * USDC * 9 // 10
    assert chain.staking.delegation_atoms(ALICE.public_key, BOB.public_key) == 45 * USDC
    unbonding = next(iter(chain.staking.unbondings.values()))
    assert unbonding.amount_atoms == 45 * USDC
    assert chain.staking.burnt_atoms == 55 * USDC + 5 * USDC
    chain.refused(BOB, SubmitEvidence(2, evidence), codes.EVIDENCE_DUPLICATE)
    # Out of every set computed from now on.
    chain.run_to(3 * PARAMS.epoch_length_blocks)
    four = chain.staking.validator_set(4)
    assert four is not None and ALICE_CONSENSUS.public_key not in four


def test_proposal_equivocation_is_evidence_too() -> None:
    chain = Chain()
    active_alice(chain)
    key = ALICE_CONSENSUS
    a, b = sha256(b"block-a"), sha256(b"block-b")
    evidence = ProposalEquivocation(
        key.public_key, 41, a, sign_proposal(key, CHAIN, 41, a), b, sign_proposal(key, CHAIN, 41, b)
    )
    assert chain.do(BOB, SubmitEvidence(2, evidence)).ok
    assert chain.staking.validators[ALICE.public_key].jailed


def test_bad_evidence_is_refused_with_its_code_and_changes_nothing() -> None:
    chain = Chain()
    active_alice(chain)
    height = chain.staking.height
    good = vote_equivocation(ALICE_CONSENSUS, 40, height)
    forged = VoteEquivocation(
        good.vote_a,
        good.vote_b.__class__(
            **{
                **{
                    f: getattr(good.vote_b, f)
                    for f in ("phase", "view", "height", "block_hash", "voter")
                },
                "signature": bytes(64),
            }
        ),
    )
    chain.refused(BOB, SubmitEvidence(2, forged), codes.EVIDENCE_BAD_SIGNATURE)
    other_view = sign_vote(ALICE_CONSENSUS, CHAIN, PREPARE, 41, height, sha256(b"b"))
    mismatched = VoteEquivocation(good.vote_a, other_view)
    chain.refused(BOB, SubmitEvidence(2, mismatched), codes.EVIDENCE_MISMATCHED)
    twice = VoteEquivocation(good.vote_a, good.vote_a)
    chain.refused(BOB, SubmitEvidence(2, twice), codes.EVIDENCE_NOT_CONFLICTING)
    stranger = vote_equivocation(BOB, 40, height)
    chain.refused(BOB, SubmitEvidence(2, stranger), codes.EVIDENCE_NOT_VALIDATOR)
    chain.refused(BOB, SubmitEvidence(3, good), codes.EVIDENCE_FROM_FUTURE)
    # Alice was not in epoch 1's set (genesis): evidence naming that epoch is refused.
    early = vote_equivocation(ALICE_CONSENSUS, 3, PARAMS.epoch_length_blocks + 1)
    chain.refused(BOB, SubmitEvidence(1, early), codes.EVIDENCE_NOT_VALIDATOR)
    assert not chain.staking.validators[ALICE.public_key].jailed


def test_evidence_older_than_the_unbonding_period_is_refused() -> None:
    chain = Chain()
    genesis_key = GENESIS_KEYS[1]
    old = vote_equivocation(genesis_key, 2, 1)
    age_blocks = (PARAMS.evidence_max_age_epochs + 1) * PARAMS.epoch_length_blocks
    chain.run_to(age_blocks + 1)
    chain.refused(BOB, SubmitEvidence(0, old), codes.EVIDENCE_TOO_OLD)


def test_a_jailed_validator_unjails_after_the_jail_time() -> None:
    chain = Chain()
    active_alice(chain)
    chain.refused(ALICE, Unjail(), codes.NOT_JAILED)
    assert chain.do(BOB, SubmitEvidence(2, vote_equivocation(ALICE_CONSENSUS, 40, 9))).ok
    chain.refused(ALICE, Unjail(), codes.STILL_JAILED)
    chain.refused(BOB, Unjail(), codes.NOT_A_VALIDATOR)
    chain.run_to(chain.staking.validators[ALICE.public_key].jailed_until_height)
    assert chain.do(ALICE, Unjail()).ok
    assert not chain.staking.validators[ALICE.public_key].jailed


@pytest.mark.parametrize("seed", range(3))
def test_the_same_actions_give_the_same_entries(seed: int) -> None:
    runs = []
    for _ in range(2):
        chain = Chain()
        create_alice(chain, stake_usdc=100 + seed)
        chain.do(BOB, Delegate(ALICE.public_key, (10 + seed) * USDC))
        chain.run_to(9)
        runs.append(chain.staking.entries())
    assert runs[0] == runs[1]


def test_the_state_rebuilt_from_its_entries_is_the_same() -> None:
    chain = Chain()
    active_alice(chain)
    assert chain.do(BOB, SubmitEvidence(2, vote_equivocation(ALICE_CONSENSUS, 40, 9))).ok
    entries = chain.staking.entries()
    rebuilt = engine.StakingState.from_entries(CHAIN, PARAMS, entries, chain.staking.height)
    assert rebuilt.entries() == entries
    assert rebuilt.open_unbondings == chain.staking.open_unbondings
    assert rebuilt.by_consensus_key == chain.staking.by_consensus_key


# ---- through the exchange's block loop (staking/hook.py) ---------------------------------------


def exchange_block(st: ExchangeState, height: int, txs: list[Any]) -> Any:
    from state_machine.exchange import BlockContext, apply_block

    return apply_block(st, BlockContext(height, st.timestamp_ms + 500), txs)


def test_staking_actions_run_in_the_exchange_block_and_its_state_is_stored() -> None:
    from state_machine.staking.hook import enable_staking
    from state_machine.tx import Transaction, sign_transaction

    chain = Chain()
    st = chain.exchange
    enable_staking(st, PARAMS)
    action = CreateValidator(ALICE_CONSENSUS.public_key, "10.0.0.5:26656", 0, 500 * USDC)
    tx = sign_transaction(ALICE, CHAIN, st.timestamp_ms + 1, [action])
    tx = Transaction.from_wire(tx.to_wire())  # decodes as a staking action
    result = exchange_block(st, 1, [tx])
    assert result.tx_results[0].actions[0].code == codes.OK
    assert any(key[0] == 0x20 for key, _ in result.writes)
    assert ("validator_created", ALICE.public_key, ALICE_CONSENSUS.public_key, 500 * USDC) in (
        result.events
    )
    for height in range(2, PARAMS.epoch_length_blocks + 1):
        result = exchange_block(st, height, [])
    epoch_sets = [e for e in result.events if e[0] == "epoch_set"]
    assert epoch_sets and epoch_sets[0][1] == 2
    rebuilt = ExchangeState.from_entries(st.genesis, st.entries(), PARAMS)
    assert rebuilt.digest() == st.digest()


def test_staking_actions_on_a_chain_without_staking_are_refused() -> None:
    from state_machine.tx import sign_transaction

    chain = Chain()
    before = chain.exchange.digest()
    nonce = chain.exchange.timestamp_ms + 1
    tx = sign_transaction(BOB, CHAIN, nonce, [Delegate(ALICE.public_key, 50 * USDC)])
    result = exchange_block(chain.exchange, 1, [tx])
    assert result.tx_results[0].actions[0].code == codes.STAKING_DISABLED
    assert chain.usdc(BOB) == 1_000_000 * USDC and chain.exchange.digest() != before  # height


def test_the_oracle_median_follows_the_active_set() -> None:
    """A new validator's prices are refused before its epoch and move the stake-weighted
    median once it is in the active set; a validator out of the set weighs nothing."""
    from state_machine.staking.hook import enable_staking
    from state_machine.tx import OraclePrice, OracleUpdate, sign_transaction

    chain = Chain()
    st = chain.exchange
    enable_staking(st, PARAMS)
    assert st.staking is not None
    chain.staking = st.staking  # actions below go to the exchange's staking state
    market = st.genesis.markets[0].market_id

    def submit(key: Keypair, price: int, height: int) -> str:
        update = OracleUpdate((OraclePrice(market, price),))
        tx = sign_transaction(key, CHAIN, st.timestamp_ms + 1, [update])
        return str(exchange_block(st, height, [tx]).tx_results[0].actions[0].code)

    create = CreateValidator(ALICE_CONSENSUS.public_key, "10.0.0.5:26656", 0, 500 * USDC)
    assert chain.do(ALICE, create).ok
    assert submit(ALICE_CONSENSUS, 6_100_000, 1) == "not_validator"
    for height in range(2, 2 * PARAMS.epoch_length_blocks + 1):
        exchange_block(st, height, [])
    first_of_epoch_2 = 2 * PARAMS.epoch_length_blocks + 1
    assert submit(ALICE_CONSENSUS, 6_100_000, first_of_epoch_2) == "ok"
    assert st.validator_power[ALICE_CONSENSUS.public_key] == 500
    assert st.mstates[market].oracle_price_ticks == 6_100_000
    # Genesis validators 3 of 4 are out of the 3-member set: 150 + 150 + 500 in, one out.
    out = next(k for k in GENESIS_KEYS if k.public_key not in st.validator_power)
    assert submit(out, 6_200_000, first_of_epoch_2 + 1) == "not_validator"
