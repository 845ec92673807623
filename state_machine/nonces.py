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
    """

    __slots__ = ("_kept",)

    def __init__(self) -> None:
        self._kept: dict[bytes, array[int]] = {}

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
        else:
            i = bisect.bisect_left(kept, nonce)
            if i < n and kept[i] == nonce:
                return NonceCheck.USED
            if n >= KEPT_NONCES and nonce < kept[0]:
                return NonceCheck.TOO_LOW
            kept.insert(i, nonce)
        if n >= KEPT_NONCES:
            del kept[0]
        return NonceCheck.OK

    def kept(self, signer: bytes) -> tuple[int, ...]:
        return tuple(self._kept.get(signer, ()))

    def kept_list(self, signer: bytes) -> list[int]:
        """The signer's kept nonces, ascending, as a fresh list (empty if none)."""
        kept = self._kept.get(signer)
        return kept.tolist() if kept is not None else []

    def restore(self, signer: bytes, nonces: list[int]) -> None:
        """Load a signer's kept nonces (from storage); ``nonces`` need not be sorted."""
        self._kept[signer] = array("Q", sorted(set(nonces))[-KEPT_NONCES:])

    def signers(self) -> list[bytes]:
        return sorted(self._kept)
