"""Deterministic cluster simulator for the consensus core (test tooling).

``python -m tests.sim --scenario NAME --seed N [--trace]`` replays one run exactly;
``--seeds A..B`` runs a range. See ``tests/sim/cluster.py``.
"""

from tests.sim.cluster import Scenario, Simulation, SimulationFailure
from tests.sim.scenarios import SCENARIOS, make_scenario

__all__ = ["SCENARIOS", "Scenario", "Simulation", "SimulationFailure", "make_scenario"]
