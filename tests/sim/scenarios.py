"""Scenario generators: one fault kind per name, drawn from a seed.

``make_scenario(name, seed)`` is deterministic: the scenario's own random choices come from a
``random.Random`` seeded with the name and the seed (string seeds hash with SHA-512, not with
Python's salted ``hash``), and the run itself uses ``random.Random(seed)``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from tests.sim import exchange_app
from tests.sim.byzantine import StaleLeader
from tests.sim.cluster import CHAIN_ID, GENESIS_TIME_MS, Partition, Scenario, validator_key

FAULT_END_MS = 8_000.0


def _random_groups(rng: random.Random, nodes: list[int]) -> list[frozenset[int]]:
    shuffled = nodes[:]
    rng.shuffle(shuffled)
    cuts = sorted(rng.sample(range(1, len(nodes)), rng.randint(1, min(2, len(nodes) - 1))))
    groups, start = [], 0
    for cut in [*cuts, len(nodes)]:
        groups.append(frozenset(shuffled[start:cut]))
        start = cut
    return groups


def _partitions(rng: random.Random, nodes: list[int], count: int, end: float) -> list[Partition]:
    out = []
    for _ in range(count):
        start = rng.uniform(0, end - 500)
        stop = min(end, start + rng.uniform(300, 4_000))
        out.append(Partition(start, stop, _random_groups(rng, nodes)))
    return out


def _validators(rng: random.Random) -> int:
    return rng.choice((4, 4, 7))


def clean(rng: random.Random) -> Scenario:
    return Scenario("clean", validators=_validators(rng), delay_ms=(0.5, rng.uniform(1, 30)))


def lossy(rng: random.Random) -> Scenario:
    return Scenario(
        "lossy",
        validators=_validators(rng),
        delay_ms=(0.5, rng.uniform(5, 200)),
        drop=rng.uniform(0.02, 0.25),
        duplicate=rng.uniform(0.0, 0.2),
    )


def partition(rng: random.Random) -> Scenario:
    n = _validators(rng)
    return Scenario(
        "partition",
        validators=n,
        delay_ms=(0.5, rng.uniform(2, 50)),
        drop=rng.uniform(0.0, 0.05),
        partitions=_partitions(rng, list(range(n)), rng.randint(1, 4), FAULT_END_MS),
    )


def crash(rng: random.Random) -> Scenario:
    n = _validators(rng)
    crashes = []
    for _ in range(rng.randint(1, 4)):
        at = rng.uniform(0, FAULT_END_MS - 1_000)
        crashes.append((rng.randrange(n), at, at + rng.uniform(50, 5_000)))
    # One crash window per node at a time: drop overlapping windows of the same node.
    crashes.sort(key=lambda c: c[1])
    kept: list[tuple[int, float, float]] = []
    for c in crashes:
        if all(k[0] != c[0] or k[2] < c[1] for k in kept):
            kept.append(c)
    return Scenario(
        "crash",
        validators=n,
        delay_ms=(0.5, rng.uniform(2, 40)),
        drop=rng.uniform(0.0, 0.05),
        crashes=kept,
    )


OUTAGE_VIEW_TIMEOUT_BASE_MS = 1_500
OUTAGE_VIEW_TIMEOUT_CAP_MS = 60_000
OUTAGE_RECOVERY_WINDOW_MS = 2 * OUTAGE_VIEW_TIMEOUT_BASE_MS


def outage(rng: random.Random, outage_ms: float | None = None) -> Scenario:
    """Two of four validators crash together and stay down long enough for the survivors'
    view timeouts to double many times (up to a one-minute cap), then both come back.

    The quorum is back when they restart: the first commit must follow within about one base
    view timeout, however long the survivors' current timeout has grown
    (``recovery_window_ms``: two base timeouts, room for one view that fails fast, e.g. when
    its leader lacks the block of its high QC; ``outage_ms`` fixes the length of the outage).
    """
    n = 4
    down = rng.sample(range(n), 2)
    at = rng.uniform(500, 3_000)
    back = at + (outage_ms if outage_ms is not None else rng.uniform(15_000, 90_000))
    return Scenario(
        "outage",
        validators=n,
        delay_ms=(0.5, rng.uniform(2, 40)),
        crashes=[(down[0], at, back), (down[1], at, back)],
        view_timeout_base_ms=OUTAGE_VIEW_TIMEOUT_BASE_MS,
        view_timeout_cap_ms=OUTAGE_VIEW_TIMEOUT_CAP_MS,
        recovery_window_ms=OUTAGE_RECOVERY_WINDOW_MS,
    )


def skew(rng: random.Random) -> Scenario:
    n = _validators(rng)
    drift = 1_000
    return Scenario(
        "skew",
        validators=n,
        delay_ms=(0.5, rng.uniform(2, 40)),
        skew_ms={i: rng.randint(-drift // 3, drift // 3) for i in range(n)},
        max_clock_drift_ms=drift,
    )


def silent(rng: random.Random) -> Scenario:
    """One validator never proposes: until the faults end, or (half the seeds) for ever.

    A leader silent for ever is a fault that never heals, so the liveness check then asks
    that the others keep committing around it, one timed-out view in every n.
    """
    n = _validators(rng)
    who = rng.randrange(n)
    end = FAULT_END_MS if rng.random() < 0.5 else math.inf
    return Scenario(
        "silent",
        validators=n,
        delay_ms=(0.5, rng.uniform(2, 40)),
        silent={who: (0.0, end)},
        byzantine=frozenset(),
    )


def twins(rng: random.Random) -> Scenario:
    """Validator 0 runs twice with the same key (node n); partitions shuffle who hears whom."""
    n = _validators(rng)
    nodes = list(range(n + 1))
    partitions: list[Partition] = []
    t = 0.0
    while t < FAULT_END_MS:
        length = rng.uniform(200, 2_000)
        partitions.append(Partition(t, min(FAULT_END_MS, t + length), _random_groups(rng, nodes)))
        t += length
    return Scenario(
        "twins",
        validators=n,
        twins={n: 0},
        byzantine=frozenset({0}),
        delay_ms=(0.5, rng.uniform(2, 30)),
        drop=rng.uniform(0.0, 0.1),
        partitions=partitions,
    )


def equivocate(rng: random.Random) -> Scenario:
    """Validator 0 sends different proposals to different peers whenever it leads."""
    n = _validators(rng)
    return Scenario(
        "equivocate",
        validators=n,
        byzantine=frozenset({0}),
        equivocators=frozenset({0}),
        delay_ms=(0.5, rng.uniform(2, 30)),
        drop=rng.uniform(0.0, 0.15),
        partitions=_partitions(rng, list(range(n)), rng.randint(0, 2), FAULT_END_MS),
    )


def stale(rng: random.Random) -> Scenario:
    """Seven validators, two of them Byzantine leaders in a row (0 and 1, see
    ``byzantine.StaleLeader``): 0 withholds its DECIDE from all but one validator, 1 then
    proposes a conflicting block on the old tip. Only the lock rule stops the fork."""
    return Scenario(
        "stale",
        validators=7,
        byzantine=frozenset({0, 1}),
        node_classes={0: StaleLeader, 1: StaleLeader},
        delay_ms=(0.5, rng.uniform(2, 60)),
        drop=rng.uniform(0.0, 0.1),
        partitions=_partitions(rng, list(range(7)), rng.randint(0, 2), FAULT_END_MS),
    )


def mixed(rng: random.Random) -> Scenario:
    """Everything at once, with one Byzantine validator (twins or equivocator)."""
    n = _validators(rng)
    byzantine_twins = rng.random() < 0.5
    nodes = list(range(n + (1 if byzantine_twins else 0)))
    crashes = []
    at = rng.uniform(0, FAULT_END_MS - 1_000)
    crashes.append((rng.randrange(1, n), at, at + rng.uniform(50, 3_000)))
    return Scenario(
        "mixed",
        validators=n,
        twins={n: 0} if byzantine_twins else {},
        byzantine=frozenset({0}),
        equivocators=frozenset() if byzantine_twins else frozenset({0}),
        delay_ms=(0.5, rng.uniform(2, 80)),
        drop=rng.uniform(0.0, 0.15),
        duplicate=rng.uniform(0.0, 0.1),
        partitions=_partitions(rng, nodes, rng.randint(1, 3), FAULT_END_MS),
        crashes=crashes,
        skew_ms={i: rng.randint(-300, 300) for i in nodes},
    )


def exchange(rng: random.Random) -> Scenario:
    """The real exchange state machine behind consensus, with loss, a crash and an equivocating
    leader: every honest node must reach the same exchange state digest at every height."""
    n = 4
    at = rng.uniform(0, FAULT_END_MS - 1_000)
    scenario = Scenario(
        "exchange",
        validators=n,
        byzantine=frozenset({0}),
        equivocators=frozenset({0}),
        delay_ms=(0.5, rng.uniform(2, 40)),
        drop=rng.uniform(0.0, 0.1),
        duplicate=rng.uniform(0.0, 0.1),
        crashes=[(rng.randrange(1, n), at, at + rng.uniform(50, 3_000))],
    )
    keys = [validator_key(i).public_key for i in range(n)]
    exchange_app.configure(scenario, CHAIN_ID, keys, GENESIS_TIME_MS)
    return scenario


class SetSchedule:
    """Validator sets that change every ``change_every`` epochs: members drawn from the whole
    pool (added and removed), random powers (so the stake majority moves), the Byzantine key 0
    kept below 1/3 of every set it is in and jailed (out for good) from ``jail_epoch`` on.
    Deterministic in (``base``, epoch): every node derives the same set, as from chain state."""

    def __init__(self, base: int, pool: int, change_every: int, jail_epoch: int) -> None:
        self.base = base
        self.pool = pool
        self.change_every = change_every
        self.jail_epoch = jail_epoch

    def __call__(self, epoch: int) -> list[tuple[int, int]]:
        if epoch < 2:
            return [(i, 1) for i in range(4)]  # genesis: keys 0..3, equal power
        rng = random.Random(self.base * 1_000_003 + epoch // self.change_every)
        size = rng.randint(4, self.pool)
        members = sorted(rng.sample(range(self.pool), size))
        powers = {i: rng.randint(1, 8) for i in members}
        if 0 in powers:
            powers[0] = 1
            if epoch >= self.jail_epoch or 3 * powers[0] >= sum(powers.values()):
                del powers[0]
        if len(powers) < 4:  # keep at least four members (and three honest ones)
            for i in range(1, self.pool):
                if len(powers) < 4 and i not in powers:
                    powers[i] = rng.randint(1, 8)
        return sorted(powers.items())


def epochs(rng: random.Random) -> Scenario:
    """Validator-set changes every one to three epochs of three to six blocks, from a pool of
    six or seven keys, with Twins of validator 0 (jailed mid-run), partitions, loss and a
    crash: safety and liveness across many hand-overs, restarts in the middle of them, and
    catch-up of nodes that were out of the set or down for several set changes."""
    pool = rng.choice((6, 7))
    nodes = list(range(pool + 1))
    partitions = _partitions(rng, nodes, rng.randint(1, 4), FAULT_END_MS)
    crashes = []
    at = rng.uniform(0, FAULT_END_MS - 1_000)
    crashes.append((rng.randrange(1, pool), at, at + rng.uniform(50, 6_000)))
    schedule = SetSchedule(rng.getrandbits(48), pool, rng.randint(1, 3), rng.randint(3, 8))
    length = rng.randint(3, 6)
    return Scenario(
        "epochs",
        validators=4,
        candidates=pool - 4,
        twins={pool: 0},
        byzantine=frozenset({0}),
        delay_ms=(0.5, rng.uniform(2, 40)),
        drop=rng.uniform(0.0, 0.1),
        duplicate=rng.uniform(0.0, 0.05),
        partitions=partitions,
        crashes=crashes,
        epoch_length_blocks=length,
        set_schedule=schedule,
        min_new_blocks=6 * length,  # at least five hand-overs after the faults healed
    )


def epoch_length(rng: random.Random) -> Scenario:
    """``epochs`` with governance changing the epoch length two to four times (from the
    epoch after next, handed over with that epoch's set), down to one block per epoch and up
    to eight: replicas that learn the new length late (partitioned, crashed, catching up) must
    still agree on every height's set."""
    scenario = epochs(rng)
    scenario.name = "epoch_length"
    changes: list[tuple[int, int]] = []
    epoch = 1
    for _ in range(rng.randint(2, 4)):
        epoch += rng.randint(1, 4)
        changes.append((epoch, rng.randint(1, 8)))
    scenario.length_changes = tuple(changes)
    longest = max([scenario.epoch_length_blocks, *(n for _, n in changes)])
    scenario.min_new_blocks = 6 * longest
    return scenario


SCENARIOS: dict[str, Callable[[random.Random], Scenario]] = {
    "clean": clean,
    "lossy": lossy,
    "partition": partition,
    "crash": crash,
    "outage": outage,
    "skew": skew,
    "silent": silent,
    "twins": twins,
    "equivocate": equivocate,
    "stale": stale,
    "mixed": mixed,
    "exchange": exchange,
    "epochs": epochs,
    "epoch_length": epoch_length,
}


def make_scenario(name: str, seed: int) -> Scenario:
    if name not in SCENARIOS:
        raise KeyError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    rng = random.Random(f"{name}:{seed}")
    scenario = SCENARIOS[name](rng)
    scenario.fault_end_ms = FAULT_END_MS
    return scenario
