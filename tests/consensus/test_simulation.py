"""Seeded cluster simulations across every fault kind (see ``tests/sim``).

Each case is one scenario and one seed; a failure message carries the seed, the replay command
and the end of the event trace. ``python -m tests.sim --seeds 0..10000 --jobs 2`` is the long run.
"""

from __future__ import annotations

import random
import re

import pytest

from consensus import Replica, SetTimer, TimerKind
from consensus.epochs import epoch_of
from tests.sim import SCENARIOS, Simulation, make_scenario
from tests.sim.cluster import SimulationFailure, validator_key
from tests.sim.mutants import NoLock
from tests.sim.scenarios import OUTAGE_RECOVERY_WINDOW_MS, outage

SEEDS_PER_SCENARIO = 30
# Validator-set changes every few epochs (joins, departures, Twins jailed mid-run, stake moving
# the majority) with partitions, loss and crashes: the bar is 2,000 seeds in every CI
# run (about 0.2 s of CPU each); the 10,000-seed run is in docs/ARCHITECTURE.md, "Long run".
SEEDS_BY_SCENARIO = {"epochs": 2_000, "epoch_length": 200}
CASES = [
    (name, seed)
    for name in sorted(SCENARIOS)
    for seed in range(SEEDS_BY_SCENARIO.get(name, SEEDS_PER_SCENARIO))
]


@pytest.mark.parametrize(("name", "seed"), CASES)
def test_scenario_seed(name: str, seed: int) -> None:
    sim = Simulation(make_scenario(name, seed), seed).run()
    honest = [n for n in sim.nodes if n.honest]
    assert all(n.committed_height >= 2 for n in honest)
    # The checkers saw every commit of every honest node at each height.
    assert len(sim.commits) >= min(n.committed_height for n in honest)


# Seeds that once failed, kept as regressions (scenario, seed): the reason is in the comment.
REGRESSIONS = [
    ("crash", 2929),  # every holder of a prepared block crashed: it must be in the safety data
    # After an outage the leader of the first view back had missed the DECIDE of the block of
    # its (everyone's) high QC: it must ask a peer that holds that QC, up to the QC's height.
    ("outage", 85),
    ("outage", 393),
    # A node outside the set, whose sync request was lost in a partition, stood in one view
    # for ever (it cannot check the QCs that would move it): a request may be resent on each
    # view timeout.
    ("epochs", 1091),
]


@pytest.mark.parametrize(("name", "seed"), REGRESSIONS)
def test_regression_seed(name: str, seed: int) -> None:
    Simulation(make_scenario(name, seed), seed).run()


def stable_repr(obj: object) -> str:
    return re.sub(r" at 0x[0-9a-f]+", "", repr(obj))  # objects without a repr of their own


def trace_digest(sim: Simulation) -> list[tuple[float, int, str, str, list[str]]]:
    return [
        (t, node, what, stable_repr(obj), [stable_repr(a) for a in actions])
        for t, node, what, obj, actions in sim.trace
    ]


@pytest.mark.parametrize(("name", "seed"), [("epochs", 7), ("twins", 3), ("mixed", 11)])
def test_the_memos_change_no_event(name: str, seed: int) -> None:
    """The shared decode and signature memos that make CI's thousands of seeds affordable
    are caches of pure functions: the run with them is the run without them, event for
    event, action for action, commit for commit."""
    with_memos = Simulation(make_scenario(name, seed), seed).run()
    without = Simulation(make_scenario(name, seed), seed, memos=False).run()
    assert trace_digest(with_memos) == trace_digest(without)
    assert with_memos.commits == without.commits
    assert with_memos.roots == without.roots


def test_exchange_scenario_trades_and_agrees() -> None:
    """The real exchange state machine runs behind consensus: orders fill, and every honest
    node ends with the same exchange state digest at the same height."""
    sim = Simulation(make_scenario("exchange", 3), 3).run()
    honest = [n for n in sim.nodes if n.honest]
    assert all(n.app.fills > 0 for n in honest)
    by_height: dict[int, set[bytes]] = {}
    for n in honest:
        by_height.setdefault(n.app.height, set()).add(n.app.root)
    assert all(len(roots) == 1 for roots in by_height.values())


def longest_view_timer_before_ms(sim: Simulation, before_ms: float) -> int:
    return max(
        a.delay_ms
        for t, _, _, _, actions in sim.trace
        if t < before_ms
        for a in actions
        if isinstance(a, SetTimer) and a.kind == TimerKind.VIEW
    )


