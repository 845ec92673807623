"""Invariant checks that survive ``python -O``.

``assert`` disappears under ``-O``; our own invariants must not. A failed check means a bug in
this process (or more than a third of the voting power is Byzantine): the node must stop rather
than carry on with a state it cannot trust. Mistakes of peers are never checked this way: a bad
message is dropped, not raised.
"""

from __future__ import annotations


class ConsensusInvariantError(RuntimeError):
    """One of the core's own invariants does not hold. The driver must halt the node."""


def check(condition: bool, message: str) -> None:
    """Raise :class:`ConsensusInvariantError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ConsensusInvariantError(message)
