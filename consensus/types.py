"""Consensus wire types: blocks, votes, quorum certificates, messages, safety data, evidence.

Every type here is a ``@wire`` dataclass (see ``state_machine/codec.py``): canonical msgpack
arrays, strict decoding. Consensus messages travel as members of the :data:`MESSAGE` union, so a
node decodes any of them with :func:`decode_message`.

Signatures
----------
Each signed kind has its own domain tag, and the signed bytes are
``TAG + chain_id + b"\\0" + msgpack(fields)``, the same shape as transactions
(``perpbft/tx/v1``). A vote can therefore not be replayed as a proposal, a new-view or a
transaction, nor on another chain.

* vote: ``perpbft/vote/v1`` over ``[phase, view, height, block_hash]``
* proposal: ``perpbft/proposal/v1`` over ``[view, block_hash]``
* new-view: ``perpbft/newview/v1`` over ``[view, sha256(high_qc)]``

A quorum certificate is a list of individual vote signatures (no aggregation scheme), so any
signature inside a QC is also a vote and can be used as evidence. A timeout certificate is, in
the same way, a list of individual NEW-VIEW signatures, each with the view and QC digest it
signed (so it is checked without the QCs themselves).

Blocks
------
A block commits to its payload (an opaque tuple of transaction byte strings) by the RFC 6962
Merkle root of the transactions (:func:`payload_root`), so a client can later prove inclusion,
and to the state after its parent (``state_root``), so a commit QC on block h+1 certifies the
state after block h. The block hash is SHA-256 of a domain tag and the encoded header.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from state_machine.codec import (
    MAX_MESSAGE_BYTES,
    U16,
    U64,
    Bytes,
    Enum,
    ListOf,
    Optional,
    Struct,
    Text,
    Union,
    Wire,
    decode_union,
    encode,
    wire,
)
from state_machine.crypto import HASH_BYTES, sha256
from state_machine.txroot import tx_root

# Phases of one view. The numbers are part of the signed bytes of a vote.
PREPARE = 1
PRECOMMIT = 2
COMMIT = 3
PHASES = frozenset({PREPARE, PRECOMMIT, COMMIT})
PHASE_NAMES = {PREPARE: "prepare", PRECOMMIT: "precommit", COMMIT: "commit"}

VOTE_DOMAIN_TAG = b"perpbft/vote/v1\x00"
PROPOSAL_DOMAIN_TAG = b"perpbft/proposal/v1\x00"
NEWVIEW_DOMAIN_TAG = b"perpbft/newview/v1\x00"
BLOCK_DOMAIN_TAG = b"perpbft/block/v1\x00"

# Wire limits (hard ceilings; a replica's configuration sets tighter working limits).
MAX_VALIDATORS = 256
MAX_TX_BYTES_WIRE = 16 * 1024
MAX_BLOCK_TXS_WIRE = 100_000
MAX_SYNC_BLOCKS = 64
CHAIN_ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-"
MAX_CHAIN_ID_LEN = 32

HASH = Bytes(exact=HASH_BYTES)
PUBKEY = Bytes(exact=32)
SIGNATURE = Bytes(exact=64)
PHASE = Enum(PHASES, "phase")
ZERO_HASH = b"\x00" * HASH_BYTES
ZERO_KEY = b"\x00" * 32


# --------------------------------------------------------------------------------------------
# Payload Merkle root (RFC 6962: leaf = H(0x00 || tx), node = H(0x01 || left || right)).
# --------------------------------------------------------------------------------------------


def payload_root(txs: Sequence[bytes]) -> bytes:
    """RFC 6962 Merkle tree hash of the transactions' bytes; SHA-256("") for an empty payload."""
    return tx_root(txs)


# --------------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------------


