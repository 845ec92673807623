"""Durable chain storage in LMDB: state, Merkle nodes, blocks, QCs, results, safety data.

Theory of operation
-------------------
One LMDB environment (``DATA_DIR/chain.lmdb/``) holds everything the node must not lose. LMDB
is a copy-on-write B+tree with a single writer: a write transaction either commits whole (both
meta pages flipped after an fsync of the new pages) or leaves no trace, so **one committed block
is one write transaction** (:meth:`Store.commit_block`): block bytes, commit QC, the block's
state write set, the Merkle node updates it causes, transaction results, events and the new
metadata (height, block hash, state root). A crash at any instant leaves the last whole block or
nothing of it; there is no recovery log to replay because there is never a half-written block.

Sub-databases (``max_dbs`` = 16):

``meta``      one :class:`StoreMeta` record: format, chain id, genesis hash, height, block hash,
              state root, lowest stored block height (``base_height``).
``state``     slot (2 bytes of sha256(key)) || key -> value: the exchange's canonical entries,
              exactly what the root covers. The slot prefix keeps the entries of one Merkle
              bucket adjacent, so a bucket is read from here rather than stored twice.
``nodes``     Merkle *inner* node id -> node value (``state_machine.merkle_state``). With the
              state entries that is the whole tree: a reader builds a proof at the latest
              height with a few reads and one short range scan, without the working copy.
``blocks``    height (u64 big-endian) -> block bytes;   ``block_hashes``: hash -> height.
``qcs``       height -> commit QC bytes;                ``events``: height -> events bytes.
``heights``   height -> :class:`HeightIndex` (block hash, tx ids in block order) for tx proofs
              and pruning.
``results``   tx id -> (height, index, result bytes).
``safety``    the consensus safety record, written by its own small synchronous transaction.
``undo``      height h -> what block h overwrote: the root before it, and the previous value (or
              absence) of every state entry and inner node it wrote. Kept for the last
              ``proof_history_heights`` heights; see "Proofs at past heights" below.
``versions``  archive only: the undo records re-keyed by entry or node, then height (below).

Blocks, QCs, events, results and safety data are opaque bytes here (consensus and the exchange
define them). Each is stored *sealed* with an 8-byte SHA-256 prefix, so a garbled value is a
clear :class:`StoreCorruptError` on read instead of bytes handed on silently.

Threads. A py-lmdb write transaction must begin, write and commit on one thread; every method
that writes does all three inside the call, so the node runs each in one
``trio.to_thread.run_sync``. Read methods open their own short read transactions.

Recovery (:meth:`Store.open`). LMDB trusts its pages: a damaged page can make it abort or fault
inside C code, where Python cannot catch anything. So before this process maps the file:

1. a preflight reads LMDB's two meta pages and refuses a file shorter than the last page they
   name (a truncated file would otherwise be a SIGBUS on first touch);
2. a child process walks every record of every sub-database; if LMDB reports an error or the
   child dies of a signal, the file is damaged and we say so instead of dying ourselves;
3. every state entry is read, the Merkle tree rebuilt from them and its root compared with the
   stored root; the stored nodes must equal the rebuilt ones, and the last block and QC must
   unseal.

Any failure is a :class:`StoreCorruptError` that names what is wrong: the node refuses to start
rather than run on state it cannot trust.

Pruning (:meth:`Store.prune_blocks`) deletes blocks, QCs, events, indexes and results below a
height; it never touches ``state``, ``nodes`` or ``meta``, which is all a proof at the latest
height needs.

Proofs at past heights. ``state`` and ``nodes`` hold the latest state only (overwritten in
place, so a commit writes each changed key once). To prove a key at an older height h, the
block's commit also records an *undo* record: the value each written state key and inner node
had before the block (``txn.replace``/``txn.pop`` return it from the same B-tree descent as the
write, so this costs one extra sequential value per block, not a read per key). The state at h
is then the latest state overlaid with the undo records of heights h+1 .. latest, earliest
first (the first change after h saw the value at h); :meth:`Store.prove_many` builds the proof
from that overlay with the same node walk as at the latest height, against the root recorded in
the undo record of h + 1. Undo records older than ``proof_history_heights`` are deleted in the
commit that makes them too old; an imported snapshot starts with none.

Archive mode (``Store.archive``, from ``[storage] archive = true``): no undo record is ever
deleted and :meth:`Store.prune_blocks` refuses, so every height since the store's first is
provable. Walking undo records back is linear in the changes since h, so an archive also
writes a *version index* (``versions``): per written state entry and inner node, keyed by it
and the height, the value it had before that block, plus each block's root before it. The value
at h is then that of the first version after h (one ``set_range`` seek), else the latest; a
bucket at h is the slot's latest entries overlaid with that lookup for every key the slot ever
had. A proof at any height costs a few seeks per node, whatever the distance. The index serves
heights after an unbroken run of archive commits (``first`` marker, deleted by a commit without
versions); older heights fall back to the bounded undo walk.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import lmdb
import msgpack

from state_machine.codec import U32, U64, Bytes, DecodeError, ListOf, Wire, wire
from state_machine.invariants import InvariantError
from state_machine.invariants import check as shared_check
from state_machine.merkle_state import (
    DEFAULT_SHAPE,
    HASH_BYTES,
    MAX_DEPTH,
    TAG_INNER,
    MerkleState,
    MissingNodeError,
    NodeUpdate,
    StateProof,
    bucket_records,
    key_hash,
    node_id,
    prefix_of,
    prove_from_nodes,
)
from state_machine.tx import CHAIN_ID
from state_machine.txroot import TxInclusionProof, inclusion_proof

FORMAT_VERSION = 1
STORE_DIRNAME = "chain.lmdb"
DEFAULT_MAP_SIZE_BYTES = 64 * 1024**3  # address space only; the file grows as data does
MAX_DBS = 16
MAX_BLOCK_HASH_BYTES = 64
MAX_TXS_PER_BLOCK = 1 << 16
MAX_OPAQUE_BYTES = 64 * 1024 * 1024  # one block, QC, events or result value
PRUNE_HEIGHTS_PER_CALL_MAX = 1000  # bounds one pruning transaction
DEFAULT_PROOF_HISTORY_HEIGHTS = 300  # past heights provable (2.5 minutes of 0.5 s blocks)
PROOF_HISTORY_HEIGHTS_MAX = 100_000  # a proof reads one undo record per height back
# Undo bytes one proof request may read: bounds the CPU a remote client can ask for (decoding
# is about 4 ms per MiB); deeper heights after heavy blocks need a snapshot export instead.
PROOF_UNDO_BYTES_MAX = 64 * 1024 * 1024
SEAL_BYTES = 8
SLOT_PREFIX_BYTES = (DEFAULT_SHAPE.min_depth + 1) // 2  # the slot's nibbles, packed

_DB_NAMES = (
    "meta",
    "state",
    "nodes",
    "blocks",
    "block_hashes",
    "qcs",
    "events",
    "heights",
    "results",
    "safety",
    "undo",
    "versions",
)
_W = TypeVar("_W", bound=Wire)
_META_KEY = b"meta"
_SAFETY_KEY = b"safety"
_LMDB_META_MAGIC = 0xBEEFC0DE


class StoreError(Exception):
    """A storage operation cannot be done (wrong use, missing store, full map...)."""


class StoreCorruptError(StoreError):
    """The data on disk is damaged or inconsistent; the node must not start on it."""


class StoreMissingError(StoreError):
    """There is no store in the data dir."""


class StoreInvariantError(StoreError, InvariantError):
    """The store's own invariant does not hold: a bug, not damaged data."""


