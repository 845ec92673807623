"""Unit tests of each safety, quorum and pacemaker rule, one rule per test."""

from __future__ import annotations

import subprocess
import sys

import pytest

from consensus import COMMIT, PRECOMMIT, PREPARE, QuorumCert, ValidatorSet
from consensus.check import ConsensusInvariantError, check
from consensus.pacemaker import (
    joined_view,
    joins_on_justify,
    joins_on_timeout_cert,
    next_block_timestamp_ms,
    proposal_ready_at_ms,
    quorum_view,
    timestamp_acceptable,
    view_timeout_ms,
)
from consensus.quorum import VoteCollector, qc_valid, tc_valid, timeout_cert
from consensus.safety import (
    block_extends,
    not_voted_yet,
    proposal_well_formed,
    safe_node,
    updated_high_qc,
    updated_lock,
)
from consensus.types import (
    NewView,
    QCSignature,
    TimeoutCert,
    TimeoutSignature,
    genesis_qc,
    newview_digest,
)
from consensus.verify import sign_newview, sign_vote
from tests.conftest import REPO_ROOT
from tests.consensus.harness import CHAIN_ID, keys

H = b"\x11" * 32
G = b"\x00" * 31 + b"\x01"


def qc(view: int, block: bytes = H, phase: int = PREPARE, height: int = 1) -> QuorumCert:
    return QuorumCert(phase, view, height, block, ())


# ---- safety rules ---------------------------------------------------------------------------


def test_no_second_vote_in_a_view_and_phase() -> None:
    assert not_voted_yet(4, 5)
    assert not not_voted_yet(5, 5)
    assert not not_voted_yet(6, 5)


@pytest.mark.parametrize(
    ("extends", "justify_view", "locked_view", "expected"),
    [
        (True, 1, 9, True),  # extends the lock: safe even with an old justify
        (False, 10, 9, True),  # newer justify than the lock: liveness rule
        (False, 9, 9, False),  # same view as the lock, conflicting block
        (False, 3, 9, False),  # stale justify, conflicting block
    ],
)
def test_safe_node(extends: bool, justify_view: int, locked_view: int, expected: bool) -> None:
    assert safe_node(extends, justify_view, locked_view) is expected


def test_block_extends_itself_and_committed_ancestors_only() -> None:
    committed = {0: G, 1: b"\x01" * 32, 2: b"\x02" * 32}
    at = committed.get
    assert block_extends(H, 3, H, 3, at)  # a block extends itself
    assert block_extends(H, 3, committed[2], 2, at)
    assert block_extends(H, 3, G, 0, at)
    assert not block_extends(H, 3, b"\x09" * 32, 2, at)  # not on the committed chain
    assert not block_extends(H, 3, b"\x09" * 32, 3, at)  # a sibling
    assert not block_extends(H, 2, committed[2], 2, at)  # a different block at the same height


def test_proposal_carries_new_block_of_its_view_or_reproposes_justify() -> None:
    justify = qc(4, H)
    assert proposal_well_formed(b"\x22" * 32, 5, 5, justify)  # new block of view 5
    assert proposal_well_formed(H, 4, 5, justify)  # the justify's block, re-proposed
    assert not proposal_well_formed(b"\x22" * 32, 4, 5, justify)  # old block, not justify's
    assert not proposal_well_formed(H, 5, 5, qc(5, H))  # justify must be older than the view


def test_lock_only_moves_to_later_views() -> None:
    lock = qc(5, phase=PRECOMMIT)
    assert updated_lock(lock, qc(6, b"\x22" * 32, PRECOMMIT)).view == 6
    assert updated_lock(lock, qc(4, b"\x22" * 32, PRECOMMIT)) is lock
    assert updated_lock(lock, qc(5, b"\x22" * 32, PRECOMMIT)) is lock


def test_high_qc_only_moves_to_later_views() -> None:
    high = qc(5)
    assert updated_high_qc(high, qc(7)).view == 7
    assert updated_high_qc(high, qc(3)) is high