@wire
class BlockHeader(Wire):
    """A block header.

    ``view`` is the view the block was first proposed in (a later leader may re-propose the same
    block unchanged). ``state_root`` is the state root after executing the parent block.
    """

    WIRE = (
        ("height", U64),
        ("view", U64),
        ("parent_hash", HASH),
        ("timestamp_ms", U64),
        ("proposer", PUBKEY),
        ("payload_root", HASH),
        ("state_root", HASH),
    )
    height: int
    view: int
    parent_hash: bytes
    timestamp_ms: int
    proposer: bytes
    payload_root: bytes
    state_root: bytes

    def block_hash(self) -> bytes:
        return sha256(BLOCK_DOMAIN_TAG + self.to_wire())


@wire
class Block(Wire):
    """A header and its payload: transactions as opaque byte strings, in proposer order."""

    WIRE = (
        ("header", Struct(BlockHeader)),
        ("payload", ListOf(Bytes(max_len=MAX_TX_BYTES_WIRE), MAX_BLOCK_TXS_WIRE)),
    )
    header: BlockHeader
    payload: tuple[bytes, ...]

    @property
    def height(self) -> int:
        return self.header.height

    def block_hash(self) -> bytes:
        return self.header.block_hash()

    def payload_bytes(self) -> int:
        return sum(len(tx) for tx in self.payload)

    def payload_matches_header(self) -> bool:
        return payload_root(self.payload) == self.header.payload_root


def genesis_block(genesis_time_ms: int) -> Block:
    """Height 0: the same for every validator of a chain, committed by definition."""
    header = BlockHeader(0, 0, ZERO_HASH, genesis_time_ms, ZERO_KEY, payload_root(()), ZERO_HASH)
    return Block(header, ())


# --------------------------------------------------------------------------------------------
# Votes and quorum certificates
# --------------------------------------------------------------------------------------------


def vote_signing_bytes(
    chain_id: str, phase: int, view: int, height: int, block_hash: bytes
) -> bytes:
    return (
        VOTE_DOMAIN_TAG
        + chain_id.encode("ascii")
        + b"\x00"
        + encode([phase, view, height, block_hash])
    )


def proposal_signing_bytes(chain_id: str, view: int, block_hash: bytes) -> bytes:
    return PROPOSAL_DOMAIN_TAG + chain_id.encode("ascii") + b"\x00" + encode([view, block_hash])


def newview_digest(high_qc: QuorumCert) -> bytes:
    """What a NEW-VIEW signature covers of its high QC."""
    return sha256(high_qc.to_wire())


def newview_signing_bytes(chain_id: str, view: int, high_qc: QuorumCert) -> bytes:
    return newview_digest_signing_bytes(chain_id, view, newview_digest(high_qc))


def newview_digest_signing_bytes(chain_id: str, view: int, high_qc_digest: bytes) -> bytes:
    return NEWVIEW_DOMAIN_TAG + chain_id.encode("ascii") + b"\x00" + encode([view, high_qc_digest])


@wire
class Vote(Wire):
    """One validator's signed vote for ``block_hash`` in ``(view, phase)``; also a message."""

    TAG: ClassVar[int] = 2
    WIRE = (
        ("phase", PHASE),
        ("view", U64),
        ("height", U64),
        ("block_hash", HASH),
        ("voter", PUBKEY),
        ("signature", SIGNATURE),
    )
    phase: int
    view: int
    height: int
    block_hash: bytes
    voter: bytes
    signature: bytes


@wire
class QCSignature(Wire):
    WIRE = (("signer", PUBKEY), ("signature", SIGNATURE))
    signer: bytes
    signature: bytes


@wire
class QuorumCert(Wire):
    """Votes of more than 2/3 of the voting power for one ``(phase, view, height, block)``.

    The genesis QC (view 0, the genesis block, no signatures) is valid by definition.
    """

    WIRE = (
        ("phase", PHASE),
        ("view", U64),
        ("height", U64),
        ("block_hash", HASH),
        ("signatures", ListOf(Struct(QCSignature), MAX_VALIDATORS)),
    )
    phase: int
    view: int
    height: int
    block_hash: bytes
    signatures: tuple[QCSignature, ...]

    def votes(self) -> tuple[Vote, ...]:
        """The individual signed votes inside this certificate."""
        return tuple(
            Vote(self.phase, self.view, self.height, self.block_hash, s.signer, s.signature)
            for s in self.signatures
        )


