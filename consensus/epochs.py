"""Epochs: which validator set certifies which height.

Theory of operation
-------------------
Heights are cut into epochs by an :class:`EpochSchedule`: segments of epochs of one length.
Genesis gives one segment of ``epoch_length_blocks`` (epoch ``e`` holds heights
``e * L + 1 .. (e + 1) * L``; height 0, genesis, belongs to epoch 0); each governance change
of the length (``SetEpochLength``) appends a segment starting at an epoch boundary. A block of
epoch ``e`` is certified (its votes counted, its QCs checked, its leader chosen) by the set of
epoch ``e`` and by no other. A schedule of length 0 means one set for ever.

The set of epoch ``e + 2`` is fixed by executing the last block of epoch ``e`` (the staking
state machine computes it from the state after that block: top N by stake, jailed validators
out). Genesis fixes epochs 0 and 1. So a set is known a whole epoch before it votes: the p2p
layer pins the next set's keys in time for the new members to connect, and a replica that
executes behind its commits (catch-up) still checks the QCs of the next L blocks.

Why every honest replica agrees on the set of a height: the set of height ``h`` is a function
of the committed chain up to the last block of epoch ``epoch(h) - 2``, strictly below ``h``.
By induction on heights, honest replicas commit the same blocks below ``h`` (safety, see
``replica.py``) and execute them deterministically, so they derive the same set for ``h``.

A length change executed in epoch ``e`` starts at epoch ``e + 2``: the first epoch whose set is
not fixed yet. The schedule after the last block of ``e`` travels with the set of ``e + 2``
(``BlockExecuted.schedule``), so it is known exactly as early as that set, and it never moves
the heights of an epoch whose set is already known (:meth:`EpochSets.adopt_schedule` checks).
The argument above therefore covers it: which heights epoch ``e + 2`` holds is, like its set,
a function of the committed chain up to the last block of ``e``.

The one lookup: :meth:`EpochSets.for_height`. Everything that checks a QC or a vote (the
replica, sync, full nodes, the light client) goes through it.
"""

from __future__ import annotations

import dataclasses
import itertools

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


# A schedule holds at most this many segments (one per epoch-length change in the chain's
# life); governance refuses a change that would need more.
MAX_SCHEDULE_SEGMENTS = 64


@dataclasses.dataclass(frozen=True, slots=True)
class Segment:
    """Epochs ``first_epoch, first_epoch + 1, ...`` are ``length_blocks`` blocks each, the
    first of them starting at ``first_height``."""

    first_epoch: int
    first_height: int
    length_blocks: int


@dataclasses.dataclass(frozen=True, slots=True)
class EpochSchedule:
    """Epoch lengths over the chain's life: contiguous segments, in epoch order, the first
    starting at epoch 0 and height 1 (genesis), two neighbours never of one length (so two
    schedules that cut heights alike are equal). One segment of length 0: no epochs."""

    segments: tuple[Segment, ...]

    def __post_init__(self) -> None:
        check_schedule(self.segments)

    @classmethod
    def constant(cls, epoch_length_blocks: int) -> EpochSchedule:
        """Genesis: one length for ever (0: one set for ever)."""
        return cls((Segment(0, 1, epoch_length_blocks),))

    @property
    def has_epochs(self) -> bool:
        return self.segments[0].length_blocks > 0

    @property
    def genesis_length_blocks(self) -> int:
        return self.segments[0].length_blocks

    def segment_of_epoch(self, epoch: int) -> Segment:
        found = self.segments[0]
        for segment in self.segments:
            if segment.first_epoch > epoch:
                break
            found = segment
        return found

    def segment_of_height(self, height: int) -> Segment:
        found = self.segments[0]
        for segment in self.segments:
            if segment.first_height > height:
                break
            found = segment
        return found

    def epoch_of(self, height: int) -> int:
        """The epoch of ``height`` (height 0, genesis, is in epoch 0)."""
        segment = self.segment_of_height(height)
        if segment.length_blocks == 0 or height == 0:
            return 0
        return segment.first_epoch + (height - segment.first_height) // segment.length_blocks

    def first_height(self, epoch: int) -> int:
        segment = self.segment_of_epoch(epoch)
        return segment.first_height + (epoch - segment.first_epoch) * segment.length_blocks

    def last_height(self, epoch: int) -> int:
        return self.first_height(epoch) + self.length_of(epoch) - 1

    def length_of(self, epoch: int) -> int:
        return self.segment_of_epoch(epoch).length_blocks

    def is_epoch_end(self, height: int) -> bool:
        """True for the last block of an epoch: executing it fixes the set two epochs on."""
        if height == 0:
            return False
        segment = self.segment_of_height(height)
        length = segment.length_blocks
        return length > 0 and (height - segment.first_height + 1) % length == 0

    def changed_from(self, epoch: int, length_blocks: int) -> EpochSchedule:
        """Epochs from ``epoch`` on are ``length_blocks`` long (what was scheduled from
        ``epoch`` on is replaced). ``epoch`` >= 1: the epochs before it keep their heights."""
        check(self.has_epochs and epoch >= 1 and length_blocks >= 1, "bad epoch length change")
        start = self.first_height(epoch)
        kept = tuple(s for s in self.segments if s.first_epoch < epoch)
        if kept[-1].length_blocks != length_blocks:
            kept += (Segment(epoch, start, length_blocks),)
        return EpochSchedule(kept)

    def agrees_through(self, other: EpochSchedule, epoch: int) -> bool:
        """Both cut every epoch up to and including ``epoch`` into the same heights."""
        mine = [s for s in self.segments if s.first_epoch <= epoch]
        theirs = [s for s in other.segments if s.first_epoch <= epoch]
        return mine == theirs

    def to_obj(self) -> list[list[int]]:
        return [[s.first_epoch, s.first_height, s.length_blocks] for s in self.segments]

    @classmethod
    def from_obj(cls, obj: list[list[int]]) -> EpochSchedule:
        return cls(tuple(Segment(int(e), int(h), int(n)) for e, h, n in obj))


