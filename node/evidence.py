"""Equivocation evidence the node has proven: verified first, counted and gossiped once.

Evidence reaches the node two ways: the replica reports two conflicting messages it verified
itself (``ReportEvidence``), and peers gossip evidence on the evidence channel. Anyone with a
validator's connection can send bytes that *claim* another validator equivocated, so nothing
is counted, logged or passed on before :func:`consensus.verify.evidence_valid` has checked
both signatures against the named validator, the same view (and phase for votes) and
different contents. Evidence that fails is the sender's fault (a forgery: an honest node only
gossips evidence it verified) and is penalised like a bad signature.

One misbehaviour is one fact, whoever reports it: the book keeps the (validator, view) pairs
already proven, so the replica's own report and the copies gossiped by every peer count once,
log once and are gossiped once (which also ends the gossip: a node re-gossips only what was
new to it). The book is bounded; past ``pairs_max`` the oldest pairs are forgotten, which at
worst counts a very old equivocation a second time.
"""

from __future__ import annotations

import enum
from collections import OrderedDict

from consensus.epochs import EpochSchedule, EpochSets
from consensus.types import Evidence, ProposalEquivocation, VoteEquivocation
from consensus.validators import ValidatorSet
from consensus.verify import evidence_valid

EVIDENCE_PAIRS_MAX = 4_096


class EvidenceVerdict(enum.Enum):
    NEW = "new"  # proven and not seen before: count, log, gossip
    DUPLICATE = "duplicate"  # this validator's equivocation in this view is already known
    FORGED = "forged"  # does not prove anything: the sender's fault
    UNKNOWN_EPOCH = "unknown_epoch"  # about an epoch whose set we do not know: not checkable


def offender_and_view(evidence: Evidence) -> tuple[bytes, int]:
    """Who equivocated, and in which view (what evidence is deduplicated by)."""
    if isinstance(evidence, VoteEquivocation):
        return evidence.vote_a.voter, evidence.vote_a.view
    if isinstance(evidence, ProposalEquivocation):
        return evidence.proposer, evidence.view
    raise TypeError(f"not evidence: {type(evidence).__name__}")


def evidence_epoch(evidence: Evidence, schedule: EpochSchedule, current_epoch: int) -> int:
    """The epoch whose set must have held the offender: a vote names its height; a proposal
    signature does not, so it is taken to be of the epoch we are in (evidence is reported
    and gossiped the moment it is seen)."""
    if isinstance(evidence, VoteEquivocation):
        return schedule.epoch_of(evidence.vote_a.height)
    return current_epoch


class EvidenceBook:
    """The (validator, view) pairs whose equivocation this node has proven."""

    __slots__ = ("_proven", "chain_id", "pairs_max", "sets")

    def __init__(
        self,
        chain_id: str,
        validators: ValidatorSet | EpochSets,
        pairs_max: int = EVIDENCE_PAIRS_MAX,
    ) -> None:
        if pairs_max < 1:
            raise ValueError("pairs_max must be at least 1")
        self.chain_id = chain_id
        self.sets = validators if isinstance(validators, EpochSets) else EpochSets.fixed(validators)
        self.pairs_max = pairs_max
        self._proven: OrderedDict[tuple[bytes, int], None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._proven)

    def consider(self, evidence: Evidence, current_epoch: int = 0) -> EvidenceVerdict:
        """Check ``evidence`` against the set of its epoch and record it if it proves a new
        equivocation (``current_epoch``: the epoch this node is in).

        A pair already proven is a duplicate without checking signatures again (re-gossiped
        copies cost a dictionary look-up, not two signature checks).
        """
        pair = offender_and_view(evidence)
        if pair in self._proven:
            return EvidenceVerdict.DUPLICATE
        epoch = evidence_epoch(evidence, self.sets.schedule, current_epoch)
        validators = self.sets.for_epoch(epoch)
        if validators is None:
            return EvidenceVerdict.UNKNOWN_EPOCH
        if not evidence_valid(evidence, self.chain_id, validators):
            return EvidenceVerdict.FORGED
        self._proven[pair] = None
        while len(self._proven) > self.pairs_max:
            self._proven.popitem(last=False)
        return EvidenceVerdict.NEW
