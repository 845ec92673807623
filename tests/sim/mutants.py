"""Broken replicas and a broken application, each aimed at one checker of the simulator.

A checker that never fails proves nothing. Each mutant below breaks one rule the way a real
bug would, and ``tests/consensus/test_mutants.py`` asserts that the checker meant to catch it
does so within a bounded number of seeds, while the real replica survives the same seeds.

* :class:`VotesBeforePersisting`: sends its votes before the PersistSafety that records them
  (a driver that writes the safety record after answering). Caught by the persistence check.
* :class:`VotesTwice`: accepts a second, different proposal of a view and votes for it too.
  Caught by the evidence check (evidence names an honest validator) under Twins.
* :class:`NoLock`: ignores the lock (``safe_node`` always true). Caught by the safety check
  under :func:`twin_stale_leaders` (Twins of a leader that withholds DECIDE).
* :class:`NoHandOver`: lets a QC of a lower height (possibly another epoch's set) release the
  lock. Caught by ``tests/consensus/test_epochs.py``, which replays the cross-epoch attack, and
  by the simulator's safety check under :func:`departed_set` (a forger of the new set holding
  the keys of the set that left).
* :class:`NondeterministicKV`: an application whose state root depends on something local to
  the node (an instance number, standing for a PID, a clock or a hash seed) once a block holds
  more than two transactions. Caught by the state-root check.
"""

from __future__ import annotations

import dataclasses
import itertools
import random

from consensus import Action, BlockExecuted, PersistSafety, Replica
from consensus.types import Block, Proposal
from tests.sim.app import KVApp
from tests.sim.byzantine import DepartedSetForger, StaleLeader
from tests.sim.cluster import Scenario
from tests.sim.scenarios import make_scenario


class VotesBeforePersisting(Replica):
    """Carries out every other action of a list before its PersistSafety actions."""

    def handle(self, event: object) -> list[Action]:
        actions = super().handle(event)  # type: ignore[arg-type]
        persists = [a for a in actions if isinstance(a, PersistSafety)]
        return [a for a in actions if not isinstance(a, PersistSafety)] + persists


class VotesTwice(Replica):
    """Votes for every valid proposal of a view, not only the first one it saw."""

    def _may_vote(self, last_voted_view: int, view: int) -> bool:
        return True

    def _equivocating_proposal(self, p: Proposal, block_hash: bytes) -> bool:
        super()._equivocating_proposal(p, block_hash)  # still reports the leader
        return False


class NoLock(Replica):
    """Votes for any valid proposal, ignoring the lock (``safe_node`` and the hand-over rule,
    which also guards the lock, disabled)."""

    def _safe_node(self, extends_locked_block: bool, justify_view: int, locked_view: int) -> bool:
        return True

    def _hand_over_safe(
        self, extends_locked_block: bool, justify_height: int, locked_height: int
    ) -> bool:
        return True


class NoHandOver(Replica):
    """Lets any later-view justify QC release its lock, whatever its height (the hand-over
    rule ``safety.hand_over_safe`` disabled): a QC of the previous epoch's set for an older
    block can then unlock a block of the new epoch."""

    def _hand_over_safe(
        self, extends_locked_block: bool, justify_height: int, locked_height: int
    ) -> bool:
        return True


_instances = itertools.count()


class NondeterministicKV(KVApp):
    """Mixes a per-node value into the root of blocks with more than two transactions."""

    def __init__(self) -> None:
        super().__init__()
        self.local = next(_instances)

    def copy(self) -> KVApp:
        other = NondeterministicKV()
        other.kv, other.root, other.height = dict(self.kv), self.root, self.height
        return other

    def apply(self, block: Block) -> bytes:
        root = super().apply(block)
        if len(block.payload) > 2:
            self.kv[b"local"] = b"%d" % self.local
            mixed = int.from_bytes(root, "big") ^ self.local
            self.root = root = mixed.to_bytes(32, "big")
        return root


def twin_stale_leaders(seed: int) -> Scenario:
    """The ``stale`` scenario (seven validators, 0 and 1 Byzantine leaders that withhold DECIDE
    and then propose on a stale tip) with a twin of validator 0 (node 7, same key, same
    behaviour), so the conflicting proposals also come from two machines under one key."""
    scenario = make_scenario("stale", seed)
    scenario.name = "stale-twins"  # not in SCENARIOS: replay it through this function
    scenario.twins = {7: 0}
    scenario.node_classes = {0: StaleLeader, 1: StaleLeader, 7: StaleLeader}
    return scenario


DEPARTED_FAULT_END_MS = 40_000.0


def departed_set(seed: int) -> Scenario:
    """A hand-over to a disjoint set: validators 0..3 (genesis, epochs 0 and 1) leave at epoch
    2 for 4..7. Validator 4 is a :class:`DepartedSetForger` (a quarter of the new stake) that
    holds the departed keys (they count as Byzantine: at no stake they may sign anything); 5, 6
    and 7 are honest but propose nothing until the faults end (their views time out), so the
    forger leads both the first block of epoch 2 and the view of its forged QC. The real
    replica is safe here (and live once 5..7 propose again); one without the hand-over rule
    forks at the epoch's first height."""
    rng = random.Random(seed)
    length = rng.randint(3, 5)

    def schedule(epoch: int) -> list[tuple[int, int]]:
        return [(i, 1) for i in range(4)] if epoch < 2 else [(i, 1) for i in range(4, 8)]

    silent = (0.0, DEPARTED_FAULT_END_MS)
    return Scenario(
        "departed-set",  # not in SCENARIOS: replay it through this function
        validators=4,
        candidates=4,
        byzantine=frozenset({0, 1, 2, 3, 4}),
        delay_ms=(0.5, rng.uniform(2, 20)),
        duplicate=rng.uniform(0.0, 0.05),
        silent={5: silent, 6: silent, 7: silent},
        node_classes={4: DepartedSetForger},
        fault_end_ms=DEPARTED_FAULT_END_MS,
        epoch_length_blocks=length,
        set_schedule=schedule,
        min_new_blocks=2 * length,
    )


class IgnoresSchedule(Replica):
    """Takes the handed-over sets but drops the epoch schedule that comes with them (keeps
    the genesis length for ever): after a governance length change it counts votes of a height
    in the wrong epoch's set. Caught under the ``epoch_length`` scenario."""

    def _learn_next_set(self, event: BlockExecuted) -> None:
        super()._learn_next_set(dataclasses.replace(event, schedule=None))
