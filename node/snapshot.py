"""State snapshots: export the committed state to one file, import it into an empty data dir.

A snapshot lets a new validator start at height H instead of replaying every block. The file:

    magic  b"perpbft-snapshot"  (16 bytes)
    frame  SnapshotHeader       (u32 big-endian length, then the codec's canonical bytes)
    frame  EntryChunk ...       (up to 4,096 entries each, keys strictly increasing overall)
    sha256 of every byte above  (32 bytes), then end of file

The header carries the chain id, genesis hash, height, block hash, state root, the number of
entries, and the block and commit QC at that height when the exporting store still had them.
The imported store keeps that block and QC as its tip, which a validator's replica resumes from
(``Replica.restore`` checks that the QC names the block, not the QC's signatures). Nothing here
checks the QC, and it would not certify the state anyway: it certifies block H, whose header
carries the root after H - 1; the root after H is in the header of block H + 1. So import
checks the root against the entries and, with ``expect_root``, against a root the operator took
from block H + 1's certified header (docs/OPERATIONS.md, "Snapshots").

Import verifies, in order: magic, frame sizes and encodings, key order, entry count, the
checksum, end of file, that the Merkle root recomputed from the entries equals the header's,
and ``expect_root`` if given; only then does it write the new store, in one LMDB transaction.
Every failure is a :class:`SnapshotError` naming what is wrong; nothing is written to the data
dir.

Export reads everything inside one LMDB read transaction (a consistent view even while the node
commits), writes ``FILE.tmp``, fsyncs it and renames it over ``FILE``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, ClassVar, TypeVar

from node.storage import (
    DEFAULT_MAP_SIZE_BYTES,
    FORMAT_VERSION,
    MAX_BLOCK_HASH_BYTES,
    MAX_OPAQUE_BYTES,
    HeightIndex,
    Store,
    StoreError,
    StoreMeta,
    fsync_dir,
    height_key,
    seal,
)
from state_machine.codec import U64, Bytes, DecodeError, ListOf, Struct, Wire, wire
from state_machine.merkle_state import (
    HASH_BYTES,
    MAX_STATE_KEY_BYTES,
    MAX_STATE_VALUE_BYTES,
    MerkleState,
)
from state_machine.tx import CHAIN_ID

_W = TypeVar("_W", bound=Wire)

SNAPSHOT_MAGIC = b"perpbft-snapshot"
SNAPSHOT_VERSION = 1
ENTRIES_PER_CHUNK = 4096
FRAME_BYTES_MAX = 64 * 1024 * 1024
ENTRIES_MAX = 100_000_000


class SnapshotError(Exception):
    """A snapshot file is unusable, or the target data dir cannot take it."""


@wire
class SnapshotHeader(Wire):
    MAX_BYTES: ClassVar[int] = 2 * MAX_OPAQUE_BYTES + 4096
    WIRE = (
        ("version", U64),
        ("chain_id", CHAIN_ID),
        ("genesis_hash", Bytes(exact=HASH_BYTES)),
        ("height", U64),
        ("block_hash", Bytes(max_len=MAX_BLOCK_HASH_BYTES)),
        ("state_root", Bytes(exact=HASH_BYTES)),
        ("entry_count", U64),
        ("block", Bytes(max_len=MAX_OPAQUE_BYTES)),
        ("qc", Bytes(max_len=MAX_OPAQUE_BYTES)),
    )
    version: int
    chain_id: str
    genesis_hash: bytes
    height: int
    block_hash: bytes
    state_root: bytes
    entry_count: int
    block: bytes  # empty when the exporting store had pruned it (or at height 0)
    qc: bytes


@wire
class SnapshotEntry(Wire):
    WIRE = (
        ("key", Bytes(max_len=MAX_STATE_KEY_BYTES)),
        ("value", Bytes(max_len=MAX_STATE_VALUE_BYTES)),
    )
    key: bytes
    value: bytes


@wire
class EntryChunk(Wire):
    MAX_BYTES: ClassVar[int] = FRAME_BYTES_MAX
    WIRE = (("entries", ListOf(Struct(SnapshotEntry), ENTRIES_PER_CHUNK, min_len=1)),)
    entries: tuple[SnapshotEntry, ...]


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    path: Path
    chain_id: str
    height: int
    state_root: bytes
    entry_count: int
    file_bytes: int


# --------------------------------------------------------------------------------------------
# Export.
# --------------------------------------------------------------------------------------------


def export_snapshot(store: Store, out_path: Path, height: int | None = None) -> SnapshotInfo:
    """Write the state at ``height`` (None: the latest committed height) to ``out_path``.

    A past height is rebuilt from the latest state and the store's undo records (see
    ``node/storage.py``), so it must be within ``proof_history_heights`` of the latest, and its
    block must still be stored (its hash goes into the header)."""
    out_path = Path(out_path)
    tmp_path = out_path.with_name(out_path.name + ".tmp")
    with store.read_txn() as txn:
        meta = store.read_meta(txn)
        at = meta.height if height is None else height
        try:
            entries, root = store.state_at(txn, at)
        except StoreError as exc:
            raise SnapshotError(f"cannot export height {at}: {exc}") from None
        has_block = meta.base_height <= at
        block = (store.get_block(at) or b"") if has_block else b""
        qc = (store.get_qc(at) or b"") if has_block else b""
        if at == meta.height:
            block_hash = meta.block_hash
        else:
            index = store.get_height_index(at) if at > 0 else HeightIndex(b"", ())
            if index is None:
                raise SnapshotError(f"cannot export height {at}: its block is no longer stored")
            block_hash = index.block_hash
        count = len(entries)
        header = SnapshotHeader(
            SNAPSHOT_VERSION,
            meta.chain_id,
            meta.genesis_hash,
            at,
            block_hash,
            root,
            count,
            block,
            qc,
        )
        try:
            with tmp_path.open("wb") as f:
                digest = hashlib.sha256()
                _write(f, digest, SNAPSHOT_MAGIC)
                _write_frame(f, digest, header.to_wire())
                for chunk in _chunks(iter(entries)):
                    _write_frame(f, digest, chunk.to_wire())
                f.write(digest.digest())
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            tmp_path.unlink(missing_ok=True)
            raise SnapshotError(f"cannot write {tmp_path}: {exc}") from None
    os.replace(tmp_path, out_path)
    fsync_dir(out_path.parent)
    return SnapshotInfo(out_path, meta.chain_id, at, root, count, out_path.stat().st_size)


def _chunks(entries: Iterator[tuple[bytes, bytes]]) -> Iterator[EntryChunk]:
    batch: list[SnapshotEntry] = []
    for key, value in entries:
        batch.append(SnapshotEntry(key, value))
        if len(batch) == ENTRIES_PER_CHUNK:
            yield EntryChunk(tuple(batch))
            batch = []
    if batch:
        yield EntryChunk(tuple(batch))


def _write(f: BinaryIO, digest: hashlib._Hash, data: bytes) -> None:
    f.write(data)
    digest.update(data)


def _write_frame(f: BinaryIO, digest: hashlib._Hash, payload: bytes) -> None:
    _write(f, digest, len(payload).to_bytes(4, "big") + payload)


# --------------------------------------------------------------------------------------------
# Reading and import.
# --------------------------------------------------------------------------------------------


def read_snapshot(path: Path) -> tuple[SnapshotHeader, list[tuple[bytes, bytes]]]:
    """Read and fully verify a snapshot file (everything but the Merkle root)."""
    try:
        with Path(path).open("rb") as f:
            return _read_verified(f)
    except OSError as exc:
        raise SnapshotError(f"cannot read {path}: {exc}") from None


def _read_verified(f: BinaryIO) -> tuple[SnapshotHeader, list[tuple[bytes, bytes]]]:
    digest = hashlib.sha256()
    magic = _read_exact(f, digest, len(SNAPSHOT_MAGIC), "magic")
    if magic != SNAPSHOT_MAGIC:
        raise SnapshotError("not a perpbft snapshot (bad magic)")
    header = _decode(SnapshotHeader, _read_frame(f, digest, "header"), "header")
    if header.version != SNAPSHOT_VERSION:
        raise SnapshotError(f"snapshot version {header.version}, this build reads 1")
    if header.entry_count > ENTRIES_MAX:
        raise SnapshotError(f"{header.entry_count} entries exceed the limit of {ENTRIES_MAX}")
    entries: list[tuple[bytes, bytes]] = []
    previous: bytes | None = None
    while len(entries) < header.entry_count:
        chunk = _decode(EntryChunk, _read_frame(f, digest, "entry chunk"), "entry chunk")
        for entry in chunk.entries:
            if previous is not None and entry.key <= previous:
                raise SnapshotError("entries are not in strictly increasing key order")
            previous = entry.key
            entries.append((entry.key, entry.value))
    if len(entries) != header.entry_count:
        raise SnapshotError(f"header says {header.entry_count} entries, file has more")
    stored_digest = f.read(HASH_BYTES)
    if len(stored_digest) != HASH_BYTES:
        raise SnapshotError("snapshot is truncated (no checksum)")
    if stored_digest != digest.digest():
        raise SnapshotError("snapshot checksum mismatch: the file is damaged")
    if f.read(1):
        raise SnapshotError("unexpected bytes after the snapshot checksum")
    return header, entries


def _read_exact(f: BinaryIO, digest: hashlib._Hash, size: int, what: str) -> bytes:
    data = f.read(size)
    if len(data) != size:
        raise SnapshotError(f"snapshot is truncated (in the {what})")
    digest.update(data)
    return data


def _read_frame(f: BinaryIO, digest: hashlib._Hash, what: str) -> bytes:
    size = int.from_bytes(_read_exact(f, digest, 4, what), "big")
    if size > FRAME_BYTES_MAX:
        raise SnapshotError(f"{what} frame of {size} bytes exceeds {FRAME_BYTES_MAX}")
    return _read_exact(f, digest, size, what)


def _decode(cls: type[_W], raw: bytes, what: str) -> _W:
    try:
        return cls.from_wire(raw)
    except DecodeError as exc:
        raise SnapshotError(f"snapshot {what} is malformed: {exc.reason}") from None


def check_snapshot_chain(header: SnapshotHeader, chain_id: str, genesis_hash: bytes) -> None:
    """Raise SnapshotError unless the snapshot is of the chain with this genesis."""
    if header.chain_id != chain_id:
        raise SnapshotError(
            f"snapshot is of chain {header.chain_id!r}, this node's genesis is {chain_id!r}"
        )
    if header.genesis_hash != genesis_hash:
        raise SnapshotError(
            f"snapshot genesis hash {header.genesis_hash.hex()} differs from this node's "
            f"genesis {genesis_hash.hex()} (same chain id {chain_id!r}, another genesis)"
        )


def import_snapshot(
    snapshot_path: Path,
    data_dir: Path,
    *,
    expect_root: bytes | None = None,
    map_size_bytes: int = DEFAULT_MAP_SIZE_BYTES,
    expect_genesis: tuple[str, bytes] | None = None,
) -> Store:
    """Verify ``snapshot_path`` and create a store from it in the empty ``data_dir``.

    ``expect_genesis`` (chain id, genesis hash) refuses another chain's snapshot here, before
    anything is written, rather than leaving a store that ``start`` would refuse later.
    """
    header, entries = read_snapshot(snapshot_path)
    if expect_genesis is not None:
        check_snapshot_chain(header, *expect_genesis)
    tree = MerkleState.from_entries(entries)
    if tree.root() != header.state_root:
        raise SnapshotError(
            f"snapshot root mismatch: header {header.state_root.hex()}, "
            f"entries give {tree.root().hex()}"
        )
    if expect_root is not None and header.state_root != expect_root:
        raise SnapshotError(
            f"snapshot root {header.state_root.hex()} is not the expected {expect_root.hex()}"
        )
    has_block = bool(header.block) and header.height > 0
    meta = StoreMeta(
        FORMAT_VERSION,
        header.chain_id,
        header.genesis_hash,
        header.height,
        header.block_hash,
        header.state_root,
        header.height if has_block else header.height + 1,
    )
    extra: list[tuple[str, bytes, bytes]] = []
    if has_block:
        hk = height_key(header.height)
        extra += [
            ("blocks", hk, seal(header.block)),
            ("qcs", hk, seal(header.qc)),
            ("events", hk, seal(b"")),
            ("heights", hk, seal(HeightIndex(header.block_hash, ()).to_wire())),
            ("block_hashes", header.block_hash, hk),
        ]
    try:
        return Store.create_from(data_dir, meta, tree, entries, extra, map_size_bytes)
    except StoreError as exc:
        raise SnapshotError(str(exc)) from None
