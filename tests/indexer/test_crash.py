"""Exactly once: ``perpbft indexer`` killed with SIGKILL again and again while it indexes a
real node store, then restarted, leaves the database identical, row for row, to one indexing
run that was never interrupted (nothing lost, nothing doubled: candles count every fill once).
On SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from node.indexer.db import IndexDb, SqliteDb
from node.indexer.indexer import Indexer
from node.indexer.source import DataDirSource
from tests.indexer.chain import build_chain

BLOCKS = 1_500
BLOCKS_PER_COMMIT = 2
KILLS = 16
KILL_DELAY_S_MAX = 0.004  # after a seen commit: lands anywhere in the next batch's work
TABLES = {
    "events": "height, idx",
    "account_events": "account, list, height, idx",
    "market_events": "market_id, list, height, idx",
    "candles": "market_id, interval_ms, start_ms",
    "pnl": "account, interval_ms, start_ms",
    "progress": "id",
}


def dump(db: IndexDb) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for table, order in TABLES.items():
        rows = db._read(f"SELECT * FROM {table} ORDER BY {order}", ())
        out[table] = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in rows]
    return out


def indexer_argv(data: Path, db_settings: dict[str, str]) -> list[str]:
    where = (
        ["--postgresql", db_settings["postgresql_dsn"]]
        if db_settings["backend"] == "postgresql"
        else ["--sqlite", db_settings["sqlite_file"]]
    )
    return [
        sys.executable, "-m", "cli.main", "indexer", "--data", str(data), *where,
        "--blocks-per-commit", str(BLOCKS_PER_COMMIT), "--poll-ms", "50",
    ]  # fmt: skip


def wait_progress(db: IndexDb, above: int, proc: subprocess.Popen[bytes]) -> int:
    """Poll until the indexer process has moved the progress past ``above``."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        height = db.progress().height
        if height > above:
            return height
        if proc.poll() is not None:
            raise AssertionError(f"the indexer exited with {proc.returncode}")
        time.sleep(0.001)
    raise AssertionError("the indexer made no progress in 30 s")


@pytest.mark.slow
async def test_kill_9_while_indexing_loses_and_duplicates_nothing(
    tmp_path: Path, db_settings: dict[str, str], index_db: IndexDb
) -> None:
    home = tmp_path / "node"
    await build_chain(home, BLOCKS)
    data = home / "data"
    reference = SqliteDb(tmp_path / "reference.sqlite3")
    reference.create_schema()
    source = DataDirSource(data)
    Indexer(reference, source, blocks_per_commit_max=50).catch_up()
    source.close()
    expected = dump(reference)
    assert reference.progress().height == BLOCKS
    fills = sum(1 for row in expected["events"] if row[3] == "fill")
    assert fills == BLOCKS

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    killed_at: list[int] = []
    seen = 0
    for _ in range(KILLS):
        proc = subprocess.Popen(indexer_argv(data, db_settings), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        seen = wait_progress(index_db, seen, proc)
        time.sleep(random.uniform(0, KILL_DELAY_S_MAX))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        seen = index_db.progress().height
        killed_at.append(seen)
    # Every kill landed while blocks were left to index, and each run made progress.
    assert all(0 < h < BLOCKS for h in killed_at), killed_at
    assert killed_at == sorted(set(killed_at)), killed_at
    finish = subprocess.run([*indexer_argv(data, db_settings), "--once"], env=env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert finish.returncode == 0, finish.stderr
    got = dump(index_db)
    for table in TABLES:
        assert got[table] == expected[table], table
    reference.close()
