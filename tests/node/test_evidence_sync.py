"""Equivocation evidence is proven before it counts, once per validator and view; block sync
is served within a per-peer byte budget. Real signatures throughout."""

from __future__ import annotations

import dataclasses

import pytest

from consensus.types import PRECOMMIT, PREPARE, ProposalEquivocation, VoteEquivocation
from consensus.validators import ValidatorSet
from consensus.verify import sign_proposal, sign_vote
from node.evidence import EvidenceBook, EvidenceVerdict, offender_and_view
from node.sync_serve import SyncServeBudget
from state_machine.crypto import Keypair

CHAIN_ID = "perpbft-test"
KEYS = [Keypair(bytes([i + 1]) * 32) for i in range(4)]
VALIDATORS = ValidatorSet([(k.public_key, 1) for k in KEYS])
HASH_A, HASH_B = b"\x0a" * 32, b"\x0b" * 32


def vote_equivocation(key: Keypair, view: int, phase: int = PREPARE) -> VoteEquivocation:
    a = sign_vote(key, CHAIN_ID, phase, view, 3, HASH_A)
    b = sign_vote(key, CHAIN_ID, phase, view, 3, HASH_B)
    return VoteEquivocation(a, b)


def test_proven_evidence_counts_once_per_validator_and_view() -> None:
    book = EvidenceBook(CHAIN_ID, VALIDATORS)
    evidence = vote_equivocation(KEYS[1], 7)
    assert offender_and_view(evidence) == (KEYS[1].public_key, 7)
    assert book.consider(evidence) is EvidenceVerdict.NEW
    assert book.consider(evidence) is EvidenceVerdict.DUPLICATE
    # Another phase, or a proposal, of the same validator in the same view: the same fact.
    assert book.consider(vote_equivocation(KEYS[1], 7, PRECOMMIT)) is EvidenceVerdict.DUPLICATE
    proposal = ProposalEquivocation(
        KEYS[1].public_key,
        7,
        HASH_A,
        sign_proposal(KEYS[1], CHAIN_ID, 7, HASH_A),
        HASH_B,
        sign_proposal(KEYS[1], CHAIN_ID, 7, HASH_B),
    )
    assert book.consider(proposal) is EvidenceVerdict.DUPLICATE
    assert book.consider(vote_equivocation(KEYS[1], 8)) is EvidenceVerdict.NEW
    assert book.consider(vote_equivocation(KEYS[2], 7)) is EvidenceVerdict.NEW
    assert len(book) == 3


def forgeries() -> dict[str, VoteEquivocation]:
    honest = vote_equivocation(KEYS[1], 5)
    a, b = honest.vote_a, honest.vote_b
    other = sign_vote(KEYS[2], CHAIN_ID, PREPARE, 5, 3, HASH_B)
    outsider = Keypair(b"\x77" * 32)
    return {
        "flipped signature": VoteEquivocation(
            a, dataclasses.replace(b, signature=bytes([b.signature[0] ^ 1]) + b.signature[1:])
        ),
        "signed by another key": VoteEquivocation(
            a, dataclasses.replace(b, signature=other.signature)
        ),
        "two voters": VoteEquivocation(a, other),
        "same block": VoteEquivocation(a, a),
        "other view": VoteEquivocation(a, sign_vote(KEYS[1], CHAIN_ID, PREPARE, 6, 3, HASH_B)),
        "other phase": VoteEquivocation(a, sign_vote(KEYS[1], CHAIN_ID, PRECOMMIT, 5, 3, HASH_B)),
        "not a validator": vote_equivocation(outsider, 5),
        "another chain": VoteEquivocation(
            sign_vote(KEYS[1], "another-chain", PREPARE, 5, 3, HASH_A),
            sign_vote(KEYS[1], "another-chain", PREPARE, 5, 3, HASH_B),
        ),
    }


@pytest.mark.parametrize("name", sorted(forgeries()))
def test_evidence_that_proves_nothing_is_forged_and_not_recorded(name: str) -> None:
    book = EvidenceBook(CHAIN_ID, VALIDATORS)
    assert book.consider(forgeries()[name]) is EvidenceVerdict.FORGED
    assert len(book) == 0
    # A forgery does not keep the real equivocation from counting.
    assert book.consider(vote_equivocation(KEYS[1], 5)) is EvidenceVerdict.NEW


def test_the_book_is_bounded_and_forgets_the_oldest_pairs() -> None:
    book = EvidenceBook(CHAIN_ID, VALIDATORS, pairs_max=2)
    for view in (1, 2, 3):
        assert book.consider(vote_equivocation(KEYS[0], view)) is EvidenceVerdict.NEW
    assert len(book) == 2
    assert book.consider(vote_equivocation(KEYS[0], 3)) is EvidenceVerdict.DUPLICATE
    assert book.consider(vote_equivocation(KEYS[0], 1)) is EvidenceVerdict.NEW


def test_sync_budget_meters_each_peer_separately_and_refills() -> None:
    budget = SyncServeBudget(bytes_per_s=100_000, burst_bytes=200_000, request_cost_bytes=10_000)
    peer, other = b"p" * 32, b"o" * 32
    allowance = budget.admit(peer, 0.0)
    assert allowance == 190_000
    budget.charge(peer, 190_000, 0.0)
    assert budget.admit(peer, 0.0) is None  # empty: refused
    assert budget.admit(other, 0.0) == 190_000  # another peer has its own bucket
    assert budget.admit(peer, 0.05) is None  # 5,000 bytes back: less than a request
    assert budget.admit(peer, 0.1) == 0  # 10,000 back: one request, nothing to send
    assert budget.available(peer, 100.0) == 200_000  # refills up to the burst, no further


def test_sync_budget_bounds_what_a_peer_can_take_over_time() -> None:
    """Whatever a peer asks, it gets at most the burst plus the rate times the time."""
    budget = SyncServeBudget(bytes_per_s=50_000, burst_bytes=100_000, request_cost_bytes=1_000)
    peer = b"p" * 32
    sent = 0
    for step in range(1_000):  # a request every millisecond for a second
        now_s = step / 1000
        allowance = budget.admit(peer, now_s)
        if allowance is None:
            continue
        answer = min(allowance, 30_000)
        budget.charge(peer, answer, now_s)
        sent += answer
    assert sent <= 100_000 + 50_000


def test_sync_budget_refuses_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        SyncServeBudget(bytes_per_s=0, burst_bytes=100_000)
    with pytest.raises(ValueError):
        SyncServeBudget(bytes_per_s=1_000, burst_bytes=10, request_cost_bytes=100)