@pytest.mark.parametrize("outage_ms", [6_000, 20_000, 60_000, 180_000])
def test_commits_resume_within_a_base_view_timeout_however_far_the_backoff_grew(
    outage_ms: int,
) -> None:
    """Two of four validators crash together for ``outage_ms``; the survivors' view timeout
    doubles meanwhile (from 1.5 s up to the one-minute cap). From the restart, when the quorum
    is back, to the next commit takes about one base view timeout (at most two: the scenario's
    ``recovery_window_ms``), whatever the survivors' timeout had grown to."""
    recoveries = []
    for seed in range(6):
        scenario = outage(random.Random(f"outage-length:{seed}"), outage_ms=outage_ms)
        scenario.fault_end_ms = 0.0
        sim = Simulation(scenario, seed).run()
        assert sim.recovery_ms is not None and sim.healed_at_ms is not None
        backoff_ms = longest_view_timer_before_ms(sim, sim.healed_at_ms)
        assert backoff_ms >= min(outage_ms / 2, scenario.view_timeout_cap_ms)
        recoveries.append(sim.recovery_ms)
    assert max(recoveries) <= OUTAGE_RECOVERY_WINDOW_MS
    print(
        f"\noutage {outage_ms / 1000:.0f} s (survivors' timeout grew to >= "
        f"{backoff_ms / 1000:.0f} s): quorum back -> next commit "
        f"{min(recoveries):.0f}..{max(recoveries):.0f} ms"
    )


def test_same_seed_replays_identically() -> None:
    a = Simulation(make_scenario("mixed", 7), 7).run()
    b = Simulation(make_scenario("mixed", 7), 7).run()
    assert a.format_trace() == b.format_trace()
    c = Simulation(make_scenario("mixed", 8), 8).run()
    assert a.format_trace() != c.format_trace()


def test_simulator_catches_a_replica_without_the_lock_rule() -> None:
    """The checkers can fail: with the lock rule disabled on every honest replica, the
    'stale' scenario (Byzantine leaders that withhold DECIDE and then propose a conflicting
    block) produces a fork within 20 seeds, while the real replica survives the same seeds
    (they are part of ``test_scenario_seed``)."""
    caught = []
    for seed in range(20):
        scenario = make_scenario("stale", seed)
        scenario.replica_cls = NoLock
        try:
            Simulation(scenario, seed).run()
        except SimulationFailure as exc:
            if "liveness" not in exc.reason:
                caught.append((seed, exc.reason))
                assert f"seed={seed}" in str(exc)
                assert "replay: python -m tests.sim --scenario stale" in str(exc)
                break
    assert caught, "disabling the lock rule went unnoticed"
    reason = caught[0][1]
    assert reason.startswith("safety:") or "two commit QCs" in reason


class NeverProposes(Replica):
    """Test-only: a leader that never proposes."""

    def _try_propose(self) -> None:
        return


def test_liveness_checker_fails_when_no_leader_proposes() -> None:
    """The liveness checker can fail too."""
    scenario = make_scenario("clean", 0)
    scenario.replica_cls = NeverProposes
    scenario.liveness_window_ms = 20_000
    with pytest.raises(SimulationFailure, match="liveness"):
        Simulation(scenario, 0).run()


# ---- validator-set changes -------------------------------------------------------------------


def executed_height_before(sim: Simulation, node_ids: set[int], before_ms: float) -> int:
    heights: list[int] = [
        event.height
        for t, node, what, event, _ in sim.trace
        if what == "executed" and node in node_ids and t < before_ms
    ]
    return max([0, *heights])


def test_epochs_scenario_changes_the_set_many_times_and_jails_the_twin() -> None:
    """The 'epochs' seeds (30 of them run in test_scenario_seed) really hand over: several
    distinct sets certify the committed chain, and the Byzantine twin's key is out of every
    set from its jail epoch on."""
    for seed in range(3):
        scenario = make_scenario("epochs", seed)
        sim = Simulation(scenario, seed).run()
        top = max(n.committed_height for n in sim.nodes if n.honest)
        length = scenario.epoch_length_blocks
        sets = {sim.set_of_epoch(epoch_of(h, length)) for h in range(1, top + 1)}
        assert len(sets) >= 3, (seed, top, length)
        assert scenario.set_schedule is not None
        jail = scenario.set_schedule.jail_epoch  # type: ignore[attr-defined]
        twin = validator_key(0).public_key
        assert all(twin not in sim.set_of_epoch(e) for e in range(jail, epoch_of(top, length)))


# Seeds whose sets give node 1 less than a third of the stake while it is down (with more, the
# others rightly stall until it is back, and there is no hand-over to catch up on).
@pytest.mark.parametrize("seed", [2, 3, 5, 6, 8])
def test_a_node_down_for_several_set_changes_catches_up_and_votes_again(seed: int) -> None:
    """Node 1 crashes for eighteen seconds while the others hand over two or more times; on
    restart it restores the sets of its stored tip, syncs across the hand-overs (learning each
    next set by executing) and ends level with the others. (No twins here: with one of four
    genesis validators down, a Byzantine one could stall the chain, as it may.)"""
    scenario = make_scenario("epochs", seed)
    scenario.twins = {}
    scenario.byzantine = frozenset()
    scenario.partitions = []
    scenario.drop = 0.0
    scenario.crashes = [(1, 2_000.0, 20_000.0)]
    scenario.epoch_length_blocks = 3
    sim = Simulation(scenario, seed).run()
    length = scenario.epoch_length_blocks
    own = executed_height_before(sim, {1}, 20_000.0)
    others = executed_height_before(sim, {2, 3}, 20_000.0)
    assert epoch_of(others, length) - epoch_of(own, length) >= 2, (own, others, length)
    top = max(n.committed_height for n in sim.nodes if n.honest)
    assert sim.nodes[1].committed_height >= top - 1
