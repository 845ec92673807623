"""Free-space watching on the real file system of a temporary dir: the gauge, the readiness
reason and the start-up floor (the full-disk run is tests/integration/test_disk_full.py)."""

from __future__ import annotations

import os
from pathlib import Path

from node.diskwatch import DiskWatch, start_space_problem
from node.metrics import Metrics

MORE_THAN_ANY_DISK = 2**62


def statvfs_free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def test_start_floor(tmp_path: Path) -> None:
    assert start_space_problem(tmp_path, 0) is None
    assert start_space_problem(tmp_path, 1) is None
    problem = start_space_problem(tmp_path, MORE_THAN_ANY_DISK)
    assert problem is not None and "\n" not in problem
    assert str(tmp_path) in problem and "storage.disk_free_start_min_bytes" in problem


def test_gauge_and_readiness_follow_the_sample(tmp_path: Path) -> None:
    metrics = Metrics()
    watch = DiskWatch(tmp_path, MORE_THAN_ANY_DISK, metrics.disk_free_bytes)
    assert watch.not_ready_reason() == ""  # nothing sampled yet: no verdict
    free = watch.sample()
    assert free is not None and abs(free - statvfs_free(tmp_path)) < 64 * 1024 * 1024
    assert metrics.registry.get_sample_value("perpbft_disk_free_bytes") == free
    reason = watch.not_ready_reason()
    assert reason.startswith("disk nearly full") and str(tmp_path) in reason
    assert "storage.disk_free_ready_min_bytes" in reason
    assert DiskWatch(tmp_path, 1, metrics.disk_free_bytes).not_ready_reason() == ""
    off = DiskWatch(tmp_path, 0, metrics.disk_free_bytes)
    off.sample()
    assert off.not_ready_reason() == ""


def test_a_vanished_data_dir_gives_no_sample(tmp_path: Path) -> None:
    metrics = Metrics()
    watch = DiskWatch(tmp_path / "gone", MORE_THAN_ANY_DISK, metrics.disk_free_bytes)
    assert watch.sample() is None and watch.not_ready_reason() == ""