def check_schedule(segments: tuple[Segment, ...]) -> None:
    """Raises ValueError unless ``segments`` cut heights 1.. into contiguous epochs."""
    if not segments or len(segments) > MAX_SCHEDULE_SEGMENTS:
        raise ValueError(f"an epoch schedule has 1..{MAX_SCHEDULE_SEGMENTS} segments")
    first = segments[0]
    if (first.first_epoch, first.first_height) != (0, 1) or first.length_blocks < 0:
        raise ValueError("the first segment starts at epoch 0, height 1, length >= 0")
    if first.length_blocks == 0 and len(segments) > 1:
        raise ValueError("a schedule without epochs has one segment")
    for before, after in itertools.pairwise(segments):
        span = after.first_epoch - before.first_epoch
        if span < 1 or after.length_blocks < 1 or after.length_blocks == before.length_blocks:
            raise ValueError("segments go forward by whole epochs and change the length")
        if after.first_height != before.first_height + span * before.length_blocks:
            raise ValueError("a segment starts right after the previous one's last epoch")


class EpochSets:
    """The validator sets of the epochs this replica knows, by epoch number, and the epoch
    schedule that cuts heights into epochs.

    Sets are added in epoch order, each exactly once (a second, different set for an epoch
    would mean our execution diverged): :meth:`add` checks it. A schedule change arrives with
    the set it is handed over with and may only touch epochs whose set is not known yet.
    """

    __slots__ = ("_sets", "schedule")

    def __init__(self, schedule: EpochSchedule | int, sets: dict[int, ValidatorSet]) -> None:
        if isinstance(schedule, int):
            if schedule < 0:
                raise ValueError("epoch_length_blocks must be >= 0")
            schedule = EpochSchedule.constant(schedule)
        if not sets:
            raise ValueError("at least one epoch's set is needed")
        self.schedule = schedule
        self._sets: dict[int, ValidatorSet] = dict(sorted(sets.items()))

    @property
    def epoch_length_blocks(self) -> int:
        """The genesis epoch length (0: no epochs, one set for ever); later lengths are in
        :attr:`schedule`."""
        return self.schedule.genesis_length_blocks

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
        return self.schedule.epoch_of(height)

    def is_epoch_end(self, height: int) -> bool:
        return self.schedule.is_epoch_end(height)

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

    def add(
        self, epoch: int, validators: ValidatorSet, schedule: EpochSchedule | None = None
    ) -> bool:
        """Record the set of ``epoch`` (fixed by executing the last block of ``epoch - 2``)
        and, if given, the schedule in the state after that block. Returns True if the set
        was new. Keeps at most :data:`MAX_KNOWN_EPOCHS` sets."""
        check(self.schedule.has_epochs, "a fixed validator set has no epochs to add")
        if schedule is not None:
            self.adopt_schedule(schedule, epoch - 1)
        known = self._sets.get(epoch)
        if known is not None:
            check(known == validators, f"two different validator sets for epoch {epoch}")
            return False
        check(epoch == self.latest_epoch() + 1, f"epoch {epoch} set added out of order")
        self._sets[epoch] = validators
        while len(self._sets) > MAX_KNOWN_EPOCHS:
            del self._sets[next(iter(self._sets))]
        return True

    def adopt_schedule(self, schedule: EpochSchedule, fixed_through_epoch: int) -> None:
        """Take ``schedule``: it must cut every epoch up to ``fixed_through_epoch`` (those
        whose sets were handed over before it) as the one we have, or our execution
        diverged. Changes only ever apply to epochs whose set is not handed over yet."""
        check(
            self.schedule.agrees_through(schedule, fixed_through_epoch),
            f"an epoch schedule change reaches back to epoch {fixed_through_epoch} or before",
        )
        self.schedule = schedule

    def members(self, epochs: range) -> tuple[bytes, ...]:
        """Distinct keys of the known sets of ``epochs``, in epoch then set order."""
        seen: dict[bytes, None] = {}
        for epoch in epochs:
            validators = self._sets.get(epoch)
            if validators is not None:
                seen.update(dict.fromkeys(validators.keys))
        return tuple(seen)
