"""Replay protection without strict sequences (DESIGN section 3).

A nonce is a client-chosen u64; milliseconds since the epoch are the convention, so independent
clients sharing a key rarely collide and never have to agree on a counter. For each signer we
keep the ``KEPT_NONCES`` (128) highest nonces accepted so far. A new nonce is accepted iff

1. it is not among the kept nonces (no replay inside the window),
2. when 128 are kept, it is greater than the smallest kept one (anything at or below it may
   have been used and evicted, so it must be refused), and
3. it lies strictly inside (block_time - 2 days, block_time + 1 day).

Rule 3 bounds how far an attacker can push a signer's window and lets the tracker forget a
signer whose window has moved past. The tracker is pure: time is passed in.

Invariant: an accepted nonce is never accepted again for the same signer.  Proof sketch: after
acceptance it is kept; it leaves the kept set only by eviction as the smallest, after which
every later acceptance must be strictly greater than the then-smallest kept (>= it).
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import MutableSequence, Sequence
from enum import StrEnum

KEPT_NONCES = 128
# From 2**32 on, msgpack writes a (u64) nonce as 0xcf and 8 big-endian bytes.
WIDE_NONCE = 1 << 32
WIDE_ITEM_BYTES = 9
WINDOW_PAST_MS = 2 * 24 * 3600 * 1000
WINDOW_FUTURE_MS = 1 * 24 * 3600 * 1000


class NonceCheck(StrEnum):
    OK = "ok"
    USED = "nonce_used"
    TOO_LOW = "nonce_too_low"
    OUT_OF_WINDOW = "nonce_out_of_window"


def check_nonce_window(nonce: int, block_time_ms: int) -> bool:
    """Rule 3: the nonce lies strictly inside (block time - 2 days, block time + 1 day)."""
    return block_time_ms - WINDOW_PAST_MS < nonce < block_time_ms + WINDOW_FUTURE_MS


def check_nonce_against_kept(nonce: int, kept: Sequence[int]) -> NonceCheck:
    """Rules 1 and 2 against one signer's sorted kept nonces."""
    i = bisect.bisect_left(kept, nonce)
    if i < len(kept) and kept[i] == nonce:
        return NonceCheck.USED
    if len(kept) >= KEPT_NONCES and nonce < kept[0]:
        return NonceCheck.TOO_LOW
    return NonceCheck.OK


def insert_nonce(kept: MutableSequence[int], nonce: int) -> None:
    """Record an accepted nonce, evicting the smallest if more than KEPT_NONCES are kept."""
    bisect.insort(kept, nonce)
    if len(kept) > KEPT_NONCES:
        del kept[0]
    assert len(kept) <= KEPT_NONCES


class NonceTracker:
    """The 128 highest accepted nonces of every signer.

    Each signer's nonces sit in an ``array('Q')`` (nonces are u64 on the wire): the state
    entry of a signer is rewritten whenever it transacts, and serialising a list of 128 int
    objects scattered over the heap cost a cache miss per nonce; the array is one block.

    The state value of a signer (the msgpack array of its kept nonces) is rewritten in every
    block it transacts in, and packing 128 ints cost more than the rest of its transaction's
    bookkeeping. While every kept nonce of a signer is wide (>= 2**32: millisecond times are),
    each is 9 bytes of the array's encoding, so ``_packed`` keeps those items' bytes and an
    accepted new highest nonce appends 9 bytes (and drops the evicted first 9); any other
    change forgets them, and :meth:`kept_msgpack` makes them again from the array.
    tests/foundation/test_nonces.py checks the bytes against msgpack's packing of kept_list.
    """

    __slots__ = ("_kept", "_packed")

    def __init__(self) -> None:
        self._kept: dict[bytes, array[int]] = {}
        # signer -> the msgpack items of its kept nonces (no array header), all wide
        self._packed: dict[bytes, bytes] = {}

    def check(self, signer: bytes, nonce: int, block_time_ms: int) -> NonceCheck:
        if not check_nonce_window(nonce, block_time_ms):
            return NonceCheck.OUT_OF_WINDOW
        kept = self._kept.get(signer)
        if kept is None:
            return NonceCheck.OK
        return check_nonce_against_kept(nonce, kept)

    def accept(self, signer: bytes, nonce: int, block_time_ms: int) -> NonceCheck:
        """Check and, if acceptable, record the nonce. Returns the check's result."""
        # The same rules as check() and insert_nonce(), in one function: this runs for every
        # transaction of every block.
        if not block_time_ms - WINDOW_PAST_MS < nonce < block_time_ms + WINDOW_FUTURE_MS:
            return NonceCheck.OUT_OF_WINDOW
        kept = self._kept.get(signer)
        if kept is None:
            self._kept[signer] = array("Q", (nonce,))
            return NonceCheck.OK
        n = len(kept)
        if n and nonce > kept[-1]:  # the usual case: a new highest nonce
            kept.append(nonce)
            items = self._packed.get(signer)
            if items is not None:  # all wide, and so is a higher nonce
                if n >= KEPT_NONCES:
                    items = items[WIDE_ITEM_BYTES:]
                self._packed[signer] = items + b"\xcf" + nonce.to_bytes(8, "big")
        else:
            i = bisect.bisect_left(kept, nonce)
            if i < n and kept[i] == nonce:
                return NonceCheck.USED
            if n >= KEPT_NONCES and nonce < kept[0]:
                return NonceCheck.TOO_LOW
            kept.insert(i, nonce)
            self._packed.pop(signer, None)
        if n >= KEPT_NONCES:
            del kept[0]
        return NonceCheck.OK

    def kept(self, signer: bytes) -> tuple[int, ...]:
        return tuple(self._kept.get(signer, ()))

    def kept_list(self, signer: bytes) -> list[int]:
        """The signer's kept nonces, ascending, as a fresh list (empty if none)."""
        kept = self._kept.get(signer)
        return kept.tolist() if kept is not None else []

    def kept_msgpack(self, signer: bytes) -> bytes | None:
        """The msgpack of :meth:`kept_list` (canonical, as codec.encode packs it) when the
        signer keeps nonces and all are wide, else None (the caller packs kept_list)."""
        kept = self._kept.get(signer)
        if not kept or kept[0] < WIDE_NONCE:  # ascending: the first is the smallest
            return None
        items = self._packed.get(signer)
        if items is None:
            items = b"".join([b"\xcf" + x.to_bytes(8, "big") for x in kept])
            self._packed[signer] = items
        n = len(kept)
        # fixarray up to 15 items, else array 16 (KEPT_NONCES is far below 2**16)
        head = bytes((0x90 | n,)) if n < 16 else b"\xdc" + n.to_bytes(2, "big")
        return head + items

    def restore(self, signer: bytes, nonces: list[int]) -> None:
        """Load a signer's kept nonces (from storage); ``nonces`` need not be sorted."""
        self._kept[signer] = array("Q", sorted(set(nonces))[-KEPT_NONCES:])
        self._packed.pop(signer, None)

    def signers(self) -> list[bytes]:
        return sorted(self._kept)