def check(cond: bool, msg: str) -> None:
    """Our own invariant (a bug if it fails); survives ``python -O`` (the shared helper)."""
    shared_check(cond, msg, StoreInvariantError)


@wire
class StoreMeta(Wire):
    """The store's metadata record; rewritten by every commit."""

    WIRE = (
        ("format_version", U32),
        ("chain_id", CHAIN_ID),
        ("genesis_hash", Bytes(exact=HASH_BYTES)),
        ("height", U64),
        ("block_hash", Bytes(max_len=MAX_BLOCK_HASH_BYTES)),
        ("state_root", Bytes(exact=HASH_BYTES)),
        ("base_height", U64),
    )
    format_version: int
    chain_id: str
    genesis_hash: bytes
    height: int
    block_hash: bytes
    state_root: bytes
    base_height: int  # lowest height whose block is stored (height + 1 when none is)


@wire
class HeightIndex(Wire):
    """Per-height index: the block's hash and its transaction ids in block order."""

    MAX_BYTES: ClassVar[int] = 8 * 1024 * 1024
    WIRE = (
        ("block_hash", Bytes(max_len=MAX_BLOCK_HASH_BYTES)),
        ("tx_ids", ListOf(Bytes(exact=HASH_BYTES), MAX_TXS_PER_BLOCK)),
    )
    block_hash: bytes
    tx_ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class TxRecord:
    height: int
    index: int
    result: bytes


@dataclass(frozen=True, slots=True)
class CommitStats:
    """Where the time of the last :meth:`Store.commit_block` went (for metrics and benches)."""

    height: int
    writes: int
    node_updates: int
    tree_update_s: float  # Merkle tree update and new root, in memory (wall clock)
    tree_update_cpu_s: float  # the same in this thread's CPU time: unaffected by other load
    lmdb_write_s: float  # the write transaction, including its commit and fsync
    lmdb_write_cpu_s: float  # its CPU time in this thread (the rest is waiting on the disk)


class ProofHeightError(StoreError):
    """The state at the asked height cannot be proven here (future, or no longer kept)."""


@dataclass(frozen=True, slots=True)
class UndoRecord:
    """What one block overwrote: the root before it, and each written key's previous value."""

    root_before: bytes
    state: list[tuple[bytes, bytes | None]]  # stored state key (slot || key) -> value or None
    nodes: list[tuple[bytes, bytes | None]]  # inner node id -> node or None

    def to_bytes(self) -> bytes:
        return bytes(msgpack.packb([self.root_before, self.state, self.nodes], use_bin_type=True))

    @classmethod
    def from_bytes(cls, raw: bytes) -> UndoRecord:
        try:
            root, state, nodes = msgpack.unpackb(raw, raw=False, use_list=True)
            return cls(bytes(root), [(k, v) for k, v in state], [(k, v) for k, v in nodes])
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise StoreCorruptError(f"undo record: {exc}") from None


@dataclass(frozen=True, slots=True)
class ProofAt:
    """A state proof with the height and root it is against, read in one transaction."""

    height: int
    state_root: bytes
    key: bytes
    value: bytes | None
    proof: StateProof


def store_path(data_dir: Path) -> Path:
    return Path(data_dir) / STORE_DIRNAME


def state_db_key(key: bytes) -> bytes:
    """Where a state entry is stored: its slot (the first two bytes of sha256(key)), then key.

    Entries of one Merkle bucket are therefore adjacent, so the store derives a bucket's
    records from the state instead of storing bucket nodes too (which doubled the pages a
    block's commit writes), and a block's state writes and bucket changes hit the same pages.
    """
    return hashlib.sha256(key).digest()[:SLOT_PREFIX_BYTES] + key


def height_key(height: int) -> bytes:
    return height.to_bytes(8, "big")


def seal(payload: bytes) -> bytes:
    return hashlib.sha256(payload).digest()[:SEAL_BYTES] + payload


def unseal(value: bytes, what: str) -> bytes:
    payload = value[SEAL_BYTES:]
    if (
        len(value) < SEAL_BYTES
        or hashlib.sha256(payload).digest()[:SEAL_BYTES] != value[:SEAL_BYTES]
    ):
        raise StoreCorruptError(f"{what} failed its checksum: the data file is damaged")
    return payload


# --------------------------------------------------------------------------------------------
# Preflight: refuse files LMDB would crash on.
# --------------------------------------------------------------------------------------------

_PAGE_HEADER_BYTES = 16
_META_FORMAT = "<IIQQ48s48sQQ"  # magic, version, address, mapsize, 2 x MDB_db, last_pg, txnid


def preflight_data_file(path: Path) -> None:
    """Check LMDB's meta pages and the file length before mapping the file.

    LMDB keeps two meta pages (0 and 1) and uses the one with the higher transaction id. A
    file shorter than that meta's last page would make the first read of a missing page a
    SIGBUS, which no Python code can report; so we read the (64-bit, LMDB 0.9) meta layout
    ourselves and give a clear error instead.
    """
    data_file = path / "data.mdb"
    try:
        size = data_file.stat().st_size
        with data_file.open("rb") as f:
            head = f.read(2 * 65536)
    except OSError as exc:
        raise StoreCorruptError(f"cannot read {data_file}: {exc}") from None
    if size == 0:
        raise StoreCorruptError(f"{data_file} is empty")
    metas = []
    page_size = _page_size_from_meta0(head)
    if page_size is None:
        raise StoreCorruptError(f"{data_file} is not an LMDB file (bad meta page 0)")
    for page in (0, 1):
        meta = _parse_meta(head, page * page_size)
        if meta is not None:
            metas.append(meta)
    if not metas:
        raise StoreCorruptError(f"{data_file}: no valid LMDB meta page")
    last_page, _txnid = max(metas, key=lambda m: m[1])
    needed = (last_page + 1) * page_size
    if size < needed:
        raise StoreCorruptError(
            f"{data_file} is truncated: {size} bytes, its last committed page needs {needed}"
        )


