"""The authenticated state: a hexary hash trie over sha256(key) with bounded buckets.

Theory of operation
-------------------
The exchange state is a set of canonical entries ``key bytes -> value bytes``. This module
commits to the whole set with one 32-byte root, updates that root in time proportional to the
number of keys a block changed, and proves for any key that it is present with a given value or
absent.

Shape. Every key is placed by ``kh = sha256(key)``, read as 64 nibbles (4-bit digits). A node at
depth ``d`` covers the keys whose ``kh`` starts with the node's ``d`` nibbles. The shape is a
pure function of the key set, so every replica builds the same tree whatever the order of its
writes (history independence):

* depth < ``min_depth`` (4): always an *inner* node with 16 children. The top four levels are
  therefore a fixed 16-ary tree whose 65,536 leaves ("slots") are the nodes at depth 4;
* depth >= ``min_depth``: a *bucket* holding all its keys if there are at most ``bucket_cap``
  (64) of them, otherwise an inner node that splits them on the next nibble.

Why this shape (and not a binary sparse Merkle tree): in Python the cost is the number of
interpreter-level steps, not bytes hashed. A block that changes 5,000 keys touches about 4,800
slots, 2,900 depth-3 nodes and 273 nodes above; a binary tree would touch about 20,000 inner
nodes. Because the top is fixed, the number of nodes touched is the same with 10 thousand or 1
million keys in the state; only the bucket a key lands in grows (15 records on average at a
million keys; an existing key's record is found by ``bytes.find`` in C, a new key's place by
binary search). The bucket cap bounds the work and the proof size even
if someone grinds many keys into one bucket: each further level costs a grinder 16 times more.

Hashes (sha256, one-byte domain tags so no node can be read as another kind):

* record of a key: ``kh (32) || vh (32)`` with ``vh = sha256(0x00 || value)``;
* bucket node: ``sha256(0x02 || records sorted by kh)`` (an empty bucket hashes ``0x02`` alone);
* inner node: ``sha256(0x01 || hash(child 0) || ... || hash(child 15))``;
* the state root is the hash of the depth-0 inner node.

A node's stored *value* is exactly the bytes its hash is taken over (``0x01 || 16 hashes`` or
``0x02 || records``), so a store of nodes is self-verifying: ``sha256(value)`` is the node's hash.
Node ids are ``depth (1 byte) || the first depth nibbles packed into bytes``. A node equal to the
empty node of its depth is not stored (absent means empty).

Proofs. A :class:`StateProof` lists, for each inner node from the root down, the 15 sibling
hashes (480 bytes), then the records of the bucket the key's path ends in. :func:`verify_proof`
recomputes the bucket hash, checks the key's record is there with the right value hash (or that
it is absent), and hashes up to the root. Because a bucket commits to *all* records under its
path, the absence of the key's record proves non-inclusion.

Working copy. :class:`MerkleState` keeps the whole tree in memory (64 bytes per key plus the
hashes of the fixed top, about 70 MB for a million keys) and returns, from :meth:`apply`, the
node updates ``(node_id, value or None)`` the storage layer writes in the same transaction as
the state entries. Proofs for other readers are built from stored nodes by
:func:`prove_from_nodes`, which needs a node getter (and, for a store that derives buckets from
its state entries, a bucket getter).
"""

from __future__ import annotations

import functools
import hashlib
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from state_machine.codec import Bytes, DecodeError, ListOf, Wire, wire
from state_machine.invariants import InvariantError, check

HASH_BYTES = 32
RECORD_BYTES = 2 * HASH_BYTES
FANOUT = 16
SIBLINGS_BYTES = (FANOUT - 1) * HASH_BYTES
ROW_BYTES = FANOUT * HASH_BYTES  # the 16 child hashes of an inner node
MAX_DEPTH = 2 * HASH_BYTES  # nibbles in a sha256
MAX_STATE_KEY_BYTES = 1024
MAX_STATE_VALUE_BYTES = 16 * 1024 * 1024

TAG_VALUE = b"\x00"
TAG_INNER = b"\x01"
TAG_BUCKET = b"\x02"

_sha256 = hashlib.sha256  # called directly in the hot loops: one Python call layer less

