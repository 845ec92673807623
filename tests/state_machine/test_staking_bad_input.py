"""Bad staking input through the exchange's block loop: each refused with its result code, and
the state root after the block is the root after the same block with a no-op transaction of
the same signer and nonce in its place (so the refused action changed nothing but the nonce
every transaction uses up).

Covers the issue's list: evidence with forged signatures (vote and proposal), mismatched
views (and phases, voters, epochs), the same message twice, evidence about a non-validator
(and about a validator outside the named epoch's set), evidence applied twice, evidence from
the future, staking below the minimum (self-stake and delegation), undelegating more than
delegated or from a validator never delegated to. Transactions go through their wire bytes, as
from a block.
"""

from __future__ import annotations

from typing import Any

import pytest

from consensus import PREPARE
from consensus.types import PRECOMMIT, ProposalEquivocation, Vote, VoteEquivocation
from consensus.verify import sign_proposal, sign_vote
from state_machine.crypto import Keypair, sha256
from state_machine.exchange import BlockContext, ExchangeState, apply_block
from state_machine.genesis import default_genesis
from state_machine.merkle_state import MerkleState
from state_machine.staking import codes
from state_machine.staking.actions import CreateValidator, Delegate, SubmitEvidence, Undelegate
from state_machine.staking.hook import enable_staking
from state_machine.staking.params import ATOMS_PER_POWER, StakingParams
from state_machine.tx import Action, CancelAll, Transaction, sign_transaction

CHAIN = "staking-bad-input"
USDC = ATOMS_PER_POWER
L = 4  # blocks per epoch
PARAMS = StakingParams(
    epoch_length_blocks=L,
    active_set_size=5,
    min_self_stake_atoms=100 * USDC,
    min_delegation_atoms=10 * USDC,
    unbonding_blocks=4 * L,
    jail_blocks=L,
)
GENESIS_KEYS = [Keypair(sha256(b"bad-input-genesis-%d" % i)) for i in range(4)]
ALICE = Keypair(sha256(b"bad-input-alice"))
ALICE_CONSENSUS = Keypair(sha256(b"bad-input-alice-consensus"))
BOB = Keypair(sha256(b"bad-input-bob"))
CAROL = Keypair(sha256(b"bad-input-carol"))
GENESIS = default_genesis(
    CHAIN,
    [(k.public_key, 150) for k in GENESIS_KEYS],
    [ALICE.public_key, BOB.public_key, CAROL.public_key],
)


def tx(key: Keypair, nonce: int, *actions: Action) -> Transaction:
    return Transaction.from_wire(sign_transaction(key, CHAIN, nonce, list(actions)).to_wire())


def block(st: ExchangeState, txs: list[Transaction]) -> Any:
    return apply_block(st, BlockContext(st.height + 1, st.timestamp_ms + 500), txs)


def root(st: ExchangeState) -> bytes:
    return MerkleState.from_entries(st.entries()).root()


def copy_of(st: ExchangeState) -> ExchangeState:
    return ExchangeState.from_entries(GENESIS, st.entries(), PARAMS)


def chain_in_epoch_2() -> ExchangeState:
    """Alice validates from epoch 2 (with Bob's delegation); the chain is at its 2nd block."""
    st = ExchangeState.from_genesis(GENESIS)
    enable_staking(st, PARAMS)
    create = CreateValidator(ALICE_CONSENSUS.public_key, "10.0.0.7:26656", 100, 500 * USDC)
    nonce = st.timestamp_ms + 1  # nonces are milliseconds near the block time
    delegate = Delegate(ALICE.public_key, 50 * USDC)
    first = block(st, [tx(ALICE, nonce, create), tx(BOB, nonce, delegate)])
    assert [r.actions[0].code for r in first.tx_results] == [codes.OK, codes.OK]
    while st.height < 2 * L + 2:
        block(st, [])
    assert st.staking is not None and st.staking.power_of(ALICE_CONSENSUS.public_key, 2) == 550
    return st


def votes(view: int, height: int, key: Keypair = ALICE_CONSENSUS) -> tuple[Vote, Vote]:
    a = sign_vote(key, CHAIN, PREPARE, view, height, sha256(b"a"))
    b = sign_vote(key, CHAIN, PREPARE, view, height, sha256(b"b"))
    return a, b


def forged(vote: Vote) -> Vote:
    fields = ("phase", "view", "height", "block_hash", "voter")
    return Vote(**{f: getattr(vote, f) for f in fields}, signature=bytes(64))


def proposals(view: int, same: bool = False, forge: bool = False) -> ProposalEquivocation:
    key = ALICE_CONSENSUS
    a = sha256(b"block-a")
    b = a if same else sha256(b"block-b")
    sig_b = bytes(64) if forge else sign_proposal(key, CHAIN, view, b)
    sig_a = sign_proposal(key, CHAIN, view, a)
    return ProposalEquivocation(key.public_key, view, a, sig_a, b, sig_b)


H = 2 * L + 2  # a height of epoch 2, where Alice is in the set
GOOD = VoteEquivocation(*votes(40, H))
OTHER_VIEW = sign_vote(ALICE_CONSENSUS, CHAIN, PREPARE, 41, H, sha256(b"b"))
OTHER_PHASE = sign_vote(ALICE_CONSENSUS, CHAIN, PRECOMMIT, 40, H, sha256(b"b"))
GENESIS_VOTE = sign_vote(GENESIS_KEYS[0], CHAIN, PREPARE, 40, H, sha256(b"b"))

