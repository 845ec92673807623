"""Invariant checks that survive ``python -O``.

``assert`` disappears under ``-O``; the transport's own invariants (queue bounds, registry
consistency) must hold in production too, so they go through :func:`check`. A failed check is a
bug in perpbft, never a peer's fault: hostile input is handled with counters and closed
connections, not with checks.
"""

from __future__ import annotations


class InvariantError(AssertionError):
    """One of our own invariants does not hold: a bug, not bad input."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise InvariantError(message)
