"""A validator that lost its data comes back from a snapshot, the way docs/OPERATIONS.md says:
export on a running node, take the certified root from the next block's header, import into
the stopped node's empty data dir, start it. It catches up from the snapshot's height (it never
holds the blocks before) and its votes count again."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from node.config import load_config
from tests.cluster import Cluster
from tests.integration.test_cluster_faults import (
    BLOCK_MS,
    CATCH_UP_TIMEOUT_S,
    equivocations,
    fast_views_with_signed_record,
    qc_signers,
)

pytestmark = pytest.mark.slow

RESTORED = 3


def perpbft(*args: str) -> dict[str, Any]:
    """Run a ``perpbft`` command as an operator would; its ``--json`` answer."""
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"perpbft {' '.join(args)}: {done.stderr}"
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def test_a_wiped_validator_restarts_from_a_snapshot_and_votes_again(tmp_path: Path) -> None:
    with Cluster(tmp_path, block_ms=BLOCK_MS, configure=fast_views_with_signed_record) as cluster:
        others = [0, 1, 2]
        cluster.start_all()
        cluster.wait_height(3)

        # Node 3 stops and loses its data dir; its config and key stay.
        assert cluster.stop(RESTORED) == 0
        home = cluster.layout.homes[RESTORED]
        data_dir = load_config(home).data_path
        shutil.rmtree(data_dir)
        data_dir.mkdir(mode=0o700)  # empty, as `perpbft init` leaves it (it holds the lock file)
        assert (home / "config" / "node_key.json").exists()
        stopped_at = max(cluster.heights(others).values())
        cluster.wait_height(stopped_at + 5, others, CATCH_UP_TIMEOUT_S)

        # Export on node 0 while it runs (one LMDB read transaction).
        snap = tmp_path / "state.snap"
        exported = perpbft(
            "snapshot", "export", "--home", str(cluster.layout.homes[0]), "--out", str(snap)
        )
        height = exported["height"]
        assert height >= stopped_at + 5
        # The root after `height` is certified by the header of the next block.
        cluster.wait_height(height + 1, [0], CATCH_UP_TIMEOUT_S)
        certified_root = cluster.block(0, height + 1)["header"]["state_root"]
        assert exported["state_root"] == certified_root
        imported = perpbft(
            "snapshot", "import", str(snap), "--home", str(home), "--expect-root", certified_root
        )
        assert (imported["height"], imported["state_root"]) == (height, certified_root)

        # The others commit on, so node 3 has blocks to fetch after the snapshot's height.
        cluster.wait_height(height + 5, others, CATCH_UP_TIMEOUT_S)
        target = max(cluster.heights(others).values())
        signed_before = len(cluster.log_lines(RESTORED, "signed"))
        started = time.monotonic()
        cluster.start(RESTORED)
        cluster.wait_height(target, [RESTORED], CATCH_UP_TIMEOUT_S)
        caught_up_s = time.monotonic() - started
        print(f"restored node: height {height} -> {target} in {caught_up_s:.1f}s after start")

        # It started from the snapshot: no block below its height, the snapshot's own block,
        # then the same chain as the others.
        missing = cluster.http.get(cluster.api(RESTORED) + "/v1/blocks/1")
        assert missing.status_code == 404 and missing.json()["code"] == "no_block"
        for h in range(height, target + 1):
            mine, theirs = cluster.block(RESTORED, h), cluster.block(0, h)
            assert mine["block_hash"] == theirs["block_hash"], f"fork at height {h}"
            assert mine["header"]["state_root"] == theirs["header"]["state_root"]

        # Its votes count: with node 2 down, no quorum forms without node 3.
        assert cluster.stop(2) == 0
        quorum = [0, 1, RESTORED]
        top = max(cluster.heights(quorum).values())
        cluster.wait_height(top + 3, quorum, CATCH_UP_TIMEOUT_S)
        restored_id = cluster.layout.node_ids[RESTORED].hex()
        assert restored_id in qc_signers(cluster, 0, top + 3)
        for h in range(target, top + 4):
            assert (
                cluster.block(RESTORED, h)["header"]["state_root"]
                == (cluster.block(0, h)["header"]["state_root"])
            )
        # Restored without its safety record, it still never signed two blocks in one view
        # and phase (its records from before the wipe included).
        signed = cluster.log_lines(RESTORED, "signed")
        assert len(signed) > signed_before and equivocations(signed) == []


def test_a_validator_with_an_empty_data_dir_catches_up_from_genesis(tmp_path: Path) -> None:
    """A new (or wiped) validator needs no snapshot: it creates the genesis state, fetches
    every committed block with its commit QC from its peers, executes them and votes."""
    with Cluster(tmp_path, block_ms=BLOCK_MS, configure=fast_views_with_signed_record) as cluster:
        others = [0, 1, 2]
        cluster.start_all()
        cluster.wait_height(3)
        assert cluster.stop(RESTORED) == 0
        data_dir = load_config(cluster.layout.homes[RESTORED]).data_path
        shutil.rmtree(data_dir)
        data_dir.mkdir(mode=0o700)
        stopped_at = max(cluster.heights(others).values())
        cluster.wait_height(stopped_at + 20, others, CATCH_UP_TIMEOUT_S)
        target = max(cluster.heights(others).values())
        started = time.monotonic()
        cluster.start(RESTORED)
        cluster.wait_height(target, [RESTORED], CATCH_UP_TIMEOUT_S)
        print(f"empty node: genesis -> height {target} in {time.monotonic() - started:.1f}s")
        for h in range(1, target + 1):
            mine, theirs = cluster.block(RESTORED, h), cluster.block(0, h)
            assert mine["block_hash"] == theirs["block_hash"], f"fork at height {h}"
            assert mine["header"]["state_root"] == theirs["header"]["state_root"]
        assert cluster.stop(2) == 0  # without node 2, no quorum forms unless node 3 votes
        quorum = [0, 1, RESTORED]
        top = max(cluster.heights(quorum).values())
        cluster.wait_height(top + 3, quorum, CATCH_UP_TIMEOUT_S)
        assert cluster.layout.node_ids[RESTORED].hex() in qc_signers(cluster, 0, top + 3)
