"""Invariant checks and integer rounding shared by the exchange modules.

Users' mistakes are result codes; a failed :func:`check` is *our* bug (a broken invariant), so
it raises :class:`InvariantError` (or the subclass its caller names), which the node treats
as fatal. ``assert`` is
not used for these because ``python -O`` strips it.

Rounding is always explicit and always in the exchange's favour: what a user owes is rounded up
(:func:`div_ceil`), what a user receives is rounded down (:func:`div_floor`). Both are exact for
negative numerators too (Python's ``//`` floors).
"""

from __future__ import annotations

# The rounding helpers are defined in state_machine/intmath.py (so the compiled build can
# compile them) and exported from here as before.
from state_machine.intmath import PPM as PPM
from state_machine.intmath import div_ceil as div_ceil
from state_machine.intmath import div_floor as div_floor
from state_machine.intmath import mul_ppm_ceil as mul_ppm_ceil
from state_machine.intmath import mul_ppm_floor as mul_ppm_floor


class InvariantError(RuntimeError):
    """An internal invariant does not hold (a bug, never a user's or a peer's mistake)."""


def check(cond: bool, msg: str, error: type[InvariantError] = InvariantError) -> None:
    """Raise ``error(msg)`` unless ``cond``; survives ``python -O``.

    The one invariant helper of the project: the state machine uses it as is, and consensus,
    p2p, the trie and the node's storage pass their own subclass of :class:`InvariantError`
    (``consensus.check``, ``p2p.check``...), so that a failure says whose invariant broke.
    """
    if not cond:
        raise error(msg)
