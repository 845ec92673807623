"""`perpbft rollback` and `perpbft reset` on a stopped validator of a running network: the
safety record is kept byte for byte, and the validator rejoins and follows the same chain
(its blocks are the network's, so it signed nothing that conflicts)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from node.config import load_config
from node.storage import Store
from tests.cluster import Cluster

pytestmark = pytest.mark.slow

NODE = 3


def perpbft(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def stored(home: Path) -> tuple[int, bytes | None]:
    config = load_config(home)
    with Store.open(config.data_path) as store:
        return store.height, store.read_safety_data()


def test_rollback_then_reset_keep_promises_and_rejoin(tmp_path: Path) -> None:
    with Cluster(tmp_path) as cluster:
        cluster.start_all()
        cluster.wait_height(6)
        home = str(cluster.layout.homes[NODE])
        assert cluster.stop(NODE) == 0
        height, safety = stored(cluster.layout.homes[NODE])
        assert safety is not None

        rolled = perpbft("rollback", "--home", home, "--json")
        assert rolled.returncode == 0, rolled.stderr
        assert json.loads(rolled.stdout) == {
            "height_before": height,
            "height": height - 1,
            "state_root": json.loads(rolled.stdout)["state_root"],
        }
        assert stored(cluster.layout.homes[NODE]) == (height - 1, safety)
        cluster.start(NODE)
        cluster.wait_height(height + 3, nodes=[NODE], timeout_s=90)
        assert cluster.block(NODE, height) == cluster.block(0, height)

        assert cluster.stop(NODE) == 0
        _, safety = stored(cluster.layout.homes[NODE])
        refused = perpbft("reset", "--home", home)  # no terminal, no --yes: refused
        assert refused.returncode == 2 and "--yes" in refused.stderr
        reset = perpbft("reset", "--home", home, "--yes", "--json")
        assert reset.returncode == 0, reset.stderr
        assert json.loads(reset.stdout)["safety_record_kept"] is True
        assert stored(cluster.layout.homes[NODE]) == (0, safety)
        top = cluster.height(0)
        cluster.start(NODE)
        cluster.wait_height(top + 2, nodes=[NODE], timeout_s=120)
        assert cluster.block(NODE, top) == cluster.block(0, top)
