"""The simulator's ``epochs`` scenario covers what issue 16 asks of set changes: members added
and removed, the Byzantine validator jailed mid-run (out of every later set), the stake
majority moving between validators, Twins; and ``departed_set`` a hand-over to a disjoint set.
A scenario that silently stopped changing sets would still pass every run, so this checks the
schedules themselves over the seeds CI runs."""

from __future__ import annotations

import itertools

from tests.sim.cluster import Scenario
from tests.sim.mutants import departed_set
from tests.sim.scenarios import SetSchedule, make_scenario

SEEDS = range(30)
EPOCHS = range(2, 16)


def schedule_of(scenario: Scenario) -> SetSchedule:
    schedule = scenario.set_schedule
    assert isinstance(schedule, SetSchedule)
    return schedule


def majority_holders(members: list[tuple[int, int]]) -> frozenset[int]:
    """The smallest top-stake group holding more than 2/3 of the power."""
    total = sum(p for _, p in members)
    held, group = 0, set()
    for index, power in sorted(members, key=lambda m: -m[1]):
        group.add(index)
        held += power
        if 3 * held > 2 * total:
            break
    return frozenset(group)


def test_the_epochs_scenario_adds_removes_jails_and_moves_the_majority() -> None:
    added = removed = moved = jailed_mid_run = 0
    for seed in SEEDS:
        scenario = make_scenario("epochs", seed)
        assert list(scenario.twins.values()) == [0]  # a twin of the Byzantine validator
        schedule = schedule_of(scenario)
        sets = [dict(schedule(e)) for e in range(0, EPOCHS.stop)]
        for before, after in itertools.pairwise(sets):
            added += bool(set(after) - set(before))
            removed += bool(set(before) - set(after))
            moved += majority_holders(list(before.items())) != majority_holders(list(after.items()))
        for epoch, members in enumerate(sets):
            assert len(members) >= 4
            if 0 in members:
                assert 3 * members[0] < sum(members.values()), "the Byzantine key holds 1/3"
            if epoch >= schedule.jail_epoch:
                assert 0 not in members, "a jailed validator came back"
        jailed_mid_run += any(0 in s for s in sets[2 : schedule.jail_epoch])
    changes = len(SEEDS) * (len(EPOCHS) + 1)
    assert added > changes // 4 and removed > changes // 4, (added, removed)
    assert moved > changes // 4, moved
    assert jailed_mid_run > len(SEEDS) // 3, jailed_mid_run
    print(f"added {added} removed {removed} moved {moved} of {changes}; jailed {jailed_mid_run}")


def test_the_departed_set_scenario_hands_over_to_a_disjoint_set() -> None:
    scenario = departed_set(0)
    schedule = scenario.set_schedule
    assert schedule is not None
    assert not {i for i, _ in schedule(1)} & {i for i, _ in schedule(2)}