def genesis_qc(genesis_hash: bytes) -> QuorumCert:
    return QuorumCert(PREPARE, 0, 0, genesis_hash, ())


@wire
class TimeoutSignature(Wire):
    """One validator's NEW-VIEW signature: it entered (or gave up every view before) ``view``;
    ``high_qc_digest`` is the digest of the high QC that NEW-VIEW carried."""

    WIRE = (
        ("signer", PUBKEY),
        ("view", U64),
        ("high_qc_digest", HASH),
        ("signature", SIGNATURE),
    )
    signer: bytes
    view: int
    high_qc_digest: bytes
    signature: bytes


@wire
class TimeoutCert(Wire):
    """NEW-VIEW signatures for ``view`` or later by validators holding more than 2/3 of the
    power: proof that a quorum left every view below ``view``.

    Canonical form (enforced by ``consensus.quorum.tc_valid``): signers distinct, in genesis
    order, each a validator with a valid signature for a view >= ``view`` >= 1.
    """

    WIRE = (
        ("view", U64),
        ("signatures", ListOf(Struct(TimeoutSignature), MAX_VALIDATORS)),
    )
    view: int
    signatures: tuple[TimeoutSignature, ...]


# --------------------------------------------------------------------------------------------
# Messages between replicas
# --------------------------------------------------------------------------------------------


@wire
class Proposal(Wire):
    """PREPARE: the leader of ``view`` proposes ``block``, justified by the highest prepare QC.

    ``block`` is either a new block extending ``justify``'s block (``block.header.view ==
    view``) or ``justify``'s block itself, re-proposed unchanged because it was prepared in an
    earlier view but not committed.

    ``timeout_cert`` is the certificate for ``view`` when the view before it ended without a
    prepare QC (``justify.view + 1 < view``), so a replica still in an earlier view can join;
    None otherwise. It is not covered by the signature: it proves itself.
    """

    TAG: ClassVar[int] = 1
    WIRE = (
        ("view", U64),
        ("block", Struct(Block)),
        ("justify", Struct(QuorumCert)),
        ("proposer", PUBKEY),
        ("signature", SIGNATURE),
        ("timeout_cert", Optional(Struct(TimeoutCert))),
    )
    view: int
    block: Block
    justify: QuorumCert
    proposer: bytes
    signature: bytes
    timeout_cert: TimeoutCert | None = None


@wire
class PreCommit(Wire):
    """PRE-COMMIT: the leader's prepare QC; replicas answer with a pre-commit vote."""

    TAG: ClassVar[int] = 3
    WIRE = (("qc", Struct(QuorumCert)),)
    qc: QuorumCert


@wire
class Commit(Wire):
    """COMMIT: the leader's pre-commit QC; replicas lock on it and answer with a commit vote."""

    TAG: ClassVar[int] = 4
    WIRE = (("qc", Struct(QuorumCert)),)
    qc: QuorumCert


@wire
class Decide(Wire):
    """DECIDE: the leader's commit QC; replicas commit and execute the block."""

    TAG: ClassVar[int] = 5
    WIRE = (("qc", Struct(QuorumCert)),)
    qc: QuorumCert


@wire
class NewView(Wire):
    """A replica entered ``view``; carries its highest prepare QC for the leader of ``view``.

    ``high_block`` is the QC's block when the sender has it and it is not committed yet, so the
    leader can re-propose it without another round trip. It is not signed: it is checked
    against ``high_qc.block_hash``.
    """

    TAG: ClassVar[int] = 6
    WIRE = (
        ("view", U64),
        ("high_qc", Struct(QuorumCert)),
        ("high_block", Optional(Struct(Block))),
        ("sender", PUBKEY),
        ("signature", SIGNATURE),
    )
    view: int
    high_qc: QuorumCert
    high_block: Block | None
    sender: bytes
    signature: bytes


@wire
class SyncRequest(Wire):
    """Ask a peer for committed blocks from ``from_height`` on, with their commit QCs."""

    TAG: ClassVar[int] = 7
    WIRE = (("from_height", U64), ("max_blocks", U16))
    from_height: int
    max_blocks: int


