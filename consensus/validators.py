"""One epoch's validator set and its stake-weighted leader rotation.

A set is an ordered list of ``(key, voting power)``: the order (genesis order, or the order the
staking state machine lists an epoch's active set in) fixes leader rotation and the order of
signatures in a QC. Voting power is stake: quorums are more than 2/3 of the total power, never
of the count. Which set certifies which height is decided in ``consensus/epochs.py``. Nothing
here iterates over a hash-ordered container.

Leader rotation is smooth weighted round robin (as in nginx's upstream balancer) over one cycle
of ``sum(weights)`` views: each validator leads in proportion to its weight, and its turns are
spread out rather than bunched (a validator with half the stake leads every other view, not
half a cycle in a row, so a crashed heavy validator costs one timeout in two, not a long run of
doubling timeouts). Weights are the powers divided by their greatest common divisor, so equal
powers give plain round robin by view (``keys[view % n]``). Powers whose reduced sum exceeds
:data:`MAX_SCHEDULE_VIEWS` are first scaled to that many slots (each validator at least one):
the rotation's shares are then exact to 1/4096 of the stake, the quorum arithmetic stays exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from consensus.check import check
from consensus.types import MAX_VALIDATORS

MAX_SCHEDULE_VIEWS = 4_096


class ValidatorSet:
    """Ordered ``(32-byte public key, voting power)`` pairs with quorum arithmetic.

    A quorum is strictly more than 2/3 of the total power; "more than 1/3" is the smallest power
    that must contain an honest validator when at most a third is faulty.
    """

    __slots__ = ("_index", "_schedule", "keys", "powers", "total_power")

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
        self._schedule = leader_schedule(rotation_weights(self.powers))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ValidatorSet):
            return NotImplemented
        return self.keys == other.keys and self.powers == other.powers

    def __hash__(self) -> int:
        return hash((self.keys, self.powers))

    def members(self) -> tuple[tuple[bytes, int], ...]:
        return tuple(zip(self.keys, self.powers, strict=True))

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def index_of(self, key: bytes) -> int:
        return self._index[key]

    def power_of(self, key: bytes) -> int:
        """Voting power of ``key``; 0 for a key that is not in this set."""
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
        """Stake-weighted round robin by view (module comment). View 0 has no leader."""
        check(view > 0, "view 0 has no leader")
        return self.keys[self._schedule[view % len(self._schedule)]]


def rotation_weights(powers: Sequence[int]) -> tuple[int, ...]:
    """Leader weights: powers reduced by their gcd, scaled down to at most
    :data:`MAX_SCHEDULE_VIEWS` slots when larger (every validator keeps at least one)."""
    divisor = math.gcd(*powers)
    weights = [p // divisor for p in powers]
    total = sum(weights)
    if total > MAX_SCHEDULE_VIEWS:
        weights = [max(1, w * MAX_SCHEDULE_VIEWS // total) for w in weights]
        divisor = math.gcd(*weights)
        weights = [w // divisor for w in weights]
    return tuple(weights)


def leader_schedule(weights: Sequence[int]) -> tuple[int, ...]:
    """One cycle of smooth weighted round robin: at each step every index gains its weight, the
    highest (lowest index on ties) leads and pays back the total. Index ``i`` leads exactly
    ``weights[i]`` times per cycle; equal weights give ``0, 1, ..., n - 1``."""
    total = sum(weights)
    current = [0] * len(weights)
    schedule: list[int] = []
    for _ in range(total):
        for i, w in enumerate(weights):
            current[i] += w
        pick = max(range(len(weights)), key=lambda i: (current[i], -i))
        current[pick] -= total
        schedule.append(pick)
    return tuple(schedule)
