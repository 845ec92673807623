"""Invariant checks that survive ``python -O``.

``assert`` disappears under ``-O``; the transport's own invariants (queue bounds, registry
consistency) must hold in production too, so they go through :func:`check`. A failed check is a
bug in perpbft, never a peer's fault: hostile input is handled with counters and closed
connections, not with checks.
"""

from __future__ import annotations

from state_machine.invariants import InvariantError as SharedInvariantError
from state_machine.invariants import check as shared_check


class InvariantError(SharedInvariantError, AssertionError):
    """One of our own invariants does not hold: a bug, not bad input."""


def check(condition: bool, message: str) -> None:
    """The project's one helper (state_machine.invariants.check) with the transport's error."""
    shared_check(condition, message, InvariantError)