@wire
class CommittedBlock(Wire):
    WIRE = (("block", Struct(Block)), ("commit_qc", Struct(QuorumCert)))
    block: Block
    commit_qc: QuorumCert


@wire
class SyncResponse(Wire):
    """Committed blocks in height order, each with the commit QC that certifies it."""

    TAG: ClassVar[int] = 8
    WIRE = (("blocks", ListOf(Struct(CommittedBlock), MAX_SYNC_BLOCKS)),)
    blocks: tuple[CommittedBlock, ...]


Message = Proposal | Vote | PreCommit | Commit | Decide | NewView | SyncRequest | SyncResponse

MESSAGE = Union(
    (Proposal, Vote, PreCommit, Commit, Decide, NewView, SyncRequest, SyncResponse),
    "consensus message",
)


def encode_message(message: Message) -> bytes:
    return encode(MESSAGE.dump(message))


def decode_message(data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> Message:
    """Strictly decode one consensus message (raises ``DecodeError``)."""
    message = decode_union(MESSAGE, data, max_bytes)
    return message  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# Safety data: what a replica must have on disk before it speaks.
# --------------------------------------------------------------------------------------------


@wire
class SafetyData(Wire):
    """The replica's promises. Persisted durably before any vote, proposal or new-view leaves.

    * ``view``: the view the replica is in (never goes back after a restart);
    * ``voted_prepare_view`` / ``voted_precommit_view`` / ``voted_commit_view``: the last view
      in which it voted in each phase (it never votes again in that view and phase);
    * ``proposed_view``: the last view in which it proposed (a leader proposes once per view);
    * ``locked_qc``: the pre-commit QC it is locked on;
    * ``prepare_qc``: the highest prepare QC it knows (its ``high_qc`` for new-view messages);
    * ``prepare_block``: that QC's block if the replica had it and it was not committed: a
      prepared block must survive crashes, since the next leader has to re-propose it and
      nobody else may hold it any more.
    """

    WIRE = (
        ("chain_id", Text(MAX_CHAIN_ID_LEN, CHAIN_ID_CHARS)),
        ("view", U64),
        ("voted_prepare_view", U64),
        ("voted_precommit_view", U64),
        ("voted_commit_view", U64),
        ("proposed_view", U64),
        ("locked_qc", Struct(QuorumCert)),
        ("prepare_qc", Struct(QuorumCert)),
        ("prepare_block", Optional(Struct(Block))),
    )
    chain_id: str
    view: int
    voted_prepare_view: int
    voted_precommit_view: int
    voted_commit_view: int
    proposed_view: int
    locked_qc: QuorumCert
    prepare_qc: QuorumCert
    prepare_block: Block | None = None

    def voted_view(self, phase: int) -> int:
        if phase == PREPARE:
            return self.voted_prepare_view
        if phase == PRECOMMIT:
            return self.voted_precommit_view
        return self.voted_commit_view


# --------------------------------------------------------------------------------------------
# Evidence of equivocation
# --------------------------------------------------------------------------------------------


@wire
class VoteEquivocation(Wire):
    """Two votes by one validator in the same view and phase for different blocks."""

    TAG: ClassVar[int] = 1
    WIRE = (("vote_a", Struct(Vote)), ("vote_b", Struct(Vote)))
    vote_a: Vote
    vote_b: Vote


@wire
class ProposalEquivocation(Wire):
    """Two signed proposals by one leader in the same view for different blocks."""

    TAG: ClassVar[int] = 2
    WIRE = (
        ("proposer", PUBKEY),
        ("view", U64),
        ("block_hash_a", HASH),
        ("signature_a", SIGNATURE),
        ("block_hash_b", HASH),
        ("signature_b", SIGNATURE),
    )
    proposer: bytes
    view: int
    block_hash_a: bytes
    signature_a: bytes
    block_hash_b: bytes
    signature_b: bytes


Evidence = VoteEquivocation | ProposalEquivocation
EVIDENCE = Union((VoteEquivocation, ProposalEquivocation), "evidence")
