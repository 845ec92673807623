"""State sync: a new node fetches a recent snapshot from peers in chunks instead of replaying
every block, verifies it against a state root certified by a commit QC, then block-syncs.

Theory of operation
-------------------
Modelled on CometBFT's state sync (snapshots offered, chunks fetched, the application's hash
checked against a light-client-verified header), with our own proof of the root:

* **Taking snapshots.** Every ``[statesync] snapshot_interval`` heights a node exports its state
  at that height with ``node/snapshot.py`` into ``data/snapshots/<height>.snap`` (a worker
  thread, one LMDB read transaction, so the consensus loop is not held) and keeps the newest
  ``snapshot_keep_recent``. The file's entry frames are the chunks; their offsets and sha256
  are indexed once (:class:`LocalSnapshot`).
* **Offering.** A :class:`SnapshotOffer` names the height ``H``, the state root after ``H``,
  the entry count, every chunk's hash, and the *anchor*: the header of block ``H + 1`` and its
  commit QC. That header carries the root after ``H`` (a header carries its parent's result)
  and its ``parent_hash`` is the hash of block ``H``. A node offers a snapshot only once it
  has block ``H + 1``.
* **Trust.** The anchor QC is checked against the validator set that certifies ``H + 1``
  (``consensus/follow.py``): the genesis set for epochs 0 and 1 (and for ever without
  staking), else the set of ``H + 1``'s epoch as proven from genesis by hand-over
  certificates (``node/handover.py``). An offer beyond the sets trusted so far waits
  (``offer_set_unknown``) while the certificates are fetched from peers (``HandoverRequest``,
  ``HandoverCertificates``) and verified one epoch at a time; a certificate that does not
  verify is a lie and its sender is penalised. With ``trust_height``/``trust_hash`` set,
  only the snapshot at exactly that height whose block hash is ``trust_hash`` is taken (an
  operator's pin from a source they trust, like CometBFT's trust options). Nothing else in an
  offer is trusted: the chunk hashes only let a bad chunk be blamed on the peer that sent it.
* **Fetching.** Offers are grouped by their identity (a hash of height, root, count and chunk
  hashes); a snapshot's providers are the peers that offered that identity. Chunks are fetched
  in order, each from the next provider in turn; a chunk whose hash differs is refused, the
  peer penalised and skipped; a provider that answers "missing" or nothing within the timeout
  is dropped from that snapshot. Each verified chunk is written to
  ``data/statesync/<identity>/`` before the next is asked for, so an interrupted sync resumes
  with the chunks it has (re-hashed on resume).
* **Whole check.** With every chunk in, the entries must be in strictly increasing key order,
  as many as offered, and their Merkle root must equal the certified root. Only then is the
  store created (one LMDB transaction: ``Store.create_from``) with block ``H``'s hash as its
  tip; the node then follows from ``H + 1`` like any full node. A snapshot whose whole check
  fails was offered by liars: its providers are penalised, its chunks deleted, and another
  snapshot is tried.

Limits: offers kept per peer and in all, chunks per snapshot, chunk and frame sizes, one chunk
or certificate request in flight, certificates per reply (:data:`HANDOVERS_PER_REPLY_MAX`,
:data:`HANDOVER_REPLY_BYTES_MAX`), bounded waits; serving is metered by the same per-peer byte
budget as block sync (``[sync]``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, ClassVar

from consensus.epochs import EpochSets
from consensus.follow import verifying_set
from consensus.quorum import qc_valid
from consensus.types import COMMIT, HASH, BlockHeader, QuorumCert
from consensus.validators import ValidatorSet
from node.handover import CERTIFICATE_BYTES_MAX
from node.snapshot import (
    ENTRIES_MAX,
    FRAME_BYTES_MAX,
    SNAPSHOT_MAGIC,
    EntryChunk,
    SnapshotError,
    SnapshotHeader,
)
from node.storage import FORMAT_VERSION, Store, StoreError, StoreMeta, fsync_dir
from state_machine.codec import U32, U64, Bytes, DecodeError, ListOf, Struct, Union, Wire, wire
from state_machine.merkle_state import MerkleState

CHUNKS_MAX = 100_000
OFFERS_PER_REPLY_MAX = 4
OFFERS_KEPT_MAX = 256
CHUNK_WIRE_BYTES_MAX = 64 * 1024 * 1024
HANDOVERS_PER_REPLY_MAX = 64
HANDOVER_REPLY_BYTES_MAX = 1024 * 1024
MESSAGE_BYTES_MAX = CHUNK_WIRE_BYTES_MAX + 4096

# Reasons (metric labels) an offer or a chunk is refused.
OFFER_BAD_ANCHOR = "offer_bad_anchor"
OFFER_UNTRUSTED = "offer_not_trusted"
OFFER_SET_UNKNOWN = "offer_set_unknown"  # its epoch's set is not trusted yet: fetch hand-overs
HANDOVER_FORGED = "handover_forged"
HANDOVER_UNAVAILABLE = "handover_unavailable"
OFFER_MALFORMED = "offer_malformed"
CHUNK_MISMATCH = "chunk_mismatch"
CHUNK_MISSING = "chunk_missing"
CHUNK_TIMEOUT = "chunk_timeout"
SNAPSHOT_ROOT_MISMATCH = "snapshot_root_mismatch"


# --------------------------------------------------------------------------------------------
# Wire messages (p2p channel CHANNEL_STATESYNC).
# --------------------------------------------------------------------------------------------


@wire
class SnapshotsRequest(Wire):
    """Which snapshots do you have?"""

    TAG: ClassVar[int] = 1
    WIRE = ()


@wire
class SnapshotOffer(Wire):
    """One snapshot a peer can serve (module docstring: "Offering")."""

    TAG: ClassVar[int] = 2
    WIRE = (
        ("height", U64),
        ("state_root", HASH),
        ("entry_count", U64),
        ("chunk_hashes", ListOf(HASH, CHUNKS_MAX, min_len=1)),
        ("anchor_header", Struct(BlockHeader)),
        ("anchor_qc", Struct(QuorumCert)),
    )
    height: int
    state_root: bytes
    entry_count: int
    chunk_hashes: tuple[bytes, ...]
    anchor_header: BlockHeader
    anchor_qc: QuorumCert

    def identity(self) -> bytes:
        """What two offers must share to be the same snapshot (chunks can come from either)."""
        h = hashlib.sha256(b"perpbft/snapshot-id/v1\0")
        h.update(self.height.to_bytes(8, "big") + self.state_root)
        h.update(self.entry_count.to_bytes(8, "big"))
        for chunk_hash in self.chunk_hashes:
            h.update(chunk_hash)
        return h.digest()


@wire
class SnapshotOffers(Wire):
    TAG: ClassVar[int] = 3
    WIRE = (("offers", ListOf(Struct(SnapshotOffer), OFFERS_PER_REPLY_MAX)),)
    offers: tuple[SnapshotOffer, ...]


@wire
class ChunkRequest(Wire):
    TAG: ClassVar[int] = 4
    WIRE = (("height", U64), ("index", U32))
    height: int
    index: int


@wire
class ChunkResponse(Wire):
    """One chunk: the snapshot file's entry frame ``index`` (an ``EntryChunk``), or empty
    when the peer cannot serve it (pruned meanwhile, or too large for one frame)."""

    TAG: ClassVar[int] = 5
    WIRE = (("height", U64), ("index", U32), ("chunk", Bytes(max_len=CHUNK_WIRE_BYTES_MAX)))
    height: int
    index: int
    chunk: bytes


@wire
class HandoverRequest(Wire):
    """The hand-over certificates of ``count`` epochs from ``from_epoch`` on
    (``node/handover.py``): what a syncing node needs to trust a set after genesis's."""

    TAG: ClassVar[int] = 6
    WIRE = (("from_epoch", U64), ("count", U32))
    from_epoch: int
    count: int


