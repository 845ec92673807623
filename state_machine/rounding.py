"""Integer rounding shared by the exchange modules (re-exported by state_machine.invariants).

Rounding is always explicit and always in the exchange's favour: what a user owes is rounded up
(:func:`div_ceil`), what a user receives is rounded down (:func:`div_floor`). Both are exact for
negative numerators too (Python's ``//`` floors).

A module of its own so that the compiled build (nativebuild/modules.py) holds these helpers:
they run for every perp order placed and every fill, and ``state_machine.invariants`` stays
interpreted (mypyc cannot compile ``InvariantError``), where each call from compiled code cost
an interpreter frame.
"""

from __future__ import annotations

from typing import Final

PPM: Final = 1_000_000


def div_floor(num: int, den: int) -> int:
    """Floor of num / den for den > 0."""
    return num // den


def div_ceil(num: int, den: int) -> int:
    """Ceiling of num / den for den > 0."""
    return -((-num) // den)


def mul_ppm_ceil(amount: int, ppm: int) -> int:
    """amount * ppm / 1e6 rounded up (a charge)."""
    return -((-amount * ppm) // PPM)


def mul_ppm_floor(amount: int, ppm: int) -> int:
    """amount * ppm / 1e6 rounded down (a payout)."""
    return (amount * ppm) // PPM
