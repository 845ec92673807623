"""Free space on the data dir's file system: a gauge, a readiness reason, a start-up floor.

A full disk stops a node (the next block's commit fails, see node/fatal.py), so the operator
must see it coming: ``perpbft_disk_free_bytes`` is sampled every DISK_SAMPLE_INTERVAL_S,
``/readyz`` turns not ready below ``[storage] disk_free_ready_min_bytes`` (traffic moves to
other nodes while someone frees space), and ``perpbft start`` refuses to start below
``[storage] disk_free_start_min_bytes`` (a node that would die at its first commits should
not join the network at all). Free space is what an unprivileged writer can use
(``f_bavail``): the root-reserved blocks are not counted on.
"""

from __future__ import annotations

from pathlib import Path

import trio
from prometheus_client import Gauge

from node.fatal import free_bytes

DISK_SAMPLE_INTERVAL_S = 2.0
MIB = 1024 * 1024


def mib_text(size_bytes: int) -> str:
    return f"{size_bytes / MIB:.1f} MiB"


def start_space_problem(data_dir: Path, min_bytes: int) -> str | None:
    """One line saying why the node must not start with this little space, or None."""
    if min_bytes == 0:
        return None
    free = free_bytes(data_dir)
    if free >= min_bytes:
        return None
    return (
        f"only {mib_text(free)} free on the file system of {data_dir}, below "
        f"storage.disk_free_start_min_bytes ({mib_text(min_bytes)}): free space first"
    )


class DiskWatch:
    """Samples the free space of ``data_dir``; ``not_ready_reason`` reads the last sample."""

    def __init__(self, data_dir: Path, ready_min_bytes: int, gauge: Gauge) -> None:
        self.data_dir = data_dir
        self.ready_min_bytes = ready_min_bytes
        self.free_bytes: int | None = None  # None until sampled, or if statvfs fails
        self._gauge = gauge

    def sample(self) -> int | None:
        try:
            self.free_bytes = free_bytes(self.data_dir)
        except OSError:
            self.free_bytes = None  # the data dir vanished: the next commit will say why
            return None
        self._gauge.set(self.free_bytes)
        return self.free_bytes

    def not_ready_reason(self) -> str:
        """ "" when enough space is free (or no floor is set)."""
        free = self.free_bytes
        if self.ready_min_bytes == 0 or free is None or free >= self.ready_min_bytes:
            return ""
        return (
            f"disk nearly full: {mib_text(free)} free in {self.data_dir}, below "
            f"storage.disk_free_ready_min_bytes ({mib_text(self.ready_min_bytes)})"
        )

    async def run(self) -> None:
        """Sample forever (statvfs in a worker thread: a hung network mount must not stall
        the event loop)."""
        while True:
            await trio.to_thread.run_sync(self.sample)
            await trio.sleep(DISK_SAMPLE_INTERVAL_S)
