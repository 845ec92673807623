"""A validator whose consensus signatures come from a `perpbft signer` process over a Unix
socket takes part in a real four-validator cluster.

With one of the other validators stopped, every block needs the signer-backed validator's
votes (3 of 4), so the chain advances only while its signer signs: it stalls when the signer
stops (the node keeps running, silent) and resumes when the signer is back.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from node.config import init_home, load_config
from tests.cluster import Cluster

pytestmark = pytest.mark.slow


def start_signer(
    key_file: Path, chain_id: str, socket_file: Path, state: Path
) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            sys.executable, "-m", "cli.main", "signer", "--key", str(key_file),
            "--chain-id", chain_id, "--listen", f"unix://{socket_file}", "--state", str(state),
        ]
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not socket_file.exists():
        assert process.poll() is None, "signer exited"
        assert time.monotonic() < deadline, "signer did not start"
        time.sleep(0.05)
    return process


def last_vote_view(state: Path) -> int:
    last = json.loads(state.read_text())["last"]
    return max((v[0] for slot, v in last.items() if slot.startswith("vote/")), default=0)


def test_a_validator_with_a_remote_signer_votes_and_goes_silent_without_it(
    tmp_path: Path,
) -> None:
    with tempfile.TemporaryDirectory(prefix="sgn") as socket_dir, Cluster(tmp_path) as cluster:
        socket_file = Path(socket_dir) / "signer.sock"
        home = cluster.layout.homes[0]
        config = load_config(home)
        signer_settings = dataclasses.replace(config.signer, address=f"unix://{socket_file}")
        init_home(home, force=True, config=dataclasses.replace(config, signer=signer_settings))
        key_file, state = home / "config" / "node_key.json", tmp_path / "signer-state.json"
        signer = start_signer(key_file, cluster.chain_id, socket_file, state)
        try:
            for i in range(3):
                cluster.start(i)
            cluster.wait_height(3, nodes=[0, 1, 2], timeout_s=90)
            assert last_vote_view(state) > 0  # node 0's votes were signed by the signer

            signer.terminate()
            assert signer.wait(timeout=10) == 0
            time.sleep(1.0)
            stalled = cluster.height(1)
            time.sleep(3.0)
            assert cluster.height(1) <= stalled + 1  # no quorum without node 0's votes
            assert cluster.running(0)
            assert cluster.log_lines(0, "signer_unavailable")
            assert cluster.metric(0, "perpbft_signer_failures_total", reason="unavailable") > 0

            signer = start_signer(key_file, cluster.chain_id, socket_file, state)
            cluster.wait_height(stalled + 3, nodes=[0, 1, 2], timeout_s=120)
            assert not cluster.log_lines(0, "signer_refused")
            assert cluster.metric(0, "perpbft_signer_failures_total", reason="refused") == 0
        finally:
            signer.kill()
            signer.wait(timeout=10)