# ---- quorum certificates ---------------------------------------------------------------------


def signed_qc(signers: list[int], phase: int = PREPARE, view: int = 3, n: int = 4) -> QuorumCert:
    ks = keys(n)
    votes = [sign_vote(ks[i], CHAIN_ID, phase, view, 1, H) for i in signers]
    return QuorumCert(phase, view, 1, H, tuple(QCSignature(v.voter, v.signature) for v in votes))


VALIDATORS = ValidatorSet([(k.public_key, 1) for k in keys(4)])


def test_qc_needs_more_than_two_thirds() -> None:
    assert qc_valid(signed_qc([0, 1, 2]), CHAIN_ID, VALIDATORS, G)
    assert not qc_valid(signed_qc([0, 1]), CHAIN_ID, VALIDATORS, G)


def test_qc_with_weighted_power() -> None:
    ks = keys(4)
    weighted = ValidatorSet([(ks[0].public_key, 5), *((k.public_key, 1) for k in ks[1:])])
    assert not qc_valid(signed_qc([0]), CHAIN_ID, weighted, G)  # 5 of 8 is not > 2/3
    assert not qc_valid(signed_qc([1, 2, 3]), CHAIN_ID, weighted, G)
    assert qc_valid(signed_qc([0, 1]), CHAIN_ID, weighted, G)  # 6 of 8 > 2/3


def test_duplicate_signers_count_once() -> None:
    good = signed_qc([0, 1])
    padded = QuorumCert(PREPARE, 3, 1, H, (*good.signatures, good.signatures[0]))
    assert not qc_valid(padded, CHAIN_ID, VALIDATORS, G)


def test_qc_signer_outside_the_validator_set_is_invalid() -> None:
    outsider = keys(5)[4]
    vote = sign_vote(outsider, CHAIN_ID, PREPARE, 3, 1, H)
    base = signed_qc([0, 1, 2])
    forged = QuorumCert(
        PREPARE, 3, 1, H, (*base.signatures, QCSignature(vote.voter, vote.signature))
    )
    assert not qc_valid(forged, CHAIN_ID, VALIDATORS, G)


def test_qc_with_a_bad_signature_is_invalid() -> None:
    base = signed_qc([0, 1, 2])
    bad = QCSignature(base.signatures[2].signer, bytes(64))
    assert not qc_valid(
        QuorumCert(PREPARE, 3, 1, H, (*base.signatures[:2], bad)), CHAIN_ID, VALIDATORS, G
    )


def test_qc_signatures_bind_phase_view_block_and_chain() -> None:
    base = signed_qc([0, 1, 2], phase=PREPARE)
    assert not qc_valid(QuorumCert(COMMIT, 3, 1, H, base.signatures), CHAIN_ID, VALIDATORS, G)
    assert not qc_valid(QuorumCert(PREPARE, 4, 1, H, base.signatures), CHAIN_ID, VALIDATORS, G)
    other = b"\x33" * 32
    assert not qc_valid(QuorumCert(PREPARE, 3, 1, other, base.signatures), CHAIN_ID, VALIDATORS, G)
    assert not qc_valid(base, "another-chain", VALIDATORS, G)


def test_genesis_qc_is_valid_only_for_genesis() -> None:
    assert qc_valid(genesis_qc(G), CHAIN_ID, VALIDATORS, G)
    assert not qc_valid(genesis_qc(H), CHAIN_ID, VALIDATORS, G)
    assert not qc_valid(QuorumCert(PREPARE, 0, 1, G, ()), CHAIN_ID, VALIDATORS, G)


def test_collector_forms_qc_once_at_quorum_ignoring_duplicates() -> None:
    ks = keys(4)
    collector = VoteCollector(VALIDATORS, PREPARE, 3, 1, H)
    v = [sign_vote(k, CHAIN_ID, PREPARE, 3, 1, H) for k in ks]
    assert collector.add(v[2]) is None
    assert collector.add(v[2]) is None  # duplicate ignored
    assert collector.add(v[0]) is None
    formed = collector.add(v[1])
    assert formed is not None and qc_valid(formed, CHAIN_ID, VALIDATORS, G)
    assert [s.signer for s in formed.signatures] == [
        ks[0].public_key,
        ks[1].public_key,
        ks[2].public_key,
    ]  # genesis order
    assert collector.add(v[3]) is None  # only once