def _parse_meta(head: bytes, offset: int) -> tuple[int, int] | None:
    start = offset + _PAGE_HEADER_BYTES
    if len(head) < start + struct.calcsize(_META_FORMAT):
        return None
    magic, version, _addr, _mapsize, _free, _main, last_pg, txnid = struct.unpack_from(
        _META_FORMAT, head, start
    )
    if magic != _LMDB_META_MAGIC or version != 1:
        return None
    return last_pg, txnid


def _page_size_from_meta0(head: bytes) -> int | None:
    """LMDB stores the page size in the free-list DB record's pad field of meta page 0."""
    start = _PAGE_HEADER_BYTES
    if len(head) < start + struct.calcsize(_META_FORMAT):
        return None
    magic = struct.unpack_from("<I", head, start)[0]
    if magic != _LMDB_META_MAGIC:
        return None
    page_size: int = struct.unpack_from("<I", head, start + 24)[0]
    if page_size < 512 or page_size > 65536 or page_size & (page_size - 1):
        return None
    return page_size


# The walk imports nothing but lmdb, so it starts fast; it touches every key and value. It takes
# a reader slot (lock=True) so a node committing meanwhile never reuses the pages it reads.
_WALK_SCRIPT = f"""
import sys, lmdb
env = lmdb.open(sys.argv[1], readonly=True, max_dbs={MAX_DBS}, subdir=True, lock=True)
with env.begin() as txn:
    names = [bytes(k) for k, _ in txn.cursor()]
    for name in names:
        db = env.open_db(name, txn=txn, create=False)
        for k, v in txn.cursor(db=db):
            len(k) + len(v)
print("ok")
"""
WALK_TIMEOUT_S = 600


