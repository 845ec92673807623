"""The conservation audit on a real node: it runs at start-up and every
``[storage] audit_every_blocks`` blocks (counted in /metrics), the cluster harness audits the
stored state at teardown, and a node whose stored state has one atom too many (every store
check consistent: what a money-creating bug would leave) refuses to run: one
``fatal_audit_failed`` event and exit code 4."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from node.config import Config, init_home, load_config
from node.fatal import EXIT_AUDIT_FAILED
from state_machine.genesis import genesis_from_json
from tests.cluster import Cluster
from tests.node.audit_helpers import copy_with_extra_atoms

pytestmark = pytest.mark.slow

AUDIT_EVERY_BLOCKS = 3
START_TIMEOUT_S = 60.0


def audit_often(config: Config) -> Config:
    return dataclasses.replace(
        config, storage=dataclasses.replace(config.storage, audit_every_blocks=AUDIT_EVERY_BLOCKS)
    )


def test_node_audits_its_state_and_stops_on_a_broken_one(tmp_path: Path) -> None:
    with Cluster(tmp_path, validators=1, block_ms=50, configure=audit_often) as cluster:
        cluster.start(0)
        cluster.wait_height(4 * AUDIT_EVERY_BLOCKS)
        audits = cluster.metric(0, "perpbft_state_audits_total", result="ok")
        assert audits >= 1 + 3  # start-up, then every third block
        assert cluster.metric(0, "perpbft_state_audits_total", result="failed") == 0
        assert cluster.metric(0, "perpbft_state_audit_seconds_count") == audits
        assert cluster.stop(0, signal.SIGTERM) == 0

        home = cluster.layout.homes[0]
        config = load_config(home)
        genesis = genesis_from_json(config.genesis_path.read_text())
        height = copy_with_extra_atoms(config.data_path, home / "data-copy", genesis)
        cluster.audit_exempt.add(0)  # its data dir is the broken copy from here on
        broken = dataclasses.replace(
            config, node=dataclasses.replace(config.node, data_dir="data-copy")
        )
        init_home(home, force=True, config=broken)

        proc = subprocess.run(
            [sys.executable, "-m", "cli.main", "start", "--home", str(home)],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
        )
        assert proc.returncode == EXIT_AUDIT_FAILED, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr
        lines = [json.loads(line) for line in proc.stderr.splitlines()]
        fatal = [line for line in lines if line["event"] == "fatal_audit_failed"]
        assert len(fatal) == 1, lines
        event = fatal[0]
        assert event["level"] == "critical" and event["when"] == "startup"
        assert event["height"] == height and "asset 0" in event["rule"]
        assert event["data_dir"] == str(home / "data-copy")
        assert event["exit_code"] == EXIT_AUDIT_FAILED
        assert not [line for line in lines if line["event"] == "node_started"]


def test_cluster_teardown_audits_every_node(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, validators=1, block_ms=50)
    try:
        cluster.start(0)
        cluster.wait_height(3)
    finally:
        cluster.close()
    assert cluster.audited_heights[0] >= 3

    # The same harness on a node whose stored state was broken fails the test.
    config = load_config(cluster.layout.homes[0])
    genesis = genesis_from_json(config.genesis_path.read_text())
    broken_home = tmp_path / "broken"
    copy_with_extra_atoms(config.data_path, broken_home, genesis)
    config.data_path.rename(tmp_path / "good")
    broken_home.rename(config.data_path)
    with pytest.raises(AssertionError, match=r"fails the audit: AuditFailed: .*asset 0"):
        cluster.audit_all()