Write = tuple[bytes, bytes | None]  # (key, value or None = delete)
NodeUpdate = tuple[bytes, bytes | None]  # (node id, node value or None = delete)


class MerkleInvariantError(InvariantError):
    """The tree's own invariants are broken: a bug or corrupted input, never a user mistake."""


def _check(cond: bool, msg: str) -> None:
    """Invariant check that survives ``python -O`` (the shared helper, the tree's error)."""
    check(cond, msg, MerkleInvariantError)


@dataclass(frozen=True, slots=True)
class TreeShape:
    """The two constants that fix the tree's shape. Changing either changes every root."""

    min_depth: int = 4
    bucket_cap: int = 64

    def __post_init__(self) -> None:
        _check(1 <= self.min_depth <= 8, f"min_depth {self.min_depth} outside 1..8")
        _check(1 <= self.bucket_cap <= 1024, f"bucket_cap {self.bucket_cap} outside 1..1024")

    @property
    def slots(self) -> int:
        return int(FANOUT**self.min_depth)

    @property
    def bucket_bytes_max(self) -> int:
        """Largest records part of a bucket (a proof's ``bucket``)."""
        return self.bucket_cap * RECORD_BYTES

    @property
    def bucket_value_bytes_max(self) -> int:
        """Largest bucket node value (the tag byte plus the records)."""
        return 1 + self.bucket_cap * RECORD_BYTES


DEFAULT_SHAPE = TreeShape()


@wire
class StateProof(Wire):
    """Inclusion or non-inclusion proof of one key against a state root.

    ``siblings[d]`` is the 15 sibling hashes of the path's child at depth ``d + 1`` in the inner
    node at depth ``d``, in child order with the path's own child left out. ``bucket`` is the
    concatenated records of the bucket the path ends in.
    """

    MAX_BYTES: ClassVar[int] = 128 * 1024
    WIRE = (
        ("siblings", ListOf(Bytes(exact=SIBLINGS_BYTES), MAX_DEPTH)),
        ("bucket", Bytes(max_len=1024 * RECORD_BYTES)),
    )
    siblings: tuple[bytes, ...]
    bucket: bytes


# --------------------------------------------------------------------------------------------
# Hashing helpers.
# --------------------------------------------------------------------------------------------


def key_hash(key: bytes) -> bytes:
    return _sha256(key).digest()


def value_hash(value: bytes) -> bytes:
    return _sha256(TAG_VALUE + value).digest()


def nibble(kh: bytes, depth: int) -> int:
    """The ``depth``-th 4-bit digit of a key hash (0 is the high half of byte 0)."""
    byte = kh[depth >> 1]
    return byte & 0x0F if depth & 1 else byte >> 4


def prefix_of(kh: bytes, depth: int) -> int:
    """The first ``depth`` nibbles of ``kh`` as an integer."""
    return int.from_bytes(kh[: (depth + 1) >> 1], "big") >> (4 * (depth & 1))


def node_id(depth: int, prefix: int) -> bytes:
    """Storage id of the node at ``depth`` whose path is the integer ``prefix`` of nibbles."""
    packed = (prefix << (4 * (depth & 1))).to_bytes((depth + 1) >> 1, "big")
    return bytes((depth,)) + packed


def empty_node_values(shape: TreeShape) -> list[bytes]:
    """Value of the empty node at each depth 0..min_depth (deeper empty nodes are buckets)."""
    values = [b""] * (shape.min_depth + 1)
    values[shape.min_depth] = TAG_BUCKET
    for depth in range(shape.min_depth - 1, -1, -1):
        child_hash = _sha256(values[depth + 1]).digest()
        values[depth] = TAG_INNER + child_hash * FANOUT
    return values


def empty_root(shape: TreeShape = DEFAULT_SHAPE) -> bytes:
    return _sha256(empty_node_values(shape)[0]).digest()