def walk_pages_in_child(path: Path) -> None:
    """Read every record of the store in a child process; damage there is an error here."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _WALK_SCRIPT, str(path)],
            capture_output=True,
            text=True,
            timeout=WALK_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise StoreCorruptError(f"{path}: reading the store took over {WALK_TIMEOUT_S} s") from None
    if proc.returncode == 0 and proc.stdout.strip() == "ok":
        return
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    detail = lines[-1] if lines else "no output"
    if proc.returncode < 0:
        detail = f"LMDB crashed with signal {-proc.returncode} ({detail})"
    raise StoreCorruptError(f"{path} is damaged: {detail}")


# --------------------------------------------------------------------------------------------
# The store.
# --------------------------------------------------------------------------------------------


class Store:
    """The node's LMDB store; see the module docstring. Not safe for concurrent writers."""

    def __init__(self, env: Any, dbs: dict[str, Any], meta: StoreMeta, tree: MerkleState) -> None:
        self._env = env
        # Past heights whose state stays provable (undo records kept); 0 keeps none. The node
        # sets it from ``[storage] proof_history_heights``.
        self.proof_history_heights = DEFAULT_PROOF_HISTORY_HEIGHTS
        # Archive mode (``[storage] archive``): every undo record is kept, whatever
        # ``proof_history_heights`` says, and no block is pruned (block h + 1 certifies the
        # state at h, so a pruned block would leave its parent's state unprovable).
        self.archive = False
        self._dbs = dbs
        self._meta = meta
        self._tree = tree
        # Ids of stored inner nodes below the fixed top (slots that overflowed a bucket). Only
        # these can turn back into buckets, so only these need a delete when the tree says
        # "bucket here"; the thousands of ordinary bucket updates per block skip LMDB.
        self._deep_inner_ids = {
            nid for nid, _ in _inner_nodes(tree) if nid[0] >= tree.shape.min_depth
        }
        self._broken: str | None = None
        self.last_commit: CommitStats | None = None

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        data_dir: Path,
        chain_id: str,
        genesis_hash: bytes,
        genesis_entries: Sequence[tuple[bytes, bytes]] = (),
        *,
        map_size_bytes: int = DEFAULT_MAP_SIZE_BYTES,
    ) -> Store:
        """Create a new store holding the genesis state at height 0."""
        tree = MerkleState.from_entries(genesis_entries)
        meta = StoreMeta(FORMAT_VERSION, chain_id, genesis_hash, 0, b"", tree.root(), 1)
        return cls.create_from(data_dir, meta, tree, genesis_entries, (), map_size_bytes)

    @classmethod
    def create_from(
        cls,
        data_dir: Path,
        meta: StoreMeta,
        tree: MerkleState,
        entries: Sequence[tuple[bytes, bytes]],
        extra: Sequence[tuple[str, bytes, bytes]] = (),
        map_size_bytes: int = DEFAULT_MAP_SIZE_BYTES,
    ) -> Store:
        """Write a whole initial store (genesis or an imported snapshot) in one transaction."""
        check(meta.state_root == tree.root(), "initial meta root differs from the tree")
        path = store_path(data_dir)
        if (path / "data.mdb").exists():
            raise StoreError(f"a store already exists at {path}")
        # Built beside its final place and renamed into it, so a creation killed at any point
        # leaves either no store or a whole one (never an LMDB file without metadata, which
        # would be indistinguishable from a damaged one).
        tmp_path = path.with_name(path.name + ".creating")
        shutil.rmtree(tmp_path, ignore_errors=True)  # left by a creation that was killed
        try:
            tmp_path.mkdir(parents=True)
            env, dbs = _open_env(tmp_path, map_size_bytes)
            try:
                with env.begin(write=True) as txn:
                    _put_initial(txn, dbs, meta, tree, entries, extra)
            finally:
                env.close()
            os.rename(tmp_path, path)  # fails if another process created the store meanwhile
            fsync_dir(path.parent)
            env, dbs = _open_env(path, map_size_bytes, create=False)
        except (lmdb.Error, OSError) as exc:
            raise StoreError(f"cannot create the store at {path}: {exc}") from None
        return cls(env, dbs, meta, tree)

    @classmethod
    def open(
        cls,
        data_dir: Path,
        *,
        map_size_bytes: int = DEFAULT_MAP_SIZE_BYTES,
        walk_pages: bool = True,
    ) -> Store:
        """Open an existing store and verify it (see "Recovery" in the module docstring)."""
        path = store_path(data_dir)
        if not (path / "data.mdb").exists():
            raise StoreMissingError(
                f"no store at {path} (initialise the node or import a snapshot)"
            )
        preflight_data_file(path)
        if walk_pages:
            walk_pages_in_child(path)
        try:
            env, dbs = _open_env(path, map_size_bytes, create=False)
        except lmdb.Error as exc:
            raise StoreCorruptError(f"cannot open {path}: {exc}") from None
        try:
            meta, tree = _recover(env, dbs)
        except lmdb.Error as exc:
            env.close()
            raise StoreCorruptError(f"{path}: LMDB reports {type(exc).__name__}: {exc}") from None
        except StoreError:
            env.close()
            raise
        return cls(env, dbs, meta, tree)

    def close(self) -> None:
        self._env.close()

    def env_flags(self) -> dict[str, bool]:
        """The flags the LMDB environment was really opened with (``sync``, ``metasync``...)."""
        flags: dict[str, bool] = self._env.flags()
        return flags

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- metadata ----------------------------------------------------------------------------

    @property
    def meta(self) -> StoreMeta:
        return self._meta

    @property
    def height(self) -> int:
        return self._meta.height

    @property
    def state_root(self) -> bytes:
        return self._meta.state_root

    @property
    def tree(self) -> MerkleState:
        """The in-memory working copy of the state tree (for the node's own proofs)."""
        return self._tree

    # -- the block commit ----------------------------------------------------------------------

    def commit_block(
        self,
        *,
        height: int,
        block_hash: bytes,
        block: bytes,
        qc: bytes,
        writes: Sequence[tuple[bytes, bytes | None]],
        tx_results: Sequence[tuple[bytes, bytes]] = (),
        events: bytes = b"",
    ) -> bytes:
        """Persist one executed block in ONE write transaction; return the new state root.

        ``writes`` is the block's state write set ``(key, value or None = delete)``;
        ``tx_results`` is ``(tx id, result bytes)`` in block order.
        """
        if self._broken is not None:
            raise StoreError(f"store unusable after a failed commit ({self._broken}); reopen it")
        self._check_commit_args(height, block_hash, block, qc, tx_results, events)
        started_s = time.perf_counter()
        started_cpu_s = time.thread_time()
        node_updates = self._tree.apply(writes)
        tree_done_cpu_s = time.thread_time()
        tree_done_s = time.perf_counter()
        meta = dataclasses.replace(
            self._meta, height=height, block_hash=block_hash, state_root=self._tree.root()
        )
        try:
            with self._env.begin(write=True) as txn:
                self._put_block(txn, meta, block, qc, tx_results, events)
                undo = self._put_state(txn, writes, node_updates)
                self._put_undo(txn, height, undo)
                txn.put(_META_KEY, meta.to_wire(), db=self._dbs["meta"])
        except lmdb.Error as exc:
            # The working tree already holds this block; it no longer matches the disk.
            self._broken = f"{type(exc).__name__}: {exc}"
            raise StoreError(f"commit of block {height} failed: {self._broken}") from None
        self._meta = meta
        self.last_commit = CommitStats(
            height,
            len(writes),
            len(node_updates),
            tree_done_s - started_s,
            tree_done_cpu_s - started_cpu_s,
            time.perf_counter() - tree_done_s,
            time.thread_time() - tree_done_cpu_s,
        )
        return meta.state_root

    def _check_commit_args(
        self,
        height: int,
        block_hash: bytes,
        block: bytes,
        qc: bytes,
        tx_results: Sequence[tuple[bytes, bytes]],
        events: bytes,
    ) -> None:
        if height != self._meta.height + 1:
            raise StoreError(f"block {height} does not follow committed height {self.height}")
        if not 0 < len(block_hash) <= MAX_BLOCK_HASH_BYTES:
            raise StoreError(f"block hash of {len(block_hash)} bytes")
        if len(tx_results) > MAX_TXS_PER_BLOCK:
            raise StoreError(f"{len(tx_results)} results exceed {MAX_TXS_PER_BLOCK} per block")
        for name, blob in (("block", block), ("qc", qc), ("events", events)):
            if len(blob) > MAX_OPAQUE_BYTES:
                raise StoreError(f"{name} of {len(blob)} bytes exceeds {MAX_OPAQUE_BYTES}")
        with self._env.begin() as txn:
            if txn.get(block_hash, db=self._dbs["block_hashes"]) is not None:
                raise StoreError(f"block hash {block_hash.hex()} is already stored")

    def _put_block(
        self,
        txn: Any,
        meta: StoreMeta,
        block: bytes,
        qc: bytes,
        tx_results: Sequence[tuple[bytes, bytes]],
        events: bytes,
    ) -> None:
        hk = height_key(meta.height)
        dbs = self._dbs
        txn.put(hk, seal(block), db=dbs["blocks"])
        txn.put(meta.block_hash, hk, db=dbs["block_hashes"])
        txn.put(hk, seal(qc), db=dbs["qcs"])
        txn.put(hk, seal(events), db=dbs["events"])
        tx_ids = tuple(tx_id for tx_id, _ in tx_results)
        txn.put(hk, seal(HeightIndex(meta.block_hash, tx_ids).to_wire()), db=dbs["heights"])
        results_db = dbs["results"]
        for index, (tx_id, result) in enumerate(tx_results):
            record = hk + index.to_bytes(4, "big") + result
            txn.put(tx_id, seal(record), db=results_db)

    def _put_state(
        self,
        txn: Any,
        writes: Sequence[tuple[bytes, bytes | None]],
        node_updates: Sequence[NodeUpdate],
    ) -> UndoRecord | None:
        """Write the state and node updates; return what they overwrote (None: not kept)."""
        keep_undo = self.archive or self.proof_history_heights > 0
        state_undo: dict[bytes, bytes | None] = {}
        node_undo: list[tuple[bytes, bytes | None]] = []
        state_db = self._dbs["state"]
        # In stored-key order, so LMDB walks its B-tree pages in order (a stable sort keeps
        # "later write wins" for a key written twice).
        stored = sorted(((state_db_key(k), v) for k, v in writes), key=itemgetter(0))
        for db_key, value in stored:
            if value is None:
                old = txn.pop(db_key, db=state_db)
            else:
                old = txn.replace(db_key, value, db=state_db)
            if keep_undo and db_key not in state_undo:  # the value before the block
                state_undo[db_key] = old
        nodes_db = self._dbs["nodes"]
        min_depth = self._tree.shape.min_depth
        deep_inner = self._deep_inner_ids
        for nid, node in sorted(node_updates, key=itemgetter(0)):
            if node is not None and node[:1] == TAG_INNER:
                old = txn.replace(nid, node, db=nodes_db)
                if nid[0] >= min_depth:
                    deep_inner.add(nid)
            elif nid[0] < min_depth or nid in deep_inner:
                # Empty nodes and buckets are not stored (buckets come from the state
                # entries); this id held an inner node, so delete it.
                old = txn.pop(nid, db=nodes_db)
                deep_inner.discard(nid)
            else:
                continue
            if keep_undo:
                node_undo.append((nid, old))
        if not keep_undo:
            return None
        return UndoRecord(self._meta.state_root, list(state_undo.items()), node_undo)

    def _put_undo(self, txn: Any, height: int, undo: UndoRecord | None) -> None:
        """Store block ``height``'s undo record; drop records past the kept history."""
        undo_db = self._dbs["undo"]
        if undo is not None:
            txn.put(height_key(height), seal(undo.to_bytes()), db=undo_db)
        if self.archive:
            if undo is not None:
                _put_versions(txn, self._dbs["versions"], height, undo)
            return  # every height stays provable
        if txn.get(_VERSIONS_FIRST_KEY, db=self._dbs["versions"]) is not None:
            # A height without versions: the index covers nothing before a later restart.
            txn.delete(_VERSIONS_FIRST_KEY, db=self._dbs["versions"])
        keep_from = height_key(max(0, height - self.proof_history_heights + 1))
        cursor = txn.cursor(db=undo_db)
        # Normally one record falls out per block; more after the setting was lowered.
        while cursor.first() and cursor.key() < keep_from:
            cursor.delete()

    # -- consensus safety data -------------------------------------------------------------------

    def write_safety_data(self, data: bytes) -> None:
        """Durably store the consensus safety record (fsync'd before this returns)."""
        if len(data) > MAX_OPAQUE_BYTES:
            raise StoreError(f"safety data of {len(data)} bytes exceeds {MAX_OPAQUE_BYTES}")
        with self._env.begin(write=True) as txn:
            txn.put(_SAFETY_KEY, seal(data), db=self._dbs["safety"])

    def read_safety_data(self) -> bytes | None:
        with self._env.begin() as txn:
            value = txn.get(_SAFETY_KEY, db=self._dbs["safety"])
        return None if value is None else unseal(bytes(value), "safety data")

    # -- reads -----------------------------------------------------------------------------------

    def get_state(self, key: bytes) -> bytes | None:
        with self._env.begin() as txn:
            value = txn.get(state_db_key(key), db=self._dbs["state"])
        return None if value is None else bytes(value)

    def read_entries(self) -> list[tuple[bytes, bytes]]:
        """All state entries, sorted by key (what the exchange state is rebuilt from)."""
        with self._env.begin() as txn:
            return _read_entries(txn, self._dbs)

    def read_txn(self) -> Any:
        """A read transaction (context manager) for several consistent reads."""
        return self._env.begin()

    def read_meta(self, txn: Any) -> StoreMeta:
        return _read_meta(txn, self._dbs)

    def get_block(self, height: int) -> bytes | None:
        return self._get_sealed("blocks", height_key(height), f"block {height}")

    def get_qc(self, height: int) -> bytes | None:
        return self._get_sealed("qcs", height_key(height), f"QC {height}")

    def get_events(self, height: int) -> bytes | None:
        return self._get_sealed("events", height_key(height), f"events {height}")

    def get_height_of_block(self, block_hash: bytes) -> int | None:
        with self._env.begin() as txn:
            value = txn.get(block_hash, db=self._dbs["block_hashes"])
        return None if value is None else int.from_bytes(value, "big")

    def get_block_by_hash(self, block_hash: bytes) -> tuple[int, bytes] | None:
        """(height, block bytes) of a stored block, or None (unknown or pruned)."""
        height = self.get_height_of_block(block_hash)
        if height is None:
            return None
        block = self.get_block(height)
        return None if block is None else (height, block)

    def get_height_index(self, height: int) -> HeightIndex | None:
        raw = self._get_sealed("heights", height_key(height), f"height index {height}")
        return None if raw is None else _decode(HeightIndex, raw, f"height index {height}")

    def get_tx_result(self, tx_id: bytes) -> TxRecord | None:
        raw = self._get_sealed("results", tx_id, f"result of {tx_id.hex()}")
        if raw is None:
            return None
        if len(raw) < 12:
            raise StoreCorruptError(f"result of {tx_id.hex()} is too short")
        return TxRecord(int.from_bytes(raw[:8], "big"), int.from_bytes(raw[8:12], "big"), raw[12:])

    def tx_inclusion(self, tx_id: bytes) -> tuple[int, TxInclusionProof] | None:
        """(height, proof against that block's tx root) for a stored transaction."""
        record = self.get_tx_result(tx_id)
        if record is None:
            return None
        index = self.get_height_index(record.height)
        if index is None or record.index >= len(index.tx_ids):
            return None
        check(index.tx_ids[record.index] == tx_id, "result index points at another tx")
        return record.height, inclusion_proof(index.tx_ids, record.index)

    def prove(self, key: bytes) -> ProofAt:
        """Proof for ``key`` at the latest committed height, built from stored nodes."""
        return self.prove_many([key])[0]

    def prove_many(self, keys: Sequence[bytes], height: int | None = None) -> list[ProofAt]:
        """Proofs for ``keys`` at ``height`` (None: the latest), all read in one transaction.

        A past height is proven from the latest state overlaid with the undo records of the
        blocks after it (module docstring); :class:`ProofHeightError` if it is in the future
        or older than the kept history.
        """
        with self._env.begin() as txn:
            view = self._proof_view(txn, height, keys)
            return [view.prove(key, view.height) for key in keys]

    def _proof_view(
        self, txn: Any, height: int | None, keys: Sequence[bytes]
    ) -> _StateView | _VersionView:
        """The archive index's view when it covers every block after ``height`` (constant
        cost per read), else the latest state rolled back by undo records (bounded)."""
        latest = _read_meta(txn, self._dbs).height
        if height is not None and height < latest:
            versioned = _VersionView.at(txn, self._dbs, height)
            if versioned is not None:
                return versioned
        return self._view_at(txn, height, keys, PROOF_UNDO_BYTES_MAX)

    def state_at(self, txn: Any, height: int) -> tuple[list[tuple[bytes, bytes]], bytes]:
        """All entries sorted by key and the state root after block ``height`` (snapshot
        export at a past height), inside a caller's read transaction."""
        view = self._view_at(txn, height)
        latest = _read_entries(txn, self._dbs)
        if not view.rolled_back:
            return latest, view.root
        entries = dict(latest)
        view.roll_back_entries(entries)
        return sorted(entries.items()), view.root

    def _view_at(
        self,
        txn: Any,
        height: int | None,
        keys: Sequence[bytes] | None = None,
        undo_bytes_max: int | None = None,
    ) -> _StateView:
        """The state after block ``height`` (None: the latest) as a rolled-back view; with
        ``keys``, only what proofs of those keys read is rolled back (bounded memory)."""
        meta = _read_meta(txn, self._dbs)
        if height is None:
            height = meta.height
        if height > meta.height:
            raise ProofHeightError(
                f"height {height} is not committed yet (latest is {meta.height})"
            )
        view = _StateView(txn, self._dbs, meta, keys)
        undo_bytes = 0
        for h in range(meta.height, height, -1):  # newest first: earlier records win
            raw = txn.get(height_key(h), db=self._dbs["undo"])
            if raw is None:
                raise ProofHeightError(
                    f"the state at height {height} is no longer kept (provable heights "
                    f"{h}..{meta.height})"
                )
            undo_bytes += len(raw)
            if undo_bytes_max is not None and undo_bytes > undo_bytes_max:
                raise ProofHeightError(
                    f"height {height} is too far back to prove here: the blocks since then "
                    f"changed more than {undo_bytes_max >> 20} MiB of state (proven back to "
                    f"height {h})"
                )
            view.undo(h - 1, UndoRecord.from_bytes(unseal(bytes(raw), f"undo record {h}")))
        return view

    def _get_sealed(self, db_name: str, key: bytes, what: str) -> bytes | None:
        with self._env.begin() as txn:
            value = txn.get(key, db=self._dbs[db_name])
        return None if value is None else unseal(bytes(value), what)

    # -- pruning ---------------------------------------------------------------------------------

    def prune_blocks(self, keep_last: int, max_heights: int = PRUNE_HEIGHTS_PER_CALL_MAX) -> int:
        """Delete stored blocks below the last ``keep_last``; return how many heights went.

        At most ``max_heights`` per call, so one call is one bounded write transaction; call
        again to continue. State, Merkle nodes and metadata are never touched.
        """
        if keep_last < 1:
            raise StoreError("keep_last must be at least 1 (the latest block stays)")
        if self.archive:
            raise StoreError("an archive store keeps every block: pruning is refused")
        if self._broken is not None:
            raise StoreError(f"store unusable after a failed commit ({self._broken}); reopen it")
        first = self._meta.base_height
        stop = min(self._meta.height - keep_last + 1, first + max(1, max_heights))
        if stop <= first:
            return 0
        meta = dataclasses.replace(self._meta, base_height=stop)
        with self._env.begin(write=True) as txn:
            for height in range(first, stop):
                self._delete_height(txn, height)
            txn.put(_META_KEY, meta.to_wire(), db=self._dbs["meta"])
        self._meta = meta
        return stop - first

    # -- rollback --------------------------------------------------------------------------------

    def roll_back_one_height(self) -> int:
        """Undo the last committed block in one write transaction; return the new height.

        The block's undo record restores every state entry and inner node it overwrote; its
        block, QC, events, indexes and results are deleted; the metadata names the block below
        with the root recorded before the block. The restored entries are rebuilt into a tree
        and checked against that root before the transaction commits, so a rollback either
        lands exactly on the previous state or changes nothing. The consensus safety record is
        not touched: the validator keeps every promise it made at the undone height (it will
        not vote again in a view it voted in), and simply executes the block again when it
        syncs it. Needs the undo record (``proof_history_heights`` > 0; an imported snapshot's
        first height has none) and the block below (not pruned).
        """
        if self._broken is not None:
            raise StoreError(f"store unusable after a failed commit ({self._broken}); reopen it")
        height = self._meta.height
        if height == 0:
            raise StoreError("nothing to roll back: the store is at the genesis state")
        dbs = self._dbs
        with self._env.begin(write=True) as txn:
            undo = self._undo_record(txn, height)
            meta = dataclasses.replace(
                self._meta,
                height=height - 1,
                block_hash=self._block_hash_below(txn, height),
                state_root=undo.root_before,
            )
            _restore(txn, dbs["state"], undo.state)
            _restore(txn, dbs["nodes"], undo.nodes)
            self._delete_height(txn, height)
            txn.delete(height_key(height), db=dbs["undo"])
            tree = MerkleState.from_entries(_read_entries(txn, dbs))
            stored_nodes = {bytes(k): bytes(v) for k, v in txn.cursor(db=dbs["nodes"])}
            if tree.root() != undo.root_before or stored_nodes != dict(_inner_nodes(tree)):
                raise StoreCorruptError(  # raising aborts the transaction
                    f"rollback of height {height} gives root {tree.root().hex()}, the undo "
                    f"record says {undo.root_before.hex()}; nothing was changed"
                )
            txn.put(_META_KEY, meta.to_wire(), db=dbs["meta"])
        self._meta = meta
        self._tree = tree
        self._deep_inner_ids = {
            nid for nid, _ in _inner_nodes(tree) if nid[0] >= tree.shape.min_depth
        }
        return meta.height

    def _undo_record(self, txn: Any, height: int) -> UndoRecord:
        raw = txn.get(height_key(height), db=self._dbs["undo"])
        if raw is None:
            raise StoreError(
                f"no undo record of height {height} (storage.proof_history_heights = 0, or the "
                "store starts at an imported snapshot): it cannot be rolled back"
            )
        return UndoRecord.from_bytes(unseal(bytes(raw), f"undo record of height {height}"))

    def _block_hash_below(self, txn: Any, height: int) -> bytes:
        """The hash of block ``height - 1`` (empty for the genesis state)."""
        below = height - 1
        if below == 0:
            return b""
        raw = txn.get(height_key(below), db=self._dbs["heights"])
        if below < self._meta.base_height or raw is None:
            raise StoreError(f"block {below} is not stored (pruned): cannot roll back to it")
        index = _decode(HeightIndex, unseal(bytes(raw), "height index"), "height index")
        return index.block_hash

    def _delete_height(self, txn: Any, height: int) -> None:
        hk = height_key(height)
        dbs = self._dbs
        raw_index = txn.get(hk, db=dbs["heights"])
        if raw_index is not None:
            index = _decode(HeightIndex, unseal(bytes(raw_index), "height index"), "height index")
            txn.delete(index.block_hash, db=dbs["block_hashes"])
            for tx_id in index.tx_ids:
                record = txn.get(tx_id, db=dbs["results"])
                # A later block may hold the same id again; only delete this height's record.
                if record is not None and bytes(record)[SEAL_BYTES : SEAL_BYTES + 8] == hk:
                    txn.delete(tx_id, db=dbs["results"])
        for name in ("blocks", "qcs", "events", "heights"):
            txn.delete(hk, db=dbs[name])


