"""Governance actions: wire types users sign inside a transaction (tags 40..47).

A proposal's content travels as the canonical bytes of a :data:`content.CONTENT` member, not
as a nested struct: the transaction codec must not import the genesis types a proposal names
(genesis imports the transaction codec), and a content that does not decode is the
proposer's mistake (``invalid_proposal``), answered like every other bad input.
"""

from __future__ import annotations

from typing import ClassVar

from state_machine.codec import U64, Bytes, Enum, Text, Wire, wire

MAX_CONTENT_BYTES = 8 * 1024
MAX_TITLE_CHARS = 120
TITLE_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;-_/()%+#'"

VOTE_YES = 1
VOTE_NO = 2
VOTE_ABSTAIN = 3
VOTE_OPTIONS = {VOTE_YES: "yes", VOTE_NO: "no", VOTE_ABSTAIN: "abstain"}
VOTE_CODES = {v: k for k, v in VOTE_OPTIONS.items()}


@wire
class SubmitProposal(Wire):
    """Propose ``content`` (canonical bytes of one governance change) under ``title``."""

    TAG: ClassVar[int] = 40
    WIRE = (
        ("title", Text(MAX_TITLE_CHARS, TITLE_CHARS)),
        ("content", Bytes(max_len=MAX_CONTENT_BYTES)),
    )
    title: str
    content: bytes


@wire
class CastVote(Wire):
    """Vote yes (1), no (2) or abstain (3) on a proposal in its voting period; once."""

    TAG: ClassVar[int] = 41
    WIRE = (("proposal_id", U64), ("option", Enum(frozenset(VOTE_OPTIONS), "vote option")))
    proposal_id: int
    option: int


GovernanceAction = SubmitProposal | CastVote
GOVERNANCE_ACTIONS = (SubmitProposal, CastVote)
