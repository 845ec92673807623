"""Safety rules: when a replica may vote, and how its lock moves. Each rule is one function.

Basic HotStuff (Yin et al., PODC 2019, Algorithm 2) with one block per view. The rules are pure
functions of the replica's persisted :class:`~consensus.types.SafetyData` and the message at
hand; the replica persists the updated safety data before the vote leaves (see
``consensus/replica.py``).

Why these rules are enough: a commit QC for block B in view v means more than 2/3 of the power
locked on B's pre-commit QC. Any later prepare QC needs one of those (honest) replicas, which
votes only for blocks extending B (``extends_lock``) or for proposals justified by a prepare QC
newer than its lock, and by induction on views every such QC is itself for a block extending B.
``not_voted_yet`` makes a QC unique per view and phase among honest replicas.

Across a validator-set change (epochs, ``consensus/epochs.py``) the argument above needs one
more rule, :func:`hand_over_safe`: quorum intersection only holds between two QCs of the same
set, and QCs of different heights may come from different sets. The liveness clause of
``safe_node`` (a newer QC releases the lock) must therefore never let a QC for a *lower*
height than the lock release it: such a QC may be formed by the previous epoch's set, whose
quorum need not contain a single replica of the quorum that locked. See the hand-over section
of ``consensus/replica.py`` for the attack this stops and the full argument.
"""

from __future__ import annotations

from collections.abc import Callable

from consensus.types import QuorumCert


def not_voted_yet(last_voted_view: int, view: int) -> bool:
    """A replica votes at most once per view and phase: only for a view above the last one in
    which it voted in that phase."""
    return view > last_voted_view


def safe_node(extends_locked_block: bool, justify_view: int, locked_view: int) -> bool:
    """HotStuff ``safeNode``: vote for a proposal if its block extends the locked block (the
    safety rule), or if the QC justifying it is from a later view than the lock (the liveness
    rule: a newer prepare QC proves the lock may be released). The replica applies it together
    with :func:`hand_over_safe`."""
    return extends_locked_block or justify_view > locked_view


def hand_over_safe(extends_locked_block: bool, justify_height: int, locked_height: int) -> bool:
    """A justify QC releases a lock only if it certifies a block at the lock's height or above.
    Every height's QCs come from that height's epoch set, so a QC at the lock's height or above
    comes from the lock's set or a later one; a QC below it may come from an earlier set that
    shares no honest member with the quorum that locked. It costs no liveness: an honest
    leader's high QC is at least as high as any honest lock (its NEW-VIEW quorum meets the
    pre-commit voters behind the lock), and its proposal is justified by that QC."""
    return extends_locked_block or justify_height >= locked_height


def block_extends(
    block_hash: bytes,
    block_height: int,
    ancestor_hash: bytes,
    ancestor_height: int,
    committed_hash_at: Callable[[int], bytes | None],
) -> bool:
    """A block extends an ancestor if it is the ancestor, or if the ancestor is lower and on the
    committed chain the block builds on. (Every block a replica votes for has a committed
    parent, so its strict ancestors are exactly the committed blocks below it.)"""
    if block_hash == ancestor_hash:
        return True
    return ancestor_height < block_height and committed_hash_at(ancestor_height) == ancestor_hash


def proposal_well_formed(
    block_hash: bytes, block_view: int, proposal_view: int, justify: QuorumCert
) -> bool:
    """A proposal in view v carries either a new block of view v, or exactly the block of its
    justify QC re-proposed unchanged (it was prepared earlier but not committed); the justify QC
    comes from an earlier view."""
    if justify.view >= proposal_view:
        return False
    return block_view == proposal_view or block_hash == justify.block_hash


def updated_lock(locked_qc: QuorumCert, precommit_qc: QuorumCert) -> QuorumCert:
    """On COMMIT, lock on the pre-commit QC if it is from a later view than the current lock;
    a lock never moves back."""
    return precommit_qc if precommit_qc.view > locked_qc.view else locked_qc


def updated_high_qc(high_qc: QuorumCert, prepare_qc: QuorumCert) -> QuorumCert:
    """The highest prepare QC known (sent in NEW-VIEW) only moves to a later view."""
    return prepare_qc if prepare_qc.view > high_qc.view else high_qc