def _restore(txn: Any, db: Any, previous: Sequence[tuple[bytes, bytes | None]]) -> None:
    """Put back the values an undo record saved (None: the key was absent), in reverse, so
    a key saved twice ends with its first, oldest value."""
    for key, old in reversed(previous):
        if old is None:
            txn.delete(key, db=db)
        else:
            txn.put(key, old, db=db)


def _put_initial(
    txn: Any,
    dbs: dict[str, Any],
    meta: StoreMeta,
    tree: MerkleState,
    entries: Sequence[tuple[bytes, bytes]],
    extra: Sequence[tuple[str, bytes, bytes]],
) -> None:
    # A new, empty database filled in key order: LMDB appends page after page instead of
    # inserting into a tree (several times faster for a million-entry genesis or snapshot).
    stored = sorted((state_db_key(key), value) for key, value in entries)
    _, added = txn.cursor(db=dbs["state"]).putmulti(stored, append=True)
    check(added == len(stored), "duplicate state keys in an initial entry set")
    nodes = sorted(_inner_nodes(tree))
    txn.cursor(db=dbs["nodes"]).putmulti(nodes, append=True)
    for db_name, key, value in extra:
        txn.put(key, value, db=dbs[db_name])
    txn.put(_META_KEY, meta.to_wire(), db=dbs["meta"])