# ---- pacemaker --------------------------------------------------------------------------------


def test_view_timeout_doubles_and_is_capped() -> None:
    assert [view_timeout_ms(1_000, 8_000, k) for k in range(6)] == [
        1_000,
        2_000,
        4_000,
        8_000,
        8_000,
        8_000,
    ]
    assert view_timeout_ms(1_000, 8_000, 10_000) == 8_000


def test_proposal_pacing_and_timestamps() -> None:
    assert proposal_ready_at_ms(10_000, 500) == 10_500
    assert next_block_timestamp_ms(now_ms=10_700, parent_timestamp_ms=10_000) == 10_700
    assert next_block_timestamp_ms(now_ms=9_000, parent_timestamp_ms=10_000) == 10_001


def test_timestamp_must_increase_and_stay_within_drift() -> None:
    assert timestamp_acceptable(101, 100, now_ms=50, max_drift_ms=60)
    assert not timestamp_acceptable(100, 100, now_ms=500, max_drift_ms=60)  # not increasing
    assert not timestamp_acceptable(111, 100, now_ms=50, max_drift_ms=60)  # too far ahead


def test_timeout_certificate_and_join_views() -> None:
    ks = [k.public_key for k in keys(4)]
    assert quorum_view({ks[0]: 5, ks[1]: 5, ks[2]: 4}, VALIDATORS) == 4
    assert quorum_view({ks[0]: 5, ks[1]: 5, ks[2]: 5}, VALIDATORS) == 5
    assert quorum_view({ks[0]: 9, ks[1]: 5}, VALIDATORS) is None
    assert joined_view({ks[0]: 9, ks[1]: 5}, VALIDATORS) == 5  # 2 of 4 > 1/3 at >= 5
    assert joined_view({ks[0]: 9}, VALIDATORS) is None  # one validator alone cannot pull us
    outsider = keys(5)[4].public_key
    assert joined_view({ks[0]: 9, outsider: 9}, VALIDATORS) is None


# ---- timeout certificates ------------------------------------------------------------------------


def signed_newview(i: int, view: int, n: int = 4) -> NewView:
    k = keys(n)[i]
    high = signed_qc([0, 1, 2], view=2)
    return NewView(view, high, None, k.public_key, sign_newview(k, CHAIN_ID, view, high))


def signed_tc(
    signers: list[int], view: int = 7, entry_views: list[int] | None = None
) -> TimeoutCert:
    views = entry_views or [view] * len(signers)
    newviews = [signed_newview(i, v) for i, v in zip(signers, views, strict=True)]
    return timeout_cert(view, newviews, VALIDATORS)


def test_tc_needs_more_than_two_thirds_of_newviews_for_its_view_or_later() -> None:
    assert tc_valid(signed_tc([0, 1, 2]), CHAIN_ID, VALIDATORS)
    assert tc_valid(signed_tc([0, 1, 2, 3]), CHAIN_ID, VALIDATORS)
    assert tc_valid(signed_tc([0, 1, 2], entry_views=[7, 9, 8]), CHAIN_ID, VALIDATORS)
    assert not tc_valid(signed_tc([0, 1]), CHAIN_ID, VALIDATORS)
    # NEW-VIEWs for an earlier view say nothing about leaving the views below ours.
    lower = signed_tc([0, 1, 2], view=6)
    assert not tc_valid(TimeoutCert(7, lower.signatures), CHAIN_ID, VALIDATORS)
    assert not tc_valid(TimeoutCert(0, signed_tc([0, 1, 2], 1).signatures), CHAIN_ID, VALIDATORS)
    assert not tc_valid(TimeoutCert(7, ()), CHAIN_ID, VALIDATORS)


