"""The simulator's ``epoch_length`` scenario: governance changes the epoch length under the
``epochs`` faults. Its runs must really cross length changes (a scenario whose changes never
reach the committed chain would pass vacuously), every replica must end with the chain's
schedule, and a replica that drops the handed-over schedule must be caught."""

from __future__ import annotations

from consensus import Replica
from tests.consensus.test_mutants import first_failure, survives, with_replica
from tests.sim import Simulation, make_scenario
from tests.sim.mutants import IgnoresSchedule

SEEDS = range(4)


def test_runs_cross_length_changes_and_every_replica_learns_the_schedule() -> None:
    crossed = 0
    for seed in SEEDS:
        scenario = make_scenario("epoch_length", seed)
        assert len(scenario.length_changes) >= 2
        sim = Simulation(scenario, seed).run()
        top = max(n.committed_height for n in sim.nodes if n.honest)
        schedule = sim.schedule
        starts = [s.first_height for s in schedule.segments[1:]]
        crossed += sum(1 for h in starts if h <= top)
        assert any(h <= top for h in starts), (seed, top, schedule)
        for node in sim.nodes:
            if node.honest and node.replica is not None and node.committed_height == top:
                known = node.replica.sets.latest_epoch()
                assert node.replica.sets.schedule.agrees_through(schedule, known)
    assert crossed >= len(SEEDS)


def test_a_replica_that_drops_the_handed_over_schedule_is_caught() -> None:
    exc = first_failure(with_replica("epoch_length", IgnoresSchedule), 6)
    assert "invariant" in exc.reason or "differ" in exc.reason, exc.reason
    survives(with_replica("epoch_length", Replica), 2)