def _open_env(path: Path, map_size_bytes: int, create: bool = True) -> tuple[Any, dict[str, Any]]:
    # The durability flags, each pinned by tests/storage/test_env_flags.py: a weaker setting
    # passes every crash test that kills the process (the page cache survives SIGKILL) and
    # only loses blocks when the machine itself stops, so it must fail a test instead.
    env = lmdb.open(
        str(path),
        map_size=map_size_bytes,
        max_dbs=MAX_DBS,
        subdir=True,
        create=create,
        # fsync the data pages at every commit: a committed block (and a safety record, which
        # consensus sends votes on) survives power loss, not only a process crash.
        sync=True,
        # fsync the meta page too; without it the last commits can vanish on power loss even
        # though their votes and replies left the node.
        metasync=True,
        # Write through write(2), not a writable map: a stray write into the map by a bug in
        # any C extension would silently corrupt committed pages, and writemap's own flushing
        # (map_async) would weaken sync to "some time later".
        writemap=False,
        map_async=False,
        # LMDB's reader lock table: snapshot export and the page walk read while the node
        # writes; without it a writer could reuse pages a reader in another process uses.
        lock=True,
        readonly=False,
        readahead=False,  # random reads over a state larger than RAM: readahead only evicts
    )
    try:
        with env.begin(write=True) as txn:
            dbs = {name: env.open_db(name.encode(), txn=txn, create=True) for name in _DB_NAMES}
    except lmdb.Error:
        env.close()
        raise
    return env, dbs


