"""`[storage] pruning_keep_blocks`: old blocks go, the latest state and its proofs stay."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.node import PRUNE_EVERY_BLOCKS, RECENT_BLOCKS_FOR_RESTORE
from tests.cluster import Cluster

pytestmark = pytest.mark.slow


def set_pruning(home: Path, keep: int) -> None:
    path = home / "config" / "config.toml"
    text = path.read_text()
    assert "pruning_keep_blocks = 0" in text
    path.write_text(text.replace("pruning_keep_blocks = 0", f"pruning_keep_blocks = {keep}"))


def test_single_validator_prunes_old_blocks_and_restarts(tmp_path: Path) -> None:
    with Cluster(tmp_path, validators=1, block_ms=20) as cluster:
        set_pruning(cluster.layout.homes[0], 5)  # below the floor: the node keeps 64
        cluster.start(0)
        target = RECENT_BLOCKS_FOR_RESTORE + 3 * PRUNE_EVERY_BLOCKS
        cluster.wait_height(target, timeout_s=120)
        cluster.wait_for(
            lambda: cluster.http.get(cluster.api(0) + "/v1/blocks/1").status_code == 404,
            "block 1 pruned",
        )
        height = cluster.height(0)
        # The kept window: the latest blocks are still served.
        latest = cluster.get(0, "/v1/blocks/latest")
        assert latest["height"] >= height
        oldest_kept = height - RECENT_BLOCKS_FOR_RESTORE + 1
        assert cluster.get(0, f"/v1/blocks/{oldest_kept}")["height"] == oldest_kept
        # A proof at the latest height still works (state is never pruned).
        address = cluster.demo_key(0).public_key.hex()
        proof = cluster.http.get(cluster.api(0) + f"/v1/proofs/accounts/{address}", timeout=30)
        assert proof.status_code == 200, proof.text
        # Restart from the pruned store: the replica restores from the kept window.
        assert cluster.stop(0) == 0
        cluster.start(0)
        cluster.wait_height(height + 5, timeout_s=60)
        missing = cluster.http.get(cluster.api(0) + "/v1/blocks/2")
        assert missing.status_code == 404 and missing.json()["code"] == "no_block"