BAD: dict[str, tuple[Keypair, Action, str]] = {
    "forged vote signature": (
        CAROL, SubmitEvidence(2, VoteEquivocation(GOOD.vote_a, forged(GOOD.vote_b))),
        codes.EVIDENCE_BAD_SIGNATURE),
    "forged proposal signature": (
        CAROL, SubmitEvidence(2, proposals(40, forge=True)), codes.EVIDENCE_BAD_SIGNATURE),
    "votes of two views": (
        CAROL, SubmitEvidence(2, VoteEquivocation(GOOD.vote_a, OTHER_VIEW)),
        codes.EVIDENCE_MISMATCHED),
    "votes of two phases": (
        CAROL, SubmitEvidence(2, VoteEquivocation(GOOD.vote_a, OTHER_PHASE)),
        codes.EVIDENCE_MISMATCHED),
    "votes of two voters": (
        CAROL, SubmitEvidence(2, VoteEquivocation(GOOD.vote_a, GENESIS_VOTE)),
        codes.EVIDENCE_MISMATCHED),
    "votes of another epoch": (
        CAROL, SubmitEvidence(1, GOOD), codes.EVIDENCE_MISMATCHED),
    "the same vote twice": (
        CAROL, SubmitEvidence(2, VoteEquivocation(GOOD.vote_a, GOOD.vote_a)),
        codes.EVIDENCE_NOT_CONFLICTING),
    "the same proposal twice": (
        CAROL, SubmitEvidence(2, proposals(40, same=True)), codes.EVIDENCE_NOT_CONFLICTING),
    "about a non-validator": (
        CAROL, SubmitEvidence(2, VoteEquivocation(*votes(40, H, BOB))),
        codes.EVIDENCE_NOT_VALIDATOR),
    "about a validator outside that epoch's set": (
        CAROL, SubmitEvidence(1, VoteEquivocation(*votes(7, L + 1))),
        codes.EVIDENCE_NOT_VALIDATOR),
    "from a future epoch": (
        CAROL, SubmitEvidence(3, VoteEquivocation(*votes(60, 3 * L + 1))),
        codes.EVIDENCE_FROM_FUTURE),
    "self-stake below the minimum": (
        CAROL, CreateValidator(sha256(b"carol-consensus"), "10.0.0.8:26656", 0, 99 * USDC),
        codes.STAKE_TOO_SMALL),
    "delegation below the minimum": (
        CAROL, Delegate(ALICE.public_key, 9 * USDC), codes.STAKE_TOO_SMALL),
    "undelegating more than delegated": (
        BOB, Undelegate(ALICE.public_key, 50 * USDC + 1), codes.INSUFFICIENT_DELEGATION),
    "undelegating with no delegation": (
        CAROL, Undelegate(ALICE.public_key, USDC), codes.NO_DELEGATION),
}  # fmt: skip


def refused_and_nothing_changed(st: ExchangeState, who: Keypair, action: Action, code: str) -> None:
    nonce = st.timestamp_ms + 1_000
    bad, noop = copy_of(st), copy_of(st)
    result = block(bad, [tx(who, nonce, action)])
    assert result.tx_results[0].actions[0].code == code, result.tx_results[0].actions[0]
    block(noop, [tx(who, nonce, CancelAll(None))])
    assert root(bad) == root(noop)
    assert bad.digest() == noop.digest()


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_staking_input_is_refused_and_changes_nothing(case: str) -> None:
    st = chain_in_epoch_2()
    who, action, code = BAD[case]
    refused_and_nothing_changed(st, who, action, code)


def test_evidence_applied_once_then_refused_as_a_duplicate() -> None:
    st = chain_in_epoch_2()
    before = root(st)
    result = block(st, [tx(CAROL, st.timestamp_ms + 5, SubmitEvidence(2, GOOD))])
    assert result.tx_results[0].actions[0].code == codes.OK
    assert st.staking is not None and st.staking.validators[ALICE.public_key].jailed
    assert root(st) != before
    # The same evidence again, and other evidence of the same view: one slash per view.
    refused_and_nothing_changed(st, CAROL, SubmitEvidence(2, GOOD), codes.EVIDENCE_DUPLICATE)
    again = SubmitEvidence(2, proposals(40))
    refused_and_nothing_changed(st, CAROL, again, codes.EVIDENCE_DUPLICATE)


def test_the_no_op_comparison_sees_a_change() -> None:
    """The comparison above is not blind: an accepted action makes the roots differ."""
    st = chain_in_epoch_2()
    bad, noop = copy_of(st), copy_of(st)
    nonce = st.timestamp_ms + 77
    block(bad, [tx(BOB, nonce, Delegate(ALICE.public_key, 10 * USDC))])
    block(noop, [tx(BOB, nonce, CancelAll(None))])
    assert root(bad) != root(noop)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("self-stake below the minimum", "self-stake below 100 USDC"),
        ("delegation below the minimum", "below the minimum 10 USDC"),
        ("undelegating more than delegated", "only 50 USDC delegated"),
    ],
)
def test_stake_refusals_say_the_amounts_in_usdc(case: str, message: str) -> None:
    st = chain_in_epoch_2()
    who, action, _ = BAD[case]
    result = block(st, [tx(who, st.timestamp_ms + 1_000, action)])
    assert result.tx_results[0].actions[0].message == message
