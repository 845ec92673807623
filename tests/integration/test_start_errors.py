"""`perpbft start` on a home it cannot use: one line on stderr naming the problem, exit code 2,
no traceback, and nothing left running."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from node.config import load_config, lock_home
from node.testnet import write_testnet
from tests.cluster import free_base_port

pytestmark = pytest.mark.slow

EXIT_USAGE = 2
START_TIMEOUT_S = 60.0


@pytest.fixture
def home(tmp_path: Path) -> Path:
    layout = write_testnet(tmp_path / "net", 1, base_port=free_base_port(1))
    return layout.homes[0]


def start(home: Path) -> tuple[int, list[str]]:
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "start", "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
    )
    return proc.returncode, proc.stderr.splitlines()


def assert_refused(home: Path, *words: str) -> None:
    code, lines = start(home)
    assert code == EXIT_USAGE, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and "Traceback" not in lines[0]
    for word in words:
        assert word in lines[0], lines[0]


def test_missing_genesis(home: Path) -> None:
    (home / "config" / "genesis.json").unlink()
    assert_refused(home, "genesis.json", "does not exist")


def test_corrupt_node_key(home: Path) -> None:
    (home / "config" / "node_key.json").write_text('{"seed": "not hex"')
    assert_refused(home, "node_key.json")


def test_unknown_config_key(home: Path) -> None:
    config = home / "config" / "config.toml"
    config.write_text(config.read_text().replace("[mempool]", "[mempool]\ntxs_maxx = 5"))
    assert_refused(home, "mempool.txs_maxx", "did you mean mempool.txs_max")


def test_home_in_use(home: Path) -> None:
    with lock_home(load_config(home)):
        assert_refused(home, "in use")


def test_too_little_free_disk(home: Path) -> None:
    """The floor is real free space (statvfs of the data dir), set above what any disk has."""
    config = home / "config" / "config.toml"
    text = config.read_text()
    assert "disk_free_start_min_bytes = " in text
    config.write_text(
        text.replace(
            "disk_free_start_min_bytes = 268_435_456",
            "disk_free_start_min_bytes = 4611686018427387904",
        )
    )
    assert_refused(home, "free on the file system of", "storage.disk_free_start_min_bytes")
