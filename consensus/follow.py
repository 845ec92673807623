"""Following the chain without voting: may a full node store this committed block next?

Theory of operation
-------------------
A full node has no vote and keeps no safety data. It learns committed blocks from peers
(validators or other full nodes) as ``(block, commit QC)`` pairs, and it trusts nothing a peer
says about them: the commit QC is the only authority. A pair is stored as the next height iff

1. the block is the next height and names our tip as its parent (a chain, not a fork),
2. the QC is a COMMIT QC for exactly this block (hash and height),
3. the block carries the payload its header commits to,
4. the QC holds signatures of more than 2/3 of the voting power of the validator set that
   certifies that height (:func:`verifying_set`), each a valid Ed25519 signature.

Then the header's state root (the root after its parent) must equal ours: a mismatch with a
valid QC means our own execution diverged from the validators', which is fatal for the node,
not the peer's fault, so it is reported apart (:data:`STATE_DIVERGED`).

Why this is enough: with at most a third of the power faulty, two commit QCs for different
blocks at one height cannot exist (quorum intersection), so the block a valid commit QC
certifies is the block every honest validator executed. A peer can only withhold blocks, never
make us store a wrong one; withholding is met by asking another peer.

:func:`verifying_set` is the one place that answers "which set verifies the QC of height h":
the set of h's epoch (``consensus/epochs.py``). A full node learns each set by executing the
last block of the epoch two before (the node feeds its :class:`EpochSets`), so following in
height order it always knows the set of the next height; a height whose set it does not know
is refused as :data:`UNKNOWN_SET`, which is nobody's fault (asked again later).
"""

from __future__ import annotations

from consensus.epochs import EpochSets
from consensus.quorum import qc_valid
from consensus.types import COMMIT, Block, QuorumCert
from consensus.validators import ValidatorSet

# Reasons a committed block is refused (metric labels; the first three are the sender's fault).
NOT_NEXT = "not_next_height"
NOT_CHAINED = "parent_mismatch"
QC_MISMATCH = "qc_block_mismatch"
PAYLOAD_MISMATCH = "payload_mismatch"
INVALID_QC = "invalid_qc"
STATE_DIVERGED = "state_diverged"
UNKNOWN_SET = "unknown_validator_set"

# Refusals that prove the sender sent something no honest node sends. A block that is merely
# not the next height may be an answer to an older request (we caught up meanwhile).
SENDER_FAULTS = frozenset({NOT_CHAINED, QC_MISMATCH, PAYLOAD_MISMATCH, INVALID_QC})


def verifying_set(height: int, sets: ValidatorSet | EpochSets) -> ValidatorSet | None:
    """The validator set whose signatures certify blocks at ``height`` (None: not known).
    A single :class:`ValidatorSet` is one set for the whole chain."""
    if isinstance(sets, ValidatorSet):
        return sets
    return sets.for_height(height)


def is_next_block(block: Block, tip_height: int, tip_hash: bytes) -> str:
    """Rule 1: the block extends our tip by one height."""
    if block.height != tip_height + 1:
        return NOT_NEXT
    if block.header.parent_hash != tip_hash:
        return NOT_CHAINED
    return ""


def qc_certifies_block(qc: QuorumCert, block: Block, block_hash: bytes) -> str:
    """Rule 2: a COMMIT QC for exactly this block."""
    if qc.phase != COMMIT or qc.block_hash != block_hash or qc.height != block.height:
        return QC_MISMATCH
    return ""


def committed_block_refusal(
    block: Block,
    qc: QuorumCert,
    *,
    tip_height: int,
    tip_hash: bytes,
    tip_state_root: bytes,
    chain_id: str,
    genesis_set: ValidatorSet | EpochSets,
    genesis_hash: bytes,
) -> str:
    """The empty string if ``(block, qc)`` may be stored as the next height, else the reason.
    The rules are the ones above; the cheap structural ones run before the signatures.
    ``genesis_set``: the chain's one set, or the epoch sets the node knows."""
    reason = is_next_block(block, tip_height, tip_hash)
    if reason:
        return reason
    block_hash = block.block_hash()
    reason = qc_certifies_block(qc, block, block_hash)
    if reason:
        return reason
    if not block.payload_matches_header():
        return PAYLOAD_MISMATCH
    validators = verifying_set(block.height, genesis_set)
    if validators is None:
        return UNKNOWN_SET
    if not qc_valid(qc, chain_id, validators, genesis_hash):
        return INVALID_QC
    if block.header.state_root != tip_state_root:
        return STATE_DIVERGED
    return ""
