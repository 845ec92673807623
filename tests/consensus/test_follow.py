"""The full node's rule for storing a committed block (consensus/follow.py), on blocks and
commit QCs made by a real in-memory 4-validator cluster, and on forgeries of them."""

from __future__ import annotations

import dataclasses

import pytest

from consensus.follow import (
    INVALID_QC,
    NOT_CHAINED,
    NOT_NEXT,
    PAYLOAD_MISMATCH,
    QC_MISMATCH,
    SENDER_FAULTS,
    STATE_DIVERGED,
    committed_block_refusal,
)
from consensus.types import (
    PREPARE,
    Block,
    CommittedBlock,
    QCSignature,
    QuorumCert,
    genesis_block,
    vote_signing_bytes,
)
from state_machine.crypto import Keypair, sha256
from tests.consensus.harness import CHAIN_ID, T0, Cluster


@pytest.fixture(scope="module")
def chain() -> tuple[Cluster, list[CommittedBlock]]:
    cluster = Cluster(4)
    cluster.start()
    cluster.run_until_height(3)
    entries = [cluster.replicas[0].committed_block(h) for h in (1, 2, 3)]
    assert all(e is not None for e in entries)
    return cluster, [e for e in entries if e is not None]


def refusal(cluster: Cluster, parent: CommittedBlock | None, block: Block, qc: QuorumCert) -> str:
    """The verdict for ``(block, qc)`` on a node whose tip is ``parent`` (None: genesis),
    holding the state root the next header certifies."""
    genesis_hash = genesis_block(T0).block_hash()
    tip_hash = genesis_hash if parent is None else parent.block.block_hash()
    return committed_block_refusal(
        block,
        qc,
        tip_height=0 if parent is None else parent.block.height,
        tip_hash=tip_hash,
        tip_state_root=block.header.state_root,
        chain_id=CHAIN_ID,
        genesis_set=cluster.validators,
        genesis_hash=genesis_hash,
    )


def forged_qc(signers: list[Keypair], qc: QuorumCert) -> QuorumCert:
    message = vote_signing_bytes(CHAIN_ID, qc.phase, qc.view, qc.height, qc.block_hash)
    sigs = tuple(QCSignature(k.public_key, k.sign(message)) for k in signers)
    return dataclasses.replace(qc, signatures=sigs)


def test_the_validators_blocks_are_accepted_in_order(
    chain: tuple[Cluster, list[CommittedBlock]],
) -> None:
    cluster, (b1, b2, b3) = chain
    assert refusal(cluster, None, b1.block, b1.commit_qc) == ""
    assert refusal(cluster, b1, b2.block, b2.commit_qc) == ""
    assert refusal(cluster, b2, b3.block, b3.commit_qc) == ""


def test_a_qc_signed_by_non_validators_is_refused(
    chain: tuple[Cluster, list[CommittedBlock]],
) -> None:
    cluster, (b1, b2, _) = chain
    outsiders = [Keypair(sha256(b"outsider-%d" % i)) for i in range(4)]
    assert refusal(cluster, b1, b2.block, forged_qc(outsiders, b2.commit_qc)) == INVALID_QC
    # Two validators (not a quorum of four) and two outsiders: still refused.
    mixed = [*cluster.keys[:2], *outsiders[:2]]
    assert refusal(cluster, b1, b2.block, forged_qc(mixed, b2.commit_qc)) == INVALID_QC
    # Two validators alone are not more than 2/3 of the power.
    assert refusal(cluster, b1, b2.block, forged_qc(cluster.keys[:2], b2.commit_qc)) == INVALID_QC
    # The validators' real signatures on a different message do not count.
    wrong_height = dataclasses.replace(b2.commit_qc, height=2, view=b2.commit_qc.view + 1)
    assert refusal(cluster, b1, b2.block, wrong_height) == INVALID_QC
    assert INVALID_QC in SENDER_FAULTS


def test_a_qc_of_another_phase_or_block_is_refused(
    chain: tuple[Cluster, list[CommittedBlock]],
) -> None:
    cluster, (b1, b2, b3) = chain
    prepare_qc = forged_qc(cluster.keys[:3], dataclasses.replace(b2.commit_qc, phase=PREPARE))
    assert refusal(cluster, b1, b2.block, prepare_qc) == QC_MISMATCH
    assert refusal(cluster, b1, b2.block, b3.commit_qc) == QC_MISMATCH


def test_a_block_off_our_chain_or_with_a_changed_payload_is_refused(
    chain: tuple[Cluster, list[CommittedBlock]],
) -> None:
    cluster, (b1, b2, b3) = chain
    assert refusal(cluster, b1, b3.block, b3.commit_qc) == NOT_NEXT
    assert refusal(cluster, b2, b2.block, b2.commit_qc) == NOT_NEXT
    other_parent = dataclasses.replace(
        b2.block.header, parent_hash=sha256(b"a block we never stored")
    )
    fork = Block(other_parent, b2.block.payload)
    fork_qc = forged_qc(
        cluster.keys[:3], dataclasses.replace(b2.commit_qc, block_hash=fork.block_hash())
    )
    assert refusal(cluster, b1, fork, fork_qc) == NOT_CHAINED
    swapped = Block(b2.block.header, (b"z=9",))
    assert refusal(cluster, b1, swapped, b2.commit_qc) == PAYLOAD_MISMATCH
    assert NOT_NEXT not in SENDER_FAULTS  # may be an answer to an older request


def test_a_certified_block_whose_parent_root_differs_from_ours_is_divergence(
    chain: tuple[Cluster, list[CommittedBlock]],
) -> None:
    cluster, (b1, b2, _) = chain
    genesis_hash = genesis_block(T0).block_hash()
    verdict = committed_block_refusal(
        b2.block,
        b2.commit_qc,
        tip_height=1,
        tip_hash=b1.block.block_hash(),
        tip_state_root=sha256(b"a state the validators never had"),
        chain_id=CHAIN_ID,
        genesis_set=cluster.validators,
        genesis_hash=genesis_hash,
    )
    assert verdict == STATE_DIVERGED
    assert STATE_DIVERGED not in SENDER_FAULTS  # our own fault, not the peer's
