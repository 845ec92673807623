"""``perpbft bench localnet`` as a user runs it: a real localnet, a short light load, one JSON
line. The figures are checked for sense (transactions committed, latencies present and ordered,
nothing refused), never against timing thresholds: performance is read from the bench itself."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster import free_base_port
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def test_bench_localnet_commits_and_reports_sane_figures(tmp_path: Path) -> None:
    base_port = free_base_port(4)
    args = [
        "bench", "localnet", "--validators", "4", "--rate", "20", "--duration", "3",
        "--accounts", "8", "--block-ms", "300", "--home", str(tmp_path / "net"),
        "--base-port", str(base_port),
    ]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["bench"] == "localnet"
    assert report["validators"] == 4
    assert report["offered_tx_per_s"] == 20.0
    assert report["committed_txs"] > 0
    assert report["refused_txs"] == 0, result.stderr[-2000:]
    assert report["not_committed_txs"] == 0
    assert report["committed_tx_per_s"] > 0
    latency = report["latency_s"]
    assert all(isinstance(latency[q], float) and latency[q] > 0 for q in ("p50", "p90", "p99"))
    assert latency["p50"] <= latency["p90"] <= latency["p99"]
    assert len(report["node_peak_rss_mb"]) == 4
    assert report["node_cpu_ms_per_committed_tx"] > 0
    # Each validator's own CPU per transaction, from its own process counters; the total is
    # their sum (rounding aside).
    per_validator = report["validator_cpu_us_per_committed_tx"]
    assert len(per_validator) == 4
    assert all(isinstance(us, float) and us > 0 for us in per_validator)
    assert abs(sum(per_validator) / 1000 - report["node_cpu_ms_per_committed_tx"]) < 0.01
    assert report["full_node_cpu_us_per_committed_tx"] == []
    # The localnet was stopped: no validator still holds its API port.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", base_port + 1), timeout=1).close()
