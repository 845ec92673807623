"""Epochs: which validator set certifies which height.

Theory of operation
-------------------
Heights are cut into epochs of ``epoch_length_blocks`` blocks (a genesis parameter): epoch
``e`` holds heights ``e * L + 1 .. (e + 1) * L``; height 0 (genesis) belongs to epoch 0. A
block of epoch ``e`` is certified (its votes counted, its QCs checked, its leader chosen) by
the set of epoch ``e`` and by no other. ``epoch_length_blocks == 0`` means one set for ever.

The set of epoch ``e + 2`` is fixed by executing the last block of epoch ``e`` (the staking
state machine computes it from the state after that block: top N by stake, jailed validators
out). Genesis fixes epochs 0 and 1. So a set is known a whole epoch before it votes: the p2p
layer pins the next set's keys in time for the new members to connect, and a replica that
executes behind its commits (catch-up) still checks the QCs of the next L blocks.

Why every honest replica agrees on the set of a height: the set of height ``h`` is a function
of the committed chain up to the last block of epoch ``epoch(h) - 2``, strictly below ``h``.
By induction on heights, honest replicas commit the same blocks below ``h`` (safety, see
``replica.py``) and execute them deterministically, so they derive the same set for ``h``.

The one lookup: :meth:`EpochSets.for_height`. Everything that checks a QC or a vote (the
replica, sync, full nodes, the light client) goes through it.
"""

from __future__ import annotations

from consensus.check import check
from consensus.validators import ValidatorSet

# Sets kept in memory: enough for the current, the next and a stretch of past epochs (QCs of
# recent heights arrive late; older ones are only checked when syncing, from stored state).
MAX_KNOWN_EPOCHS = 16


def epoch_of(height: int, epoch_length_blocks: int) -> int:
    """The epoch of ``height`` (genesis and, with no epochs, every height: epoch 0)."""
    if epoch_length_blocks == 0 or height == 0:
        return 0
    return (height - 1) // epoch_length_blocks


def is_epoch_end(height: int, epoch_length_blocks: int) -> bool:
    """True for the last block of an epoch: executing it fixes the set two epochs on."""
    return epoch_length_blocks > 0 and height > 0 and height % epoch_length_blocks == 0


def first_height(epoch: int, epoch_length_blocks: int) -> int:
    return epoch * epoch_length_blocks + 1


class EpochSets:
    """The validator sets of the epochs this replica knows, by epoch number.

    Sets are added in epoch order, each exactly once (a second, different set for an epoch
    would mean our execution diverged): :meth:`add` checks it.
    """

    __slots__ = ("_sets", "epoch_length_blocks")

    def __init__(self, epoch_length_blocks: int, sets: dict[int, ValidatorSet]) -> None:
        if epoch_length_blocks < 0:
            raise ValueError("epoch_length_blocks must be >= 0")
        if not sets:
            raise ValueError("at least one epoch's set is needed")
        self.epoch_length_blocks = epoch_length_blocks
        self._sets: dict[int, ValidatorSet] = dict(sorted(sets.items()))

    @classmethod
    def fixed(cls, validators: ValidatorSet) -> EpochSets:
        """One set for every height (no epochs)."""
        return cls(0, {0: validators})

    @classmethod
    def from_genesis(cls, epoch_length_blocks: int, validators: ValidatorSet) -> EpochSets:
        """Genesis fixes epochs 0 and 1 (with no epochs: epoch 0, which is every height)."""
        if epoch_length_blocks == 0:
            return cls.fixed(validators)
        return cls(epoch_length_blocks, {0: validators, 1: validators})

    def epoch_of(self, height: int) -> int:
        return epoch_of(height, self.epoch_length_blocks)

    def for_epoch(self, epoch: int) -> ValidatorSet | None:
        return self._sets.get(epoch)

    def for_height(self, height: int) -> ValidatorSet | None:
        """The set that certifies ``height``, or None if not known (yet, or any more)."""
        return self._sets.get(self.epoch_of(height))

    def at_or_before(self, epoch: int) -> ValidatorSet:
        """The known set of the latest epoch <= ``epoch`` (the oldest known if none is)."""
        best = next(iter(self._sets.values()))
        for known_epoch, validators in self._sets.items():
            if known_epoch <= epoch:
                best = validators
        return best

    def latest_epoch(self) -> int:
        return next(reversed(self._sets))

    def add(self, epoch: int, validators: ValidatorSet) -> bool:
        """Record the set of ``epoch`` (fixed by executing the last block of ``epoch - 2``).
        Returns True if it was new. Keeps at most :data:`MAX_KNOWN_EPOCHS` sets."""
        check(self.epoch_length_blocks > 0, "a fixed validator set has no epochs to add")
        known = self._sets.get(epoch)
        if known is not None:
            check(known == validators, f"two different validator sets for epoch {epoch}")
            return False
        check(epoch == self.latest_epoch() + 1, f"epoch {epoch} set added out of order")
        self._sets[epoch] = validators
        while len(self._sets) > MAX_KNOWN_EPOCHS:
            del self._sets[next(iter(self._sets))]
        return True

    def members(self, epochs: range) -> tuple[bytes, ...]:
        """Distinct keys of the known sets of ``epochs``, in epoch then set order."""
        seen: dict[bytes, None] = {}
        for epoch in epochs:
            validators = self._sets.get(epoch)
            if validators is not None:
                seen.update(dict.fromkeys(validators.keys))
        return tuple(seen)
