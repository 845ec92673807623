"""The epoch schedule (``consensus/epochs.py``): heights cut into epochs whose length governance
can change. Pure arithmetic, checked against a brute-force walk of the heights, and the rule
that a schedule change never moves an epoch whose set is already known."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus import BlockExecuted, ConsensusInvariantError, Replica, ValidatorSet
from consensus.epochs import (
    MAX_SCHEDULE_SEGMENTS,
    EpochSchedule,
    EpochSets,
    Segment,
    epoch_of,
    first_height,
    is_epoch_end,
)
from state_machine.crypto import Keypair, sha256
from tests.consensus.harness import config


def walk(schedule: EpochSchedule, heights: int) -> list[int]:
    """The epoch of each height 1..heights by counting blocks one at a time."""
    out: list[int] = []
    epoch, left = 0, schedule.length_of(0)
    for _ in range(heights):
        if left == 0:
            epoch += 1
            left = schedule.length_of(epoch)
        out.append(epoch)
        left -= 1
    return out


@st.composite
def schedules(draw: st.DrawFn) -> EpochSchedule:
    """A genesis length and a few changes, each made the way governance makes them: from an
    epoch at or after the last change's."""
    schedule = EpochSchedule.constant(draw(st.integers(1, 9)))
    epoch = 1
    for _ in range(draw(st.integers(0, 5))):
        epoch = draw(st.integers(epoch, epoch + 6))
        schedule = schedule.changed_from(max(epoch, 1), draw(st.integers(1, 9)))
    return schedule


@given(st.integers(0, 50), st.integers(0, 2_000))
def test_one_segment_is_the_constant_length_arithmetic(length: int, height: int) -> None:
    schedule = EpochSchedule.constant(length)
    assert schedule.epoch_of(height) == epoch_of(height, length)
    assert schedule.is_epoch_end(height) == is_epoch_end(height, length)
    if length:
        epoch = epoch_of(height, length)
        assert schedule.first_height(epoch) == first_height(epoch, length)


@settings(max_examples=300)
@given(schedules())
def test_every_height_is_in_exactly_one_epoch_contiguous_and_monotone(
    schedule: EpochSchedule,
) -> None:
    heights = 200
    expected = walk(schedule, heights)
    got = [schedule.epoch_of(h) for h in range(1, heights + 1)]
    assert got == expected  # each height in the epoch that counting blocks puts it in
    assert schedule.epoch_of(0) == 0
    for h in range(1, heights):
        assert got[h] - got[h - 1] in (0, 1)  # monotone, no epoch skipped
    for epoch in range(expected[-1]):
        first, last = schedule.first_height(epoch), schedule.last_height(epoch)
        assert [h for h in range(1, heights + 1) if got[h - 1] == epoch] == list(
            range(first, last + 1)
        )
        assert schedule.is_epoch_end(last) and not any(
            schedule.is_epoch_end(h) for h in range(first, last)
        )
        assert schedule.first_height(epoch + 1) == last + 1


@settings(max_examples=300)
@given(schedules(), st.integers(1, 40), st.integers(1, 9))
def test_a_change_keeps_every_epoch_before_it(
    schedule: EpochSchedule, epoch: int, length: int
) -> None:
    changed = schedule.changed_from(epoch, length)
    assert changed.agrees_through(schedule, epoch - 1)
    for e in range(epoch):
        assert changed.first_height(e) == schedule.first_height(e)
        assert changed.length_of(e) == schedule.length_of(e)
    for e in range(epoch, epoch + 5):
        assert changed.length_of(e) == length
    assert changed.first_height(epoch) == schedule.first_height(epoch)
    assert EpochSchedule.from_obj(changed.to_obj()) == changed


def test_a_change_to_the_length_in_force_adds_no_segment_and_cancels_a_pending_one() -> None:
    base = EpochSchedule.constant(5)
    assert base.changed_from(4, 5) == base
    pending = base.changed_from(4, 2)
    assert len(pending.segments) == 2
    assert pending.changed_from(4, 5) == base  # back to one segment: the record is deleted


def test_bad_schedules_are_refused() -> None:
    with pytest.raises(ValueError, match="epoch 0, height 1"):
        EpochSchedule((Segment(0, 2, 5),))
    with pytest.raises(ValueError, match="right after"):
        EpochSchedule((Segment(0, 1, 5), Segment(2, 12, 3)))
    with pytest.raises(ValueError, match="change the length"):
        EpochSchedule((Segment(0, 1, 5), Segment(2, 11, 5)))
    with pytest.raises(ValueError, match="without epochs"):
        EpochSchedule((Segment(0, 1, 0), Segment(2, 1, 5)))
    many = EpochSchedule.constant(1)
    for i in range(1, MAX_SCHEDULE_SEGMENTS):
        many = many.changed_from(i, 1 + i % 2)
    with pytest.raises(ValueError, match="segments"):
        many.changed_from(MAX_SCHEDULE_SEGMENTS, 1 + MAX_SCHEDULE_SEGMENTS % 2)


# ---- EpochSets and the replica take a schedule change with the hand-over ----------------------


def keys(n: int) -> list[Keypair]:
    return [Keypair(sha256(b"lengths-%d" % i)) for i in range(n)]


def test_epoch_sets_take_a_schedule_that_keeps_the_known_epochs() -> None:
    vs = ValidatorSet([(k.public_key, 1) for k in keys(4)])
    sets = EpochSets.from_genesis(4, vs)
    changed = sets.schedule.changed_from(2, 2)
    assert sets.add(2, vs, changed)  # handed over at the end of epoch 0 (height 4)
    assert sets.schedule == changed
    assert sets.epoch_of(9) == 2 and sets.epoch_of(11) == 3 and sets.is_epoch_end(10)
    with pytest.raises(ConsensusInvariantError, match="reaches back"):
        sets.add(3, vs, changed.changed_from(2, 3))  # would move epoch 2, whose set is known


def test_the_replica_learns_the_new_length_with_the_set_it_is_handed_over_with() -> None:
    """A replica that executes the last block of epoch 0 with the schedule change learns it;
    one whose driver reports a schedule on a block that ends no epoch is stopped."""
    ks = keys(4)
    vs = ValidatorSet([(k.public_key, 1) for k in ks])
    replica = Replica(config(), ks[0], EpochSets.from_genesis(2, vs))
    changed = replica.sets.schedule.changed_from(2, 5)
    assert replica.sets.schedule != changed
    # Pretend heights 1 and 2 are committed (the replica checks their hashes).
    replica._hashes[1], replica._hashes[2] = b"\x01" * 32, b"\x02" * 32
    replica.committed_height = 2
    with pytest.raises(ConsensusInvariantError, match="no epoch end"):
        replica.handle(BlockExecuted(1, b"\x01" * 32, b"\x00" * 32, None, changed))
    replica.executed_height = 1
    replica.handle(BlockExecuted(2, b"\x02" * 32, b"\x00" * 32, vs, changed))
    assert replica.sets.schedule == changed
    assert replica.sets.epoch_of(5) == 2 and replica.sets.epoch_of(10) == 3