def _read_meta(txn: Any, dbs: dict[str, Any]) -> StoreMeta:
    raw = txn.get(_META_KEY, db=dbs["meta"])
    if raw is None:
        raise StoreCorruptError("store has no metadata record")
    meta = _decode(StoreMeta, bytes(raw), "metadata record")
    if meta.format_version != FORMAT_VERSION:
        raise StoreError(f"store format {meta.format_version}, this build reads {FORMAT_VERSION}")
    return meta


def _read_entries(
    txn: Any, dbs: dict[str, Any], check_slots: bool = False
) -> list[tuple[bytes, bytes]]:
    """All entries sorted by key; ``check_slots`` also checks each stored slot prefix."""
    entries = []
    for db_key, value in txn.cursor(db=dbs["state"]):
        key = bytes(db_key[SLOT_PREFIX_BYTES:])
        if check_slots and state_db_key(key) != db_key:
            raise StoreCorruptError(f"state entry {bytes(db_key).hex()} is under the wrong slot")
        entries.append((key, bytes(value)))
    entries.sort()
    return entries


def _slot_entries(txn: Any, dbs: dict[str, Any], slot: bytes) -> list[tuple[bytes, bytes]]:
    """The entries stored under one slot prefix (adjacent in the state sub-database)."""
    out = []
    cursor = txn.cursor(db=dbs["state"])
    if cursor.set_range(slot):
        for db_key, value in cursor:
            if db_key[:SLOT_PREFIX_BYTES] != slot:
                break
            out.append((bytes(db_key[SLOT_PREFIX_BYTES:]), bytes(value)))
    return out


class _StateView:
    """The stored state and inner nodes, optionally rolled back by undo records (one read
    transaction). Undo records are applied newest first, so an older record's value wins."""

    def __init__(
        self, txn: Any, dbs: dict[str, Any], meta: StoreMeta, keys: Sequence[bytes] | None
    ) -> None:
        self._txn = txn
        self._dbs = dbs
        self.height = meta.height
        self.root = meta.state_root
        self._state: dict[bytes, bytes | None] = {}
        self._slots: dict[bytes, set[bytes]] = {}  # slot -> rolled-back stored keys in it
        self._nodes: dict[bytes, bytes | None] = {}
        # With keys: the only node ids and slots their proofs can read.
        self._want_nodes: set[bytes] | None = None
        self._want_slots: set[bytes] | None = None
        if keys is not None:
            hashes = [key_hash(k) for k in keys]
            self._want_nodes = {
                node_id(d, prefix_of(kh, d)) for kh in hashes for d in range(MAX_DEPTH + 1)
            }
            self._want_slots = {kh[:SLOT_PREFIX_BYTES] for kh in hashes}

    @property
    def rolled_back(self) -> bool:
        return bool(self._state or self._nodes)

    def undo(self, height_before: int, record: UndoRecord) -> None:
        self.height = height_before
        self.root = record.root_before
        state, nodes = record.state, record.nodes
        if self._want_slots is not None and self._want_nodes is not None:
            slots, wanted = self._want_slots, self._want_nodes
            state = [e for e in state if e[0][:SLOT_PREFIX_BYTES] in slots]
            nodes = [e for e in nodes if e[0] in wanted]
        self._state.update(state)
        for db_key, _ in state:
            self._slots.setdefault(db_key[:SLOT_PREFIX_BYTES], set()).add(db_key)
        self._nodes.update(nodes)

    def get_node(self, nid: bytes) -> bytes | None:
        if nid in self._nodes:
            return self._nodes[nid]
        node = self._txn.get(nid, db=self._dbs["nodes"])
        return None if node is None else bytes(node)

    def get_value(self, key: bytes) -> bytes | None:
        db_key = state_db_key(key)
        if db_key in self._state:
            return self._state[db_key]
        raw = self._txn.get(db_key, db=self._dbs["state"])
        return None if raw is None else bytes(raw)

    def get_bucket(self, depth: int, kh: bytes) -> bytes:
        slot = kh[:SLOT_PREFIX_BYTES]
        entries = dict(_slot_entries(self._txn, self._dbs, slot))
        for db_key in self._slots.get(slot, ()):
            value = self._state[db_key]
            if value is None:
                entries.pop(db_key[SLOT_PREFIX_BYTES:], None)
            else:
                entries[db_key[SLOT_PREFIX_BYTES:]] = value
        return bucket_records(entries.items(), kh, depth)

    def roll_back_entries(self, entries: dict[bytes, bytes]) -> None:
        """Turn the latest entries (key -> value) into this view's."""
        for db_key, value in self._state.items():
            if value is None:
                entries.pop(db_key[SLOT_PREFIX_BYTES:], None)
            else:
                entries[db_key[SLOT_PREFIX_BYTES:]] = value

    def prove(self, key: bytes, height: int) -> ProofAt:
        try:
            proof = prove_from_nodes(self.get_node, key, self.root, get_bucket=self.get_bucket)
        except MissingNodeError as exc:
            raise StoreCorruptError(f"merkle nodes at height {height}: {exc}") from None
        return ProofAt(height, self.root, key, self.get_value(key), proof)


