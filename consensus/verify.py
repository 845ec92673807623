"""Signing and checking signed consensus messages at the edge.

Every check here is cheap to call and never raises on hostile input: a False answer means the
replica drops the message. All signatures go through :func:`state_machine.crypto.verify`.
"""

from __future__ import annotations

from consensus.quorum import vote_signature_valid
from consensus.signing import Signer
from consensus.types import (
    Evidence,
    NewView,
    Proposal,
    ProposalEquivocation,
    QuorumCert,
    Vote,
    VoteEquivocation,
    newview_signing_bytes,
    proposal_signing_bytes,
    vote_signing_bytes,
)
from consensus.validators import ValidatorSet
from state_machine.crypto import verify


def sign_vote(
    key: Signer, chain_id: str, phase: int, view: int, height: int, block_hash: bytes
) -> Vote:
    signature = key.sign(vote_signing_bytes(chain_id, phase, view, height, block_hash))
    return Vote(phase, view, height, block_hash, key.public_key, signature)


def sign_proposal(key: Signer, chain_id: str, view: int, block_hash: bytes) -> bytes:
    return key.sign(proposal_signing_bytes(chain_id, view, block_hash))


def sign_newview(key: Signer, chain_id: str, view: int, high_qc: QuorumCert) -> bytes:
    return key.sign(newview_signing_bytes(chain_id, view, high_qc))


def proposal_signature_valid(chain_id: str, proposal: Proposal, block_hash: bytes) -> bool:
    message = proposal_signing_bytes(chain_id, proposal.view, block_hash)
    return verify(proposal.proposer, message, proposal.signature)


def newview_signature_valid(chain_id: str, newview: NewView) -> bool:
    message = newview_signing_bytes(chain_id, newview.view, newview.high_qc)
    return verify(newview.sender, message, newview.signature)


def evidence_valid(evidence: Evidence, chain_id: str, validators: ValidatorSet) -> bool:
    """True iff ``evidence`` proves that one genesis validator signed two conflicting messages
    of the same kind in the same view (and phase). For a node receiving evidence from peers."""
    if isinstance(evidence, VoteEquivocation):
        a, b = evidence.vote_a, evidence.vote_b
        return (
            a.voter == b.voter
            and a.voter in validators
            and (a.phase, a.view) == (b.phase, b.view)
            and a.block_hash != b.block_hash
            and vote_signature_valid(chain_id, a)
            and vote_signature_valid(chain_id, b)
        )
    if isinstance(evidence, ProposalEquivocation):
        e = evidence
        return (
            e.proposer in validators
            and e.block_hash_a != e.block_hash_b
            and verify(
                e.proposer, proposal_signing_bytes(chain_id, e.view, e.block_hash_a), e.signature_a
            )
            and verify(
                e.proposer, proposal_signing_bytes(chain_id, e.view, e.block_hash_b), e.signature_b
            )
        )
    return False