@wire
class HandoverCertificates(Wire):
    """Certificates of consecutive epochs from the one asked for (fewer, or none, when the
    peer has fewer or the reply would exceed :data:`HANDOVER_REPLY_BYTES_MAX`); each is a
    ``HandoverCertificate``'s wire bytes, decoded and checked by the receiver."""

    TAG: ClassVar[int] = 7
    WIRE = (
        ("from_epoch", U64),
        ("certificates", ListOf(Bytes(max_len=CERTIFICATE_BYTES_MAX), HANDOVERS_PER_REPLY_MAX)),
    )
    from_epoch: int
    certificates: tuple[bytes, ...]


STATESYNC_MESSAGE = Union(
    (
        SnapshotsRequest,
        SnapshotOffers,
        ChunkRequest,
        ChunkResponse,
        HandoverRequest,
        HandoverCertificates,
    ),
    "state sync message",
)
StateSyncMessage = (
    SnapshotsRequest
    | SnapshotOffers
    | ChunkRequest
    | ChunkResponse
    | HandoverRequest
    | HandoverCertificates
)


def chunk_hash(chunk: bytes) -> bytes:
    return hashlib.sha256(chunk).digest()


# --------------------------------------------------------------------------------------------
# Verifying an offer (pure).
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Trust:
    """``[statesync] trust_height`` and ``trust_hash`` (0 and b"": trust the genesis set)."""

    height: int = 0
    block_hash: bytes = b""


