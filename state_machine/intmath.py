"""Integer rounding helpers (re-exported by state_machine/invariants.py, their documented home).

They live in their own module so that the compiled build (nativebuild/) can compile them:
``invariants.py`` stays interpreted (``InvariantError`` derives from ``RuntimeError``, which a
native class cannot), and a compiled module calling a helper of an interpreted one makes a
Python-level call, and reads ``PPM`` from a module dictionary, at every use. Compiled modules
import these names from here; everything else may keep importing them from invariants.

Rounding is always explicit and always in the exchange's favour: what a user owes is rounded up
(:func:`div_ceil`), what a user receives is rounded down (:func:`div_floor`). Both are exact for
negative numerators too (Python's ``//`` floors).
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
