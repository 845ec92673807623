"""Crash safety: SIGKILL a committing child at random moments; every reopen is a clean prefix.

A child process (``tests.storage.crash_child``) commits deterministic blocks in a loop and is
killed with SIGKILL after a random delay, again and again. After each kill the parent reopens
the store (with the full recovery checks) and requires: the height never goes back; the state
entries are exactly the state after that many blocks (so no block is half applied); the stored
root equals the root recomputed from the entries; every block, QC and result up to the height
is there and block height + 1 is not; the safety record is for this block or the next.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from node.storage import Store, StoreMissingError
from state_machine.merkle_state import MerkleState
from tests.conftest import REPO_ROOT
from tests.storage.crash_child import CHANGES_PER_BLOCK, KEY_SPACE
from tests.storage.helpers import GENESIS_ENTRIES, GenericBlock, make_block

KILLS = 60
SEED = 7
READY_TIMEOUT_S = 30.0
KILL_DELAY_MAX_S = 0.12


def block(height: int) -> GenericBlock:
    return make_block(SEED, height, KEY_SPACE, CHANGES_PER_BLOCK)


class Expected:
    """The state after each height, computed forward as the child gets further."""

    def __init__(self) -> None:
        self.height = 0
        self.state = dict(GENESIS_ENTRIES)

    def at(self, height: int) -> dict[bytes, bytes]:
        assert height >= self.height
        while self.height < height:
            self.height += 1
            for k, v in block(self.height).writes:
                if v is None:
                    self.state.pop(k, None)
                else:
                    self.state[k] = v
        return self.state


def start_child(data_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.storage.crash_child", str(data_dir), str(SEED)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )


def kill_at_random(child: subprocess.Popen[str], rng: random.Random, before_ready: bool) -> None:
    """SIGKILL during start-up, or at a random moment after the child's first commit."""
    if before_ready:
        time.sleep(rng.uniform(0.0, 0.3))  # somewhere in start-up, open, recovery or create
    else:
        assert child.stdout is not None
        for expected in ("ready", "committed"):
            line = child.stdout.readline()
            if not line.startswith(expected):
                child.kill()
                raise AssertionError(f"child said {line!r}: {child.communicate()[1]}")
        time.sleep(rng.uniform(0.0, KILL_DELAY_MAX_S))
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)


def check_prefix(data_dir: Path, expected: Expected, last_height: int) -> int:
    try:
        store = Store.open(data_dir)
    except StoreMissingError:
        assert last_height == 0, "a committed store disappeared"
        return 0
    with store:
        height = store.height
        assert height >= last_height, f"height went back from {last_height} to {height}"
        entries = store.read_entries()
        assert entries == sorted(expected.at(height).items()), f"state at {height} is not a prefix"
        assert store.state_root == MerkleState.from_entries(entries).root()
        for h in range(max(1, last_height), height + 1):
            b = block(h)
            assert store.get_block(h) == b.block
            assert store.get_qc(h) == b.qc
            assert store.get_events(h) == b.events
            for tx_id, result in b.tx_results:
                record = store.get_tx_result(tx_id)
                assert record is not None and record.height == h and record.result == result
        assert store.get_block(height + 1) is None
        assert store.get_qc(height + 1) is None
        safety = store.read_safety_data()
        if height > 0:
            assert safety in (b"safety %d" % height, b"safety %d" % (height + 1))
        return height


@pytest.mark.slow
def test_sigkill_at_random_moments_leaves_a_prefix_of_whole_blocks(tmp_path: Path) -> None:
    rng = random.Random(2024)
    expected = Expected()
    height = 0
    kills_after_a_commit = 0
    for kill in range(KILLS):
        child = start_child(tmp_path)
        before_ready = kill % 10 == 0
        try:
            kill_at_random(child, rng, before_ready)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert child.returncode == -signal.SIGKILL, child.stderr.read() if child.stderr else ""
        previous = height
        height = check_prefix(tmp_path, expected, height)
        if not before_ready:
            kills_after_a_commit += 1
            assert height > previous, "the child reported a commit that did not survive"
    assert kills_after_a_commit >= 50
