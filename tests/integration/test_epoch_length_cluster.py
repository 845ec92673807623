"""Governance changes the epoch length on a real four-validator localnet with staking on:
the validators pass ``perpbft gov propose`` of kind ``epoch_length`` (signed with their node
keys), every node starts the new length at the same boundary (the first epoch whose set was
not fixed when it ran), keeps committing across the new boundaries with the same blocks and
state roots, and a validator that was down across the change restarts from its stored state
(the schedule is read back from it), catches up and agrees. The cluster audits every node's
stored state at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from state_machine.governance.params import GovernanceParams
from state_machine.staking.genesis import StakingGenesis
from tests.cluster import Cluster
from tests.integration.test_gov_cluster import gov_cli

pytestmark = pytest.mark.slow

USDC = 1_000_000
EPOCH_BLOCKS = 10
NEW_LENGTH = 4
STAKING = StakingGenesis(
    epoch_length_blocks=EPOCH_BLOCKS,
    min_self_stake_atoms=1_000 * USDC,
    unbonding_blocks=20 * EPOCH_BLOCKS,
    jail_blocks=4 * EPOCH_BLOCKS,
)
# Long enough for three CLI votes (each a process start) at 5 blocks/s.
GOVERNANCE = GovernanceParams(voting_period_blocks=60, execution_delay_blocks=2)


def pass_epoch_length(cluster: Cluster, tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "epoch_length.json"
    path.write_text('{"kind": "epoch_length", "length_blocks": ' + str(NEW_LENGTH) + "}")
    answer = gov_cli(cluster, 0, "propose", str(path), "--title", "shorter epochs")
    (result,) = answer["results"]
    assert result["code"] == "ok", result
    pid = int(result["order_id"])
    for validator in (0, 1, 2):
        vote = gov_cli(cluster, validator, "vote", str(pid), "yes")
        assert vote["results"][0]["code"] == "ok", vote
    shown: dict[str, Any] = {}

    def executed() -> bool:
        shown.update(cluster.get(3, f"/v1/gov/proposals/{pid}"))
        return bool(shown["status"] == "executed")

    cluster.wait_for(executed, f"proposal {pid} executed", timeout_s=120)
    assert shown["content_kind"] == "epoch_length"
    assert shown["content"] == {"length_blocks": NEW_LENGTH}
    return shown


def header_root(cluster: Cluster, i: int, height: int) -> str:
    block = cluster.block(i, height)
    return str(block["header"]["state_root"])


def epoch_start_heights(cluster: Cluster, i: int) -> list[int]:
    return sorted({int(r["height"]) for r in cluster.log_lines(i, "epoch_started")})


def test_a_governed_epoch_length_applies_at_its_boundary_on_every_node(tmp_path: Path) -> None:
    with Cluster(tmp_path, staking=STAKING, governance=GOVERNANCE) as cluster:
        cluster.start_all()
        cluster.wait_height(2)
        shown = pass_epoch_length(cluster, tmp_path)
        executed_at = int(shown["execute_height"])
        staking = cluster.get(3, "/v1/staking")
        old, new = staking["epoch_schedule"]
        first_epoch = (executed_at - 1) // EPOCH_BLOCKS + 2
        first_height = first_epoch * EPOCH_BLOCKS + 1
        assert old == {"first_epoch": 0, "first_height": 1, "length_blocks": EPOCH_BLOCKS}
        assert new == {
            "first_epoch": first_epoch,
            "first_height": first_height,
            "length_blocks": NEW_LENGTH,
        }
        # Node 2 goes down now and stays down across the new boundary (the others, three of
        # four equal stakes, still make a quorum).
        cluster.kill(2)
        running = [0, 1, 3]
        target = first_height + 4 * NEW_LENGTH + 2
        cluster.wait_height(target, nodes=running, timeout_s=180)
        for i in running:
            starts = epoch_start_heights(cluster, i)
            after = [h for h in starts if h >= first_height - EPOCH_BLOCKS]
            assert after[:6] == [
                first_height - EPOCH_BLOCKS,
                first_height,
                *(first_height + k * NEW_LENGTH for k in range(1, 5)),
            ], (i, starts)
            epoch = cluster.get(i, f"/v1/epochs/{first_epoch + 1}")
            assert (epoch["first_height"], epoch["last_height"]) == (
                first_height + NEW_LENGTH,
                first_height + 2 * NEW_LENGTH - 1,
            )
        for height in range(first_height - 2, target + 1):
            roots = {header_root(cluster, i, height) for i in running}
            assert len(roots) == 1, (height, roots)
        # The restarted validator reads the schedule back from its store and catches up.
        cluster.start(2)
        tip = max(cluster.height(i) for i in running)
        cluster.wait_height(tip + NEW_LENGTH, nodes=[0, 1, 2, 3], timeout_s=180)
        assert cluster.get(2, "/v1/staking")["epoch_schedule"] == [old, new]
        for height in (first_height, target, tip + NEW_LENGTH):
            assert header_root(cluster, 2, height) == header_root(cluster, 0, height)
        restarted_starts = [h for h in epoch_start_heights(cluster, 2) if h > tip]
        assert restarted_starts and all(
            (h - first_height) % NEW_LENGTH == 0 for h in restarted_starts
        ), restarted_starts
