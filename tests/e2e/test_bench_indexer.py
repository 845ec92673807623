"""``perpbft bench indexer`` as a user runs it: a real localnet under a light load, every
validator indexing in-process, ``perpbft indexer`` processes following node0 into SQLite and a
real PostgreSQL server, then a backfill. The figures are checked for sense (every indexer saw
the same events of the chain, counters present), never against timing thresholds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.pgserver import server_bin
from tests.cluster import free_base_port
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def test_bench_indexer_reports_every_indexer(tmp_path: Path) -> None:
    if server_bin() is None:
        pytest.skip("PostgreSQL server binaries not found; `make test` installs them")
    args = [
        "bench", "indexer", "--validators", "4", "--rate", "20", "--duration", "3",
        "--accounts", "8", "--block-ms", "300", "--base-port", str(free_base_port(4)),
    ]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        capture_output=True, text=True, timeout=400, cwd=REPO_ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["bench"] == "indexer" and report["load"]["committed_txs"] > 0
    rows = report["in_process_sqlite"]
    assert [r["node"] for r in rows] == ["node0", "node1", "node2", "node3"]
    for row in rows:
        assert row["events"] > 0 and row["blocks"] > 0, row
        assert row["busy_s"] > 0 and row["cpu_s"] > 0 and row["events_per_busy_s"] > 0, row
    external = report["external"]
    assert set(external) == {"sqlite", "postgresql"}, external
    for backend in ("sqlite", "postgresql"):
        assert external[backend]["events"] > 0 and external[backend]["busy_s"] > 0
        backfilled = report["backfill"][backend]
        # The backfill reads the same stored chain from height 1: at least what the live
        # follower indexed (the chain kept growing with empty blocks meanwhile).
        assert backfilled["from_height"] == 0
        assert backfilled["events"] >= external[backend]["events"] > 0
        assert backfilled["indexed_height"] >= external[backend]["indexed_height"]
