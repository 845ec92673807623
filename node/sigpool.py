"""Signature verification on a thread pool.

libsodium releases the GIL while it verifies (PyNaCl calls it through cffi), so verifying on
``threads`` worker threads scales across cores. Every check goes through the one
:func:`state_machine.crypto.verify`; this module only spreads the calls over threads.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import trio

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
        chunks = _chunks(items, self.threads)
        if len(chunks) == 1:
            return _verify_chunk(items)
        futures = [self._executor.submit(_verify_chunk, chunk) for chunk in chunks]
        return _joined([fut.result() for fut in futures], n)

    async def verify_async(self, items: Sequence[SignatureItem]) -> list[bool]:
        """``verify_many`` for a trio task: the chunks go straight to the pool's threads and
        the task sleeps until the last one is done, instead of a trio worker thread that hands
        them to the pool and blocks on them (one thread hop instead of two per batch). Like
        ``trio.to_thread.run_sync``, a cancel waits for the checks already started."""
        n = len(items)
        if n == 0:
            return []
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        futures = [
            self._executor.submit(_verify_chunk, chunk) for chunk in _chunks(items, self.threads)
        ]
        pending = [len(futures)]

        def count_down() -> None:  # in the trio thread
            pending[0] -= 1
            if pending[0] == 0:
                done.set()

        def finished(_: Future[list[bool]]) -> None:  # in a pool thread
            # A run that ended (shutdown) has nobody waiting for the answer.
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(count_down)

        for fut in futures:
            fut.add_done_callback(finished)
        with trio.CancelScope(shield=True):
            await done.wait()
        return _joined([fut.result() for fut in futures], n)

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    def __enter__(self) -> SignaturePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _chunks(items: Sequence[SignatureItem], threads: int) -> list[Sequence[SignatureItem]]:
    """The items cut in at most ``threads`` runs of at least MIN_ITEMS_PER_CHUNK, in order."""
    n = len(items)
    count = min(threads, max(1, n // MIN_ITEMS_PER_CHUNK))
    size = -(-n // count)
    return [items[i : i + size] for i in range(0, n, size)]


def _joined(parts: list[list[bool]], n: int) -> list[bool]:
    out = [ok for part in parts for ok in part]
    if len(out) != n:
        raise AssertionError(f"{len(out)} verdicts for {n} signatures")
    return out


def verify_many(items: Sequence[SignatureItem], threads: int | None = None) -> list[bool]:
    """Verify many signatures on a temporary pool; long-lived callers keep a SignaturePool."""
    with SignaturePool(threads) as pool:
        return pool.verify_many(items)
