"""Signature verification on a thread pool.

libsodium releases the GIL while it verifies (PyNaCl calls it through cffi), so verifying on
``threads`` worker threads scales across cores. Every check goes through the one
:func:`state_machine.crypto.verify`; this module only spreads the calls over threads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from state_machine.crypto import verify

SignatureItem = tuple[bytes, bytes, bytes]  # (public key, message, signature)

# Below this many items a thread hop costs more than it saves.
MIN_ITEMS_PER_CHUNK = 16


def default_threads() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _verify_chunk(items: Sequence[SignatureItem]) -> list[bool]:
    return [verify(pk, msg, sig) for pk, msg, sig in items]


class SignaturePool:
    """A fixed pool of verifier threads. ``verify_many`` keeps the input order in its answer."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads or default_threads()
        assert self.threads >= 1
        self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="perpbft-verify")

    def verify_many(self, items: Sequence[SignatureItem]) -> list[bool]:
        n = len(items)
        if n == 0:
            return []
        chunks = min(self.threads, max(1, n // MIN_ITEMS_PER_CHUNK))
        if chunks == 1:
            return _verify_chunk(items)
        size = -(-n // chunks)
        futures = [
            self._executor.submit(_verify_chunk, items[i : i + size]) for i in range(0, n, size)
        ]
        out: list[bool] = []
        for fut in futures:
            out.extend(fut.result())
        assert len(out) == n
        return out

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    def __enter__(self) -> SignaturePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def verify_many(items: Sequence[SignatureItem], threads: int | None = None) -> list[bool]:
    """Verify many signatures on a temporary pool; long-lived callers keep a SignaturePool."""
    with SignaturePool(threads) as pool:
        return pool.verify_many(items)