_VERSIONS_FIRST_KEY = b"first"  # u64: the first height of an unbroken run of archive commits
_V_STATE, _V_NODE, _V_ROOT = b"S", b"N", b"R"
_NO_HEIGHT = b"\xff" * 8  # sorts after every version of a key


def _version_prefix_of_state(db_key: bytes) -> bytes:
    """Versions of one state entry: tag, slot, key length (keys differ in length), key."""
    key = db_key[SLOT_PREFIX_BYTES:]
    return _V_STATE + db_key[:SLOT_PREFIX_BYTES] + len(key).to_bytes(2, "big") + key


def _version_value(old: bytes | None) -> bytes:
    return b"\x00" if old is None else b"\x01" + old


def _put_versions(txn: Any, db: Any, height: int, undo: UndoRecord) -> None:
    """Archive index of block ``height``: per written entry and inner node, keyed by it and
    the height, the value it had *before* the block (the undo record, re-keyed so one seek
    finds the first change after any height). Such an entry stays true whatever happens
    later (a rolled-back and re-executed block only rewrites facts about the same past)."""
    if txn.get(_VERSIONS_FIRST_KEY, db=db) is None:
        txn.put(_VERSIONS_FIRST_KEY, height_key(height), db=db)
    suffix = height_key(height)
    txn.put(_V_ROOT + suffix, undo.root_before, db=db)
    for db_key, old in undo.state:
        txn.put(_version_prefix_of_state(db_key) + suffix, _version_value(old), db=db)
    for nid, old in undo.nodes:
        txn.put(_V_NODE + nid + suffix, _version_value(old), db=db)


class _VersionView:
    """The state after block ``height`` read through the archive index: each entry or node
    is its value before the first block after ``height`` that changed it, else the latest.
    One seek per read, whatever the distance to the latest height."""

    def __init__(self, txn: Any, dbs: dict[str, Any], height: int, root: bytes) -> None:
        self._txn = txn
        self._dbs = dbs
        self._db = dbs["versions"]
        self.height = height
        self.root = root
        self._after = height_key(height + 1)

    @classmethod
    def at(cls, txn: Any, dbs: dict[str, Any], height: int) -> _VersionView | None:
        """The view, or None when the index does not cover every block after ``height``."""
        first = txn.get(_VERSIONS_FIRST_KEY, db=dbs["versions"])
        if first is None or int.from_bytes(first, "big") > height + 1:
            return None
        root = txn.get(_V_ROOT + height_key(height + 1), db=dbs["versions"])
        if root is None:
            raise StoreCorruptError(f"archive index has no root before block {height + 1}")
        return cls(txn, dbs, height, bytes(root))

    def _before_next_change(self, prefix: bytes, cursor: Any) -> bytes | None:
        """The stored version value of the first change after the height, if any."""
        if cursor.set_range(prefix + self._after):
            found = bytes(cursor.key())
            if len(found) == len(prefix) + 8 and found.startswith(prefix):
                return bytes(cursor.value())
        return None

    def get_node(self, nid: bytes) -> bytes | None:
        version = self._before_next_change(_V_NODE + nid, self._txn.cursor(db=self._db))
        if version is not None:
            return version[1:] if version[:1] == b"\x01" else None
        node = self._txn.get(nid, db=self._dbs["nodes"])
        return None if node is None else bytes(node)

    def get_value(self, key: bytes) -> bytes | None:
        db_key = state_db_key(key)
        cursor = self._txn.cursor(db=self._db)
        version = self._before_next_change(_version_prefix_of_state(db_key), cursor)
        if version is not None:
            return version[1:] if version[:1] == b"\x01" else None
        raw = self._txn.get(db_key, db=self._dbs["state"])
        return None if raw is None else bytes(raw)

    def get_bucket(self, depth: int, kh: bytes) -> bytes:
        """The slot's entries at the height: the latest ones, then for every key the slot has
        ever had, its value before its first change after the height (two seeks per key)."""
        slot = kh[:SLOT_PREFIX_BYTES]
        entries = dict(_slot_entries(self._txn, self._dbs, slot))
        slot_prefix = _V_STATE + slot
        cursor = self._txn.cursor(db=self._db)
        more = cursor.set_range(slot_prefix)
        while more:
            found = bytes(cursor.key())
            if not found.startswith(slot_prefix):
                break
            prefix = found[:-8]
            key = prefix[len(slot_prefix) + 2 :]
            version = self._before_next_change(prefix, cursor)
            if version is not None:
                if version[:1] == b"\x01":
                    entries[key] = version[1:]
                else:
                    entries.pop(key, None)
            more = cursor.set_range(prefix + _NO_HEIGHT)
        return bucket_records(entries.items(), kh, depth)

    def prove(self, key: bytes, height: int) -> ProofAt:
        try:
            proof = prove_from_nodes(self.get_node, key, self.root, get_bucket=self.get_bucket)
        except MissingNodeError as exc:
            raise StoreCorruptError(f"merkle nodes at height {height}: {exc}") from None
        return ProofAt(height, self.root, key, self.get_value(key), proof)


def _inner_nodes(tree: MerkleState) -> Iterator[tuple[bytes, bytes]]:
    """The nodes the store keeps: inner nodes only (buckets derive from the state)."""
    return ((nid, node) for nid, node in tree.nodes() if node[:1] == TAG_INNER)


def _decode(cls: type[_W], raw: bytes, what: str) -> _W:
    try:
        return cls.from_wire(raw)
    except DecodeError as exc:
        raise StoreCorruptError(f"{what} does not decode: {exc.reason}") from None


def _recover(env: Any, dbs: dict[str, Any]) -> tuple[StoreMeta, MerkleState]:
    """Read and cross-check everything a restart depends on; see the module docstring."""
    with env.begin() as txn:
        meta = _read_meta(txn, dbs)
        entries = _read_entries(txn, dbs, check_slots=True)
        tree = MerkleState.from_entries(entries)
        del entries
        if tree.root() != meta.state_root:
            raise StoreCorruptError(
                f"state root mismatch at height {meta.height}: stored {meta.state_root.hex()}, "
                f"recomputed from {len(tree)} entries {tree.root().hex()}"
            )
        stored_nodes = {bytes(k): bytes(v) for k, v in txn.cursor(db=dbs["nodes"])}
        if stored_nodes != dict(_inner_nodes(tree)):
            raise StoreCorruptError("merkle node database differs from the state entries")
        del stored_nodes
        if meta.height >= meta.base_height:
            hk = height_key(meta.height)
            for name in ("blocks", "qcs", "heights"):
                value = txn.get(hk, db=dbs[name])
                if value is None:
                    raise StoreCorruptError(f"{name} record of height {meta.height} is missing")
                unseal(bytes(value), f"{name} record of height {meta.height}")
    return meta, tree


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