def test_tc_with_weighted_power() -> None:
    ks = keys(4)
    weighted = ValidatorSet([(ks[0].public_key, 5), *((k.public_key, 1) for k in ks[1:])])
    tc = signed_tc([1, 2, 3])
    assert not tc_valid(tc, CHAIN_ID, weighted)  # 3 of 8
    assert tc_valid(signed_tc([0, 1]), CHAIN_ID, weighted)  # 6 of 8


def test_tc_signers_must_be_distinct_and_in_genesis_order() -> None:
    tc = signed_tc([0, 1, 2])
    a, b, c = tc.signatures
    assert not tc_valid(TimeoutCert(7, (a, c, b)), CHAIN_ID, VALIDATORS)
    assert not tc_valid(TimeoutCert(7, (a, b, b)), CHAIN_ID, VALIDATORS)
    assert not tc_valid(TimeoutCert(7, (a, a, b, c)), CHAIN_ID, VALIDATORS)
    # The builder puts any set of NEW-VIEWs in the one canonical order.
    shuffled = [signed_newview(i, 7) for i in (2, 0, 1)]
    assert timeout_cert(7, shuffled, VALIDATORS) == tc


def test_tc_signer_outside_the_set_or_bad_signature_is_invalid() -> None:
    tc = signed_tc([0, 1, 2])
    outsider = keys(5)[4]
    high = signed_qc([0, 1, 2], view=2)
    forged = TimeoutSignature(
        outsider.public_key, 7, newview_digest(high), sign_newview(outsider, CHAIN_ID, 7, high)
    )
    assert not tc_valid(TimeoutCert(7, (*tc.signatures, forged)), CHAIN_ID, VALIDATORS)
    a, b, c = tc.signatures
    zeroed = TimeoutSignature(c.signer, c.view, c.high_qc_digest, bytes(64))
    assert not tc_valid(TimeoutCert(7, (a, b, zeroed)), CHAIN_ID, VALIDATORS)
    # The signature binds the entry's view, its QC digest and the chain.
    raised = TimeoutSignature(c.signer, c.view + 1, c.high_qc_digest, c.signature)
    assert not tc_valid(TimeoutCert(7, (a, b, raised)), CHAIN_ID, VALIDATORS)
    other_qc = TimeoutSignature(c.signer, c.view, b"\x33" * 32, c.signature)
    assert not tc_valid(TimeoutCert(7, (a, b, other_qc)), CHAIN_ID, VALIDATORS)
    assert not tc_valid(tc, "another-chain", VALIDATORS)


def test_join_a_later_view_on_its_proposal() -> None:
    assert joins_on_justify(proposal_view=6, justify_view=5, our_view=5)
    assert joins_on_justify(proposal_view=6, justify_view=5, our_view=3)
    assert not joins_on_justify(proposal_view=7, justify_view=5, our_view=5)  # a view between
    assert not joins_on_justify(proposal_view=6, justify_view=5, our_view=6)  # not later
    assert joins_on_timeout_cert(tc_view=7, proposal_view=7, our_view=6)
    assert joins_on_timeout_cert(tc_view=7, proposal_view=7, our_view=2)
    assert not joins_on_timeout_cert(tc_view=6, proposal_view=7, our_view=5)  # not its view
    assert not joins_on_timeout_cert(tc_view=7, proposal_view=7, our_view=7)


# ---- the invariant helper -----------------------------------------------------------------------


def test_check_raises() -> None:
    check(True, "fine")
    with pytest.raises(ConsensusInvariantError, match="broken"):
        check(False, "broken")


def test_check_survives_python_optimize_flag() -> None:
    code = (
        "from consensus.check import check, ConsensusInvariantError\n"
        "try:\n    check(False, 'x')\nexcept ConsensusInvariantError:\n    print('raised')\n"
    )
    out = subprocess.run(
        [sys.executable, "-O", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
    )
    assert out.stdout.strip() == "raised"