def offer_refusal(
    offer: SnapshotOffer,
    *,
    chain_id: str,
    sets: ValidatorSet | EpochSets,
    genesis_hash: bytes,
    trust: Trust,
) -> str:
    """ "" if ``offer``'s root is certified (module docstring: "Trust"), else the reason.
    ``sets``: the sets trusted so far (genesis's, then those proven by hand-over
    certificates); an anchor beyond them is :data:`OFFER_SET_UNKNOWN`, nobody's fault yet."""
    header, qc = offer.anchor_header, offer.anchor_qc
    if offer.entry_count > ENTRIES_MAX or offer.height == 0:
        return OFFER_MALFORMED
    if header.height != offer.height + 1 or header.state_root != offer.state_root:
        return OFFER_BAD_ANCHOR
    if qc.phase != COMMIT or qc.height != header.height or qc.block_hash != header.block_hash():
        return OFFER_BAD_ANCHOR
    validators = verifying_set(header.height, sets)
    if validators is None:
        return OFFER_SET_UNKNOWN
    if not qc_valid(qc, chain_id, validators, genesis_hash):
        return OFFER_BAD_ANCHOR
    if trust.height and (offer.height != trust.height or header.parent_hash != trust.block_hash):
        return OFFER_UNTRUSTED
    return ""


# --------------------------------------------------------------------------------------------
# Serving: the snapshots this node took.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LocalSnapshot:
    """A snapshot file and where its chunks (entry frames) are."""

    path: Path
    height: int
    state_root: bytes
    entry_count: int
    offsets: tuple[tuple[int, int], ...]  # (offset of the frame's payload, its length)
    chunk_hashes: tuple[bytes, ...]


def index_snapshot(path: Path) -> LocalSnapshot:
    """Read a snapshot file's header and frame offsets, hashing each chunk (blocking)."""
    offsets: list[tuple[int, int]] = []
    hashes: list[bytes] = []
    with path.open("rb") as f:
        if f.read(len(SNAPSHOT_MAGIC)) != SNAPSHOT_MAGIC:
            raise SnapshotError(f"{path}: not a perpbft snapshot")
        header = SnapshotHeader.from_wire(_frame_at(f, f.tell())[1])
        end = path.stat().st_size - hashlib.sha256().digest_size
        position = f.tell()
        while position < end:
            payload_offset, payload = _frame_at(f, position)
            offsets.append((payload_offset, len(payload)))
            hashes.append(chunk_hash(payload))
            position = payload_offset + len(payload)
    if not hashes or len(hashes) > CHUNKS_MAX:
        raise SnapshotError(f"{path}: {len(hashes)} chunks (1..{CHUNKS_MAX} served)")
    return LocalSnapshot(
        path, header.height, header.state_root, header.entry_count, tuple(offsets), tuple(hashes)
    )


def _frame_at(f: BinaryIO, position: int) -> tuple[int, bytes]:
    f.seek(position)
    size = int.from_bytes(f.read(4), "big")
    if size > FRAME_BYTES_MAX:
        raise SnapshotError(f"frame of {size} bytes at offset {position}")
    payload: bytes = f.read(size)
    if len(payload) != size:
        raise SnapshotError(f"truncated frame at offset {position}")
    return position + 4, payload


def read_chunk(snapshot: LocalSnapshot, index: int) -> bytes | None:
    """Chunk ``index`` of a local snapshot (blocking); None if it is gone."""
    if not 0 <= index < len(snapshot.offsets):
        return None
    offset, size = snapshot.offsets[index]
    try:
        with snapshot.path.open("rb") as f:
            f.seek(offset)
            data = f.read(size)
    except OSError:
        return None
    return data if len(data) == size else None


def snapshot_file(directory: Path, height: int) -> Path:
    return directory / f"{height:016d}.snap"


