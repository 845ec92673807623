"""Transaction root of a block: an RFC 6962 (RFC 9162) Merkle tree over its transactions.

Leaves are byte strings in block order: in a block header (``consensus.types.payload_root``)
they are the transactions' bytes, so the root also commits to the signatures and a client
recomputes the tx id from the proven bytes (docs/ARCHITECTURE.md, "Transaction root").
``leaf = sha256(0x00 || leaf bytes)``, ``node = sha256(0x01 || left || right)``, the empty
tree hashes to ``sha256("")``. The tree is the RFC's left-balanced shape: it splits at the
largest power of two below the size, which is the same as pairing each level from the left
and carrying an unpaired last node up unchanged
(how :func:`_levels` builds it, in O(n) hashes).

A client proves its transaction was included with :func:`verify_inclusion` against the root in
a block header; the check is the RFC 9162 section 2.1.3.2 algorithm, tested against every
inclusion case of the transparency-dev vectors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import ClassVar

from state_machine.codec import U64, Bytes, ListOf, Wire, wire

HASH_BYTES = 32
MAX_TREE_DEPTH = 64  # sizes are u64, so no path is longer
MAX_TXS_PER_ROOT = 1 << 20  # far above any block; bounds the work of one call

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


@wire
class TxInclusionProof(Wire):
    """Audit path of the leaf at ``index`` in a tree of ``tree_size`` leaves, leaf to root."""

    MAX_BYTES: ClassVar[int] = 4096
    WIRE = (
        ("index", U64),
        ("tree_size", U64),
        ("path", ListOf(Bytes(exact=HASH_BYTES), MAX_TREE_DEPTH)),
    )
    index: int
    tree_size: int
    path: tuple[bytes, ...]


def _levels(tx_ids: Sequence[bytes]) -> list[list[bytes]]:
    """All levels of the tree, leaves first; an unpaired last node is carried up as is."""
    if len(tx_ids) > MAX_TXS_PER_ROOT:
        raise ValueError(f"{len(tx_ids)} transactions exceed the limit of {MAX_TXS_PER_ROOT}")
    level = [leaf_hash(t) for t in tx_ids]
    levels = [level]
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
        levels.append(level)
    return levels


def tx_root(tx_ids: Sequence[bytes]) -> bytes:
    """RFC 6962 Merkle tree hash of the transaction ids (in block order)."""
    if not tx_ids:
        return EMPTY_ROOT
    return _levels(tx_ids)[-1][0]


def inclusion_proof(tx_ids: Sequence[bytes], index: int) -> TxInclusionProof:
    """Audit path (RFC 6962 PATH) for the transaction at ``index``."""
    if not 0 <= index < len(tx_ids):
        raise IndexError(f"leaf index {index} outside a tree of {len(tx_ids)}")
    path: list[bytes] = []
    position = index
    for level in _levels(tx_ids)[:-1]:
        sibling = position ^ 1
        if sibling < len(level):  # else this node is carried up unpaired: no path element
            path.append(level[sibling])
        position >>= 1
    return TxInclusionProof(index, len(tx_ids), tuple(path))


def verify_inclusion(
    leaf: bytes, index: int, tree_size: int, path: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 2.1.3.2: True iff ``path`` proves leaf hash ``leaf`` at ``index`` under ``root``."""
    if index < 0 or index >= tree_size or len(path) > MAX_TREE_DEPTH:
        return False
    if len(leaf) != HASH_BYTES or len(root) != HASH_BYTES:
        return False
    fn = index
    sn = tree_size - 1
    r = leaf
    for p in path:
        if sn == 0 or len(p) != HASH_BYTES:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_tx_inclusion(tx_id: bytes, proof: TxInclusionProof, root: bytes) -> bool:
    """True iff ``proof`` shows transaction ``tx_id`` in the block whose tx root is ``root``."""
    return verify_inclusion(leaf_hash(tx_id), proof.index, proof.tree_size, proof.path, root)
