"""Invariant checks that survive ``python -O``.

``assert`` disappears under ``-O``; our own invariants must not. A failed check means a bug in
this process (or more than a third of the voting power is Byzantine): the node must stop rather
than carry on with a state it cannot trust. Mistakes of peers are never checked this way: a bad
message is dropped, not raised.
"""

from __future__ import annotations

from state_machine.invariants import InvariantError
from state_machine.invariants import check as shared_check


class ConsensusInvariantError(InvariantError):
    """One of the core's own invariants does not hold. The driver must halt the node."""


def check(condition: bool, message: str) -> None:
    """Raise :class:`ConsensusInvariantError` with ``message`` unless ``condition`` holds
    (the project's one helper, state_machine.invariants.check)."""
    shared_check(condition, message, ConsensusInvariantError)