def prune_snapshots(directory: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` snapshot files; returns the deleted paths."""
    files = sorted(directory.glob("*.snap"))
    gone = files[: max(0, len(files) - keep)]
    for path in gone:
        path.unlink(missing_ok=True)
    return gone


# --------------------------------------------------------------------------------------------
# Restoring: offers heard, chunks fetched, the store written.
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Candidate:
    """A verified snapshot and the peers that offered it."""

    offer: SnapshotOffer
    identity: bytes
    providers: list[bytes] = field(default_factory=list)


class RestorePlan:
    """Bookkeeping of one state sync: the verified offers, bad snapshots and bad peers."""

    def __init__(self) -> None:
        self.candidates: dict[bytes, Candidate] = {}
        self.rejected: set[bytes] = set()  # identities whose whole check failed

    def consider(self, peer: bytes, offer: SnapshotOffer) -> None:
        """Add a verified offer from ``peer``."""
        identity = offer.identity()
        if identity in self.rejected:
            return
        candidate = self.candidates.get(identity)
        if candidate is None:
            if len(self.candidates) >= OFFERS_KEPT_MAX:
                return
            candidate = self.candidates[identity] = Candidate(offer, identity)
        if peer not in candidate.providers:
            candidate.providers.append(peer)

    def best(self) -> Candidate | None:
        """The highest snapshot with a provider left (ties: more providers)."""
        usable = [c for c in self.candidates.values() if c.providers]
        if not usable:
            return None
        return max(usable, key=lambda c: (c.offer.height, len(c.providers), c.identity))

    def drop_provider(self, candidate: Candidate, peer: bytes) -> None:
        if peer in candidate.providers:
            candidate.providers.remove(peer)

    def reject(self, candidate: Candidate) -> None:
        self.rejected.add(candidate.identity)
        self.candidates.pop(candidate.identity, None)


class ChunkStore:
    """Verified chunks of one snapshot on disk, so an interrupted sync resumes."""

    def __init__(self, root: Path, candidate: Candidate) -> None:
        self.directory = root / candidate.identity.hex()
        self.hashes = candidate.offer.chunk_hashes

    def path(self, index: int) -> Path:
        return self.directory / f"{index:08d}.chunk"

    def have(self, index: int) -> bool:
        """True if chunk ``index`` is on disk and still matches its hash (else it is removed)."""
        path = self.path(index)
        try:
            data = path.read_bytes()
        except OSError:
            return False
        if chunk_hash(data) == self.hashes[index]:
            return True
        path.unlink(missing_ok=True)
        return False

    def put(self, index: int, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path(index).with_suffix(".tmp")
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path(index))

    def remove(self) -> None:
        for path in self.directory.glob("*"):
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.directory.rmdir()


def assemble_entries(chunks: ChunkStore, count: int) -> list[tuple[bytes, bytes]] | None:
    """The snapshot's entries from its verified chunks, or None if they are not in strictly
    increasing key order or not ``count`` of them (blocking)."""
    entries: list[tuple[bytes, bytes]] = []
    previous: bytes | None = None
    for index in range(len(chunks.hashes)):
        try:
            chunk = EntryChunk.from_wire(chunks.path(index).read_bytes())
        except (OSError, DecodeError):
            return None
        for entry in chunk.entries:
            if previous is not None and entry.key <= previous:
                return None
            previous = entry.key
            entries.append((entry.key, entry.value))
            if len(entries) > count:
                return None
    return entries if len(entries) == count else None


def create_store_from_snapshot(
    data_dir: Path,
    chunks: ChunkStore,
    offer: SnapshotOffer,
    chain_id: str,
    genesis_doc_hash: bytes,
    map_size_bytes: int,
) -> str:
    """The whole check, then the store (blocking). "" on success, else the reason."""
    entries = assemble_entries(chunks, offer.entry_count)
    if entries is None:
        return SNAPSHOT_ROOT_MISMATCH
    tree = MerkleState.from_entries(entries)
    if tree.root() != offer.state_root:
        return SNAPSHOT_ROOT_MISMATCH
    tip_hash = offer.anchor_header.parent_hash
    meta = StoreMeta(
        FORMAT_VERSION,
        chain_id,
        genesis_doc_hash,
        offer.height,
        tip_hash,
        offer.state_root,
        offer.height + 1,  # no block stored yet: the first comes from block sync
    )
    try:
        Store.create_from(data_dir, meta, tree, entries, (), map_size_bytes).close()
    except StoreError as exc:
        raise SnapshotError(str(exc)) from None
    fsync_dir(data_dir)
    return ""


def providers_in_turn(providers: Sequence[bytes], turn: int) -> bytes | None:
    return providers[turn % len(providers)] if providers else None
