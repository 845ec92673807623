"""The validator set and leader election.

Validators and their voting power come from genesis and do not change (no staking module yet).
The set is an ordered list: the order is genesis order, which fixes leader rotation and the order
of signatures in a QC. Nothing here iterates over a hash-ordered container.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from consensus.check import check
from consensus.types import MAX_VALIDATORS


class ValidatorSet:
    """Ordered ``(32-byte public key, voting power)`` pairs with quorum arithmetic.

    A quorum is strictly more than 2/3 of the total power; "more than 1/3" is the smallest power
    that must contain an honest validator when at most a third is faulty.
    """

    __slots__ = ("_index", "keys", "powers", "total_power")

    def __init__(self, validators: Sequence[tuple[bytes, int]]) -> None:
        if not 1 <= len(validators) <= MAX_VALIDATORS:
            raise ValueError(f"a validator set has 1..{MAX_VALIDATORS} members")
        keys: list[bytes] = []
        powers: list[int] = []
        index: dict[bytes, int] = {}
        for key, power in validators:
            if len(key) != 32:
                raise ValueError("validator keys are 32-byte Ed25519 public keys")
            if power <= 0:
                raise ValueError("voting power must be positive")
            if key in index:
                raise ValueError(f"duplicate validator {key.hex()}")
            index[key] = len(keys)
            keys.append(bytes(key))
            powers.append(power)
        self.keys: tuple[bytes, ...] = tuple(keys)
        self.powers: tuple[int, ...] = tuple(powers)
        self.total_power: int = sum(powers)
        self._index = index

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def index_of(self, key: bytes) -> int:
        return self._index[key]

    def power_of(self, key: bytes) -> int:
        """Voting power of ``key``; 0 for a key that is not a genesis validator."""
        i = self._index.get(key)
        return 0 if i is None else self.powers[i]

    def power_of_set(self, keys: Iterable[bytes]) -> int:
        """Power of the distinct validators among ``keys`` (unknown keys count 0)."""
        return sum(self.power_of(k) for k in set(keys))

    def is_quorum(self, power: int) -> bool:
        """More than 2/3 of the total power (exact integer arithmetic)."""
        return 3 * power > 2 * self.total_power

    def exceeds_one_third(self, power: int) -> bool:
        return 3 * power > self.total_power

    def leader(self, view: int) -> bytes:
        """Round robin by view over genesis order. View 0 is genesis and has no leader."""
        check(view > 0, "view 0 has no leader")
        return self.keys[view % len(self.keys)]