def _record_index(bucket: bytes, kh: bytes) -> int:
    """Index of the first record in bucket value ``0x02 || records`` whose kh is >= ``kh``."""
    return bisect_left(
        range(len(bucket) // RECORD_BYTES),
        kh,
        key=lambda i: bucket[1 + i * RECORD_BYTES : 1 + i * RECORD_BYTES + HASH_BYTES],
    )


def _find_record(bucket: bytes, kh: bytes) -> int:
    """Offset of kh's record in a bucket value, or -1.

    ``bytes.find`` runs in C, so an update of an existing key costs the same whatever the
    bucket's size; a match that is not on a record boundary (a kh spanning two records) is
    skipped.
    """
    pos = bucket.find(kh, 1)
    while pos != -1 and (pos - 1) % RECORD_BYTES:
        pos = bucket.find(kh, pos + 1)
    return pos


def _apply_to_bucket(bucket: bytes, changes: Sequence[tuple[bytes, bytes | None]]) -> bytes:
    """Apply (kh, vh or None) changes, in order, to a bucket value; later ones win."""
    for kh, vh in changes:
        pos = _find_record(bucket, kh)
        if pos == -1:
            if vh is not None:
                pos = 1 + _record_index(bucket, kh) * RECORD_BYTES
                bucket = b"".join((bucket[:pos], kh, vh, bucket[pos:]))
        elif vh is None:
            bucket = bucket[:pos] + bucket[pos + RECORD_BYTES :]
        else:
            bucket = b"".join((bucket[: pos + HASH_BYTES], vh, bucket[pos + RECORD_BYTES :]))
    return bucket


def _split_bucket(bucket: bytes, depth: int) -> list[bytes]:
    """Partition a bucket value into 16 bucket values by the records' nibble at ``depth``."""
    parts: list[list[bytes]] = [[TAG_BUCKET] for _ in range(FANOUT)]
    for pos in range(1, len(bucket), RECORD_BYTES):
        record = bucket[pos : pos + RECORD_BYTES]
        parts[nibble(record, depth)].append(record)
    return [b"".join(p) for p in parts]


# --------------------------------------------------------------------------------------------
# The in-memory tree.
# --------------------------------------------------------------------------------------------


class _Inner:
    """An inner node below the fixed top (a bucket that overflowed its cap)."""

    __slots__ = ("children", "count", "hashes")

    def __init__(self, children: list[bytes | _Inner], hashes: list[bytes], count: int) -> None:
        self.children = children
        self.hashes = hashes
        self.count = count

    def value(self) -> bytes:
        return TAG_INNER + b"".join(self.hashes)


# A node below the fixed top: a bucket's value (``0x02 || records``, which is also what is
# stored and hashed, so no copy is made to hash it) or an overflowed inner node.
Node = bytes | _Inner
EMPTY_BUCKET = TAG_BUCKET


def _count(node: Node) -> int:
    return len(node) // RECORD_BYTES if isinstance(node, bytes) else node.count


class MerkleState:
    """The working copy of the state tree; see the module docstring for the shape and hashes."""

    __slots__ = ("_count", "_empty", "_levels", "_shape", "_slot_ids", "_slots", "_top_ids")

    def __init__(self, shape: TreeShape = DEFAULT_SHAPE) -> None:
        self._shape = shape
        self._empty = empty_node_values(shape)
        self._slots: list[Node] = [EMPTY_BUCKET] * shape.slots
        # _levels[d][32 i : 32 i + 32]: hash of node i at depth d, for d = 0..min_depth (the
        # fixed top). One contiguous buffer per level: an inner node's value is one slice (a
        # memcpy), and the hashes stay together in memory instead of in 65,536 objects.
        self._levels: list[bytearray] = [
            bytearray(_sha256(self._empty[d]).digest() * (FANOUT**d))
            for d in range(shape.min_depth + 1)
        ]
        self._count = 0
        self._top_ids, self._slot_ids = _fixed_node_ids(shape)

    @classmethod
    def from_entries(
        cls, entries: Iterable[tuple[bytes, bytes]], shape: TreeShape = DEFAULT_SHAPE
    ) -> MerkleState:
        """Build the tree of a full entry set; keys must be unique.

        Bulk path: records are grouped by slot and sorted once, instead of inserted one by one.
        """
        tree = cls(shape)
        shift = 64 - 4 * shape.min_depth
        by_slot: dict[int, list[bytes]] = {}
        for key, value in entries:
            _check_entry_limits(key, value)
            kh = _sha256(key).digest()
            record = kh + _sha256(TAG_VALUE + value).digest()
            slot = int.from_bytes(kh[:8], "big") >> shift
            group = by_slot.get(slot)
            if group is None:
                by_slot[slot] = [record]
            else:
                group.append(record)
        sink: list[NodeUpdate] = []
        for slot, records in by_slot.items():
            records.sort()
            for i in range(1, len(records)):
                _check(records[i - 1][:HASH_BYTES] != records[i][:HASH_BYTES], "duplicate key")
            bucket = TAG_BUCKET + b"".join(records)
            node, node_hash = tree._build(bucket, shape.min_depth, slot, sink)
            sink.clear()
            tree._slots[slot] = node
            _set_hash(tree._levels[shape.min_depth], slot, node_hash)
            tree._count += len(records)
        tree._rehash_top(by_slot.keys(), sink)
        return tree

    @property
    def shape(self) -> TreeShape:
        return self._shape

    def __len__(self) -> int:
        return self._count

    def root(self) -> bytes:
        return bytes(self._levels[0])

    # -- updates ---------------------------------------------------------------------------

    def apply(self, writes: Iterable[Write]) -> list[NodeUpdate]:
        """Apply a block's write set; return the node updates to store with it.

        Writes are applied in order (a later write of the same key wins); deleting an absent
        key is a no-op. Cost: O(changed keys + touched slots), independent of the state size.
        """
        groups = self._group_by_slot(writes)
        updates: list[NodeUpdate] = []
        slot_depth = self._shape.min_depth
        slot_hashes = self._levels[slot_depth]
        slot_ids = self._slot_ids
        slots = self._slots
        cap_bytes = self._shape.bucket_value_bytes_max
        for slot, changes in groups.items():
            old = slots[slot]
            if isinstance(old, bytes):
                # Fast path (almost every slot): a bucket that stays a bucket.
                bucket = _apply_to_bucket(old, changes)
                if len(bucket) <= cap_bytes:
                    self._count += (len(bucket) - len(old)) // RECORD_BYTES
                    slots[slot] = bucket
                    start = slot * HASH_BYTES
                    slot_hashes[start : start + HASH_BYTES] = _sha256(bucket).digest()
                    updates.append((slot_ids[slot], bucket if len(bucket) > 1 else None))
                    continue
            old_count = _count(old)  # before _update: it mutates inner nodes in place
            new, new_hash = self._update(old, slot_depth, slot, changes, updates)
            self._count += _count(new) - old_count
            slots[slot] = new
            _set_hash(slot_hashes, slot, new_hash)
        self._rehash_top(groups.keys(), updates)
        return updates

    def _group_by_slot(
        self, writes: Iterable[Write]
    ) -> dict[int, list[tuple[bytes, bytes | None]]]:
        shift = 64 - 4 * self._shape.min_depth
        groups: dict[int, list[tuple[bytes, bytes | None]]] = {}
        for key, value in writes:
            _check_entry_limits(key, value)
            kh = _sha256(key).digest()
            vh = None if value is None else _sha256(TAG_VALUE + value).digest()
            slot = int.from_bytes(kh[:8], "big") >> shift
            group = groups.get(slot)
            if group is None:
                groups[slot] = [(kh, vh)]
            else:
                group.append((kh, vh))
        return groups

    def _rehash_top(self, dirty_slots: Iterable[int], updates: list[NodeUpdate]) -> None:
        """Recompute the fixed top's inner nodes above the changed slots."""
        dirty = {slot >> 4 for slot in dirty_slots}
        for depth in range(self._shape.min_depth - 1, -1, -1):
            children = self._levels[depth + 1]
            hashes = self._levels[depth]
            empty = self._empty[depth]
            ids = self._top_ids[depth]
            for index in dirty:
                start = index * ROW_BYTES
                value = TAG_INNER + children[start : start + ROW_BYTES]
                start = index * HASH_BYTES
                hashes[start : start + HASH_BYTES] = _sha256(value).digest()
                updates.append((ids[index], None if value == empty else value))
            dirty = {index >> 4 for index in dirty}

    def _update(
        self,
        node: Node,
        depth: int,
        prefix: int,
        changes: Sequence[tuple[bytes, bytes | None]],
        updates: list[NodeUpdate],
    ) -> tuple[Node, bytes]:
        """Apply changes under one node at depth >= min_depth; return (node, its hash)."""
        if isinstance(node, bytes):
            bucket = _apply_to_bucket(node, changes)
            if len(bucket) > self._shape.bucket_value_bytes_max:
                return self._build(bucket, depth, prefix, updates)
            updates.append((node_id(depth, prefix), bucket if len(bucket) > 1 else None))
            return bucket, _sha256(bucket).digest()
        groups: dict[int, list[tuple[bytes, bytes | None]]] = {}
        for change in changes:
            groups.setdefault(nibble(change[0], depth), []).append(change)
        for nib, group in groups.items():
            child, child_hash = self._update(
                node.children[nib], depth + 1, prefix * FANOUT + nib, group, updates
            )
            node.children[nib] = child
            node.hashes[nib] = child_hash
        node.count = sum(_count(c) for c in node.children)
        if node.count <= self._shape.bucket_cap:
            return self._collapse(node, depth, prefix, updates)
        value = node.value()
        updates.append((node_id(depth, prefix), value))
        return node, _sha256(value).digest()

    def _build(
        self, bucket: bytes, depth: int, prefix: int, updates: list[NodeUpdate]
    ) -> tuple[Node, bytes]:
        """The canonical subtree at (depth, prefix) holding the records of a bucket value."""
        if len(bucket) <= self._shape.bucket_value_bytes_max:
            updates.append((node_id(depth, prefix), bucket if len(bucket) > 1 else None))
            return bucket, _sha256(bucket).digest()
        _check(depth < MAX_DEPTH, "more records than the cap share a full key hash")
        children: list[Node] = []
        hashes: list[bytes] = []
        for nib, part in enumerate(_split_bucket(bucket, depth)):
            child, child_hash = self._build(part, depth + 1, prefix * FANOUT + nib, updates)
            children.append(child)
            hashes.append(child_hash)
        inner = _Inner(children, hashes, len(bucket) // RECORD_BYTES)
        value = inner.value()
        updates.append((node_id(depth, prefix), value))
        return inner, _sha256(value).digest()

    def _collapse(
        self, node: _Inner, depth: int, prefix: int, updates: list[NodeUpdate]
    ) -> tuple[Node, bytes]:
        """Turn an inner node whose keys fit in one bucket back into that bucket."""
        parts = [TAG_BUCKET]
        for nib, child in enumerate(node.children):
            # Children were updated first, so each one already is a bucket (its count is <=
            # this node's); deleting their ids removes the whole old subtree.
            _check(isinstance(child, bytes), "collapsing node has an inner child")
            if isinstance(child, bytes):
                parts.append(child[1:])
            updates.append((node_id(depth + 1, prefix * FANOUT + nib), None))
        bucket = b"".join(parts)
        updates.append((node_id(depth, prefix), bucket))
        return bucket, _sha256(bucket).digest()

    # -- reading -----------------------------------------------------------------------------

    def get_value_hash(self, key: bytes) -> bytes | None:
        """The value hash recorded for ``key``, or None if absent."""
        kh = key_hash(key)
        bucket = self._bucket_of(kh, [])
        pos = _find_record(bucket, kh)
        return None if pos == -1 else bucket[pos + HASH_BYTES : pos + RECORD_BYTES]

    def prove(self, key: bytes) -> StateProof:
        """Inclusion proof if ``key`` is present, else a non-inclusion proof."""
        kh = key_hash(key)
        siblings: list[bytes] = []
        for depth in range(self._shape.min_depth):
            child_index = prefix_of(kh, depth + 1)
            start = (child_index >> 4) * ROW_BYTES
            row = bytes(self._levels[depth + 1][start : start + ROW_BYTES])
            cut = (child_index & 15) * HASH_BYTES
            siblings.append(row[:cut] + row[cut + HASH_BYTES :])
        bucket = self._bucket_of(kh, siblings)
        return StateProof(tuple(siblings), bucket[1:])

    def _bucket_of(self, kh: bytes, siblings: list[bytes]) -> bytes:
        """Walk below the fixed top to kh's bucket, appending sibling rows on the way."""
        depth = self._shape.min_depth
        node = self._slots[prefix_of(kh, depth)]
        while isinstance(node, _Inner):
            nib = nibble(kh, depth)
            siblings.append(b"".join(node.hashes[:nib] + node.hashes[nib + 1 :]))
            node = node.children[nib]
            depth += 1
        return node

    def nodes(self) -> Iterator[tuple[bytes, bytes]]:
        """Every stored (non-empty) node, for writing a whole tree (import, rebuild)."""
        min_depth = self._shape.min_depth
        for depth in range(min_depth):
            children = self._levels[depth + 1]
            for index in range(FANOUT**depth):
                start = index * ROW_BYTES
                value = TAG_INNER + children[start : start + ROW_BYTES]
                if value != self._empty[depth]:
                    yield node_id(depth, index), value
        for slot, node in enumerate(self._slots):
            yield from _subtree_nodes(node, min_depth, slot)


def _set_hash(level: bytearray, index: int, node_hash: bytes) -> None:
    start = index * HASH_BYTES
    level[start : start + HASH_BYTES] = node_hash


@functools.cache
def _fixed_node_ids(shape: TreeShape) -> tuple[list[list[bytes]], list[bytes]]:
    """Node ids of the fixed top and of the slots, computed once per shape (read-only)."""
    top = [[node_id(d, i) for i in range(FANOUT**d)] for d in range(shape.min_depth)]
    return top, [node_id(shape.min_depth, i) for i in range(shape.slots)]


def _check_entry_limits(key: bytes, value: bytes | None) -> None:
    if len(key) > MAX_STATE_KEY_BYTES:
        raise MerkleInvariantError(f"state key of {len(key)} bytes exceeds limit")
    if value is not None and len(value) > MAX_STATE_VALUE_BYTES:
        raise MerkleInvariantError(f"state value of {len(value)} bytes exceeds limit")


def _subtree_nodes(node: Node, depth: int, prefix: int) -> Iterator[tuple[bytes, bytes]]:
    if isinstance(node, bytes):
        if len(node) > 1:
            yield node_id(depth, prefix), node
        return
    yield node_id(depth, prefix), node.value()
    for nib, child in enumerate(node.children):
        yield from _subtree_nodes(child, depth + 1, prefix * FANOUT + nib)


# --------------------------------------------------------------------------------------------
# Node storage.
# --------------------------------------------------------------------------------------------


class NodeStore(Protocol):
    """Where node updates go. ``node/storage.py`` has the LMDB one; this module a dict one."""

    def get_node(self, node_id: bytes) -> bytes | None: ...

    def write_nodes(self, updates: Iterable[NodeUpdate]) -> None: ...


class MemoryNodeStore:
    """A dict of node id -> node value, for tests and pure use."""

    __slots__ = ("nodes",)

    def __init__(self) -> None:
        self.nodes: dict[bytes, bytes] = {}

    def get_node(self, node_id: bytes) -> bytes | None:
        return self.nodes.get(node_id)

    def write_nodes(self, updates: Iterable[NodeUpdate]) -> None:
        for nid, value in updates:
            if value is None:
                self.nodes.pop(nid, None)
            else:
                self.nodes[nid] = value


# --------------------------------------------------------------------------------------------
# Proofs from stored nodes, and verification.
# --------------------------------------------------------------------------------------------


class MissingNodeError(LookupError):
    """A stored node the path needs is absent or does not match its parent's hash."""


def prove_from_nodes(
    get_node: Callable[[bytes], bytes | None],
    key: bytes,
    root: bytes,
    shape: TreeShape = DEFAULT_SHAPE,
    get_bucket: Callable[[int, bytes], bytes] | None = None,
) -> StateProof:
    """Build a proof by walking stored nodes from the root (what a store's reader uses).

    A store may keep only inner nodes and derive buckets from its state entries: then
    ``get_bucket(depth, kh)`` returns the sorted records of the bucket at ``depth`` on the path
    of ``kh`` whenever ``get_node`` has no node there. Every node read is checked against
    ``root`` or the hash its parent records, so a corrupted store raises
    :class:`MissingNodeError` rather than producing a proof that fails.
    """
    empty = empty_node_values(shape)
    kh = key_hash(key)
    siblings: list[bytes] = []
    expected = root
    for depth in range(MAX_DEPTH + 1):
        stored = get_node(node_id(depth, prefix_of(kh, depth)))
        if stored is None:
            if depth < shape.min_depth:
                stored = empty[depth]
            elif get_bucket is not None:
                stored = TAG_BUCKET + get_bucket(depth, kh)
            else:
                stored = TAG_BUCKET
        if _sha256(stored).digest() != expected:
            raise MissingNodeError(f"stored node at depth {depth} does not match its parent")
        if stored[:1] == TAG_BUCKET and depth >= shape.min_depth:
            return StateProof(tuple(siblings), stored[1:])
        if stored[:1] != TAG_INNER or len(stored) != 1 + FANOUT * HASH_BYTES:
            raise MissingNodeError(f"stored node at depth {depth} is malformed")
        nib = nibble(kh, depth)
        row = stored[1:]
        expected = row[nib * HASH_BYTES : (nib + 1) * HASH_BYTES]
        siblings.append(row[: nib * HASH_BYTES] + row[(nib + 1) * HASH_BYTES :])
    raise MissingNodeError("path longer than a key hash")


def bucket_records(entries: Iterable[tuple[bytes, bytes]], kh: bytes, depth: int) -> bytes:
    """Sorted records of the entries whose key hash shares ``kh``'s first ``depth`` nibbles.

    For stores that derive buckets from state entries (see :func:`prove_from_nodes`).
    """
    path = prefix_of(kh, depth)
    records = []
    for key, value in entries:
        record_kh = key_hash(key)
        if prefix_of(record_kh, depth) == path:
            records.append(record_kh + value_hash(value))
    records.sort()
    return b"".join(records)


def verify_proof(
    root: bytes,
    key: bytes,
    value: bytes | None,
    proof: StateProof | bytes,
    shape: TreeShape = DEFAULT_SHAPE,
) -> bool:
    """True iff ``proof`` shows that under ``root``, ``key`` maps to ``value`` (None: absent).

    Needs nothing but its arguments (a light client's check). ``proof`` may be the encoded
    bytes; malformed bytes simply do not verify.
    """
    if isinstance(proof, bytes):
        try:
            proof = StateProof.from_wire(proof)
        except DecodeError:
            return False
    if len(root) != HASH_BYTES or len(key) > MAX_STATE_KEY_BYTES:
        return False
    depth = len(proof.siblings)
    bucket = proof.bucket
    if not shape.min_depth <= depth <= MAX_DEPTH:
        return False
    if len(bucket) % RECORD_BYTES or len(bucket) > shape.bucket_bytes_max:
        return False
    kh = key_hash(key)
    if not _records_are_canonical(bucket, kh, depth):
        return False
    bucket_value = TAG_BUCKET + bucket
    pos = _find_record(bucket_value, kh)
    if value is None:
        if pos != -1:
            return False
    elif pos == -1 or bucket_value[pos + HASH_BYTES : pos + RECORD_BYTES] != value_hash(value):
        return False
    node_hash = _sha256(bucket_value).digest()
    for d in range(depth - 1, -1, -1):
        row = proof.siblings[d]
        cut = nibble(kh, d) * HASH_BYTES
        node_hash = _sha256(TAG_INNER + row[:cut] + node_hash + row[cut:]).digest()
    return node_hash == root


def _records_are_canonical(bucket: bytes, kh: bytes, depth: int) -> bool:
    """Records strictly sorted and all on the path of ``kh`` to ``depth`` nibbles.

    Not needed for soundness (the root commits to the exact bytes) but it keeps one encoding
    per proof, and a wrong path is a cheap early "no".
    """
    path = prefix_of(kh, depth)
    previous = b""
    for pos in range(0, len(bucket), RECORD_BYTES):
        record_kh = bucket[pos : pos + HASH_BYTES]
        if record_kh <= previous or prefix_of(record_kh, depth) != path:
            return False
        previous = record_kh
    return True
