"""A node whose disk fills up: one structured fatal event naming the cause, a documented exit
code, no traceback; /readyz and the free-space metric warn before; and with space freed it
restarts on the last whole block.

The data dir is on a real 16 MiB tmpfs, filled by a file, so the failure is the kernel's own
ENOSPC in the middle of an LMDB commit. Mounting needs root: CI runs as root and must not
skip; elsewhere the test skips when it cannot mount.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from node.config import init_home, load_config
from node.fatal import EXIT_STORAGE_FAILED, free_bytes
from node.testnet import write_testnet
from tests.cluster import free_base_port

pytestmark = pytest.mark.slow

TMPFS_BYTES = 16 * 1024 * 1024
READY_MIN_BYTES = 6 * 1024 * 1024
START_MIN_BYTES = 1024 * 1024
LEAVE_FREE_BYTES = 3 * 1024 * 1024  # below the ready floor, above the start floor
TIMEOUT_S = 90.0
EXIT_START_REFUSED = 2


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if os.geteuid() != 0 and not os.environ.get("CI"):
        pytest.skip("mounting a tmpfs needs root")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs in CI: {proc.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs: {proc.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(path: Path, leave_bytes: int) -> None:
    """Grow ``path`` until at most ``leave_bytes`` stay free (0: until the disk refuses)."""
    chunk = b"\xa5" * 65536
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        while leave_bytes == 0 or free_bytes(path.parent) > leave_bytes:
            os.write(fd, chunk)
    except OSError:
        pass  # ENOSPC: the file system is full
    finally:
        os.close(fd)


def json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        assert line.startswith("{"), f"not a structured log line: {line!r}"
        out.append(json.loads(line))
    return out


def started_events(node: OneNode) -> list[dict[str, Any]]:
    text = node.output()
    whole = text[: text.rfind("\n") + 1]  # a line being written is not read half-way
    return [e for e in json_lines(whole) if e["event"] == "node_started"]


class OneNode:
    def __init__(self, root: Path, data_dir: Path) -> None:
        layout = write_testnet(root / "net", 1, base_port=free_base_port(1), block_interval_ms=50)
        self.home = layout.homes[0]
        self.api = f"http://127.0.0.1:{layout.ports[0].api}"
        self.metrics = f"http://127.0.0.1:{layout.ports[0].metrics}/metrics"
        config = load_config(self.home)
        config = dataclasses.replace(
            config,
            node=dataclasses.replace(config.node, data_dir=str(data_dir)),
            storage=dataclasses.replace(
                config.storage,
                disk_free_ready_min_bytes=READY_MIN_BYTES,
                disk_free_start_min_bytes=START_MIN_BYTES,
            ),
        )
        data_dir.mkdir(mode=0o700)
        init_home(self.home, force=True, config=config)
        self.log = root / "node.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_offset = 0
        self.http = httpx.Client(timeout=5.0)

    def start(self) -> None:
        self.log_offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "start", "--home", str(self.home)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        """What the current (or last) run logged."""
        return self.log.read_bytes()[self.log_offset :].decode(errors="replace")

    def wait_exit(self) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=TIMEOUT_S)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def wait_for(self, what: str, condition: Any) -> Any:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.output()
            with contextlib.suppress(httpx.HTTPError):
                result = condition()
                if result:
                    return result
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}:\n{self.output()[-3000:]}")

    def height(self) -> int:
        r = self.http.get(self.api + "/v1/status")
        return int(r.json()["height"]) if r.status_code == 200 else -1

    def readyz(self) -> httpx.Response:
        return self.http.get(self.api + "/readyz")

    def disk_free_metric(self) -> float | None:
        for line in self.http.get(self.metrics).text.splitlines():
            if line.startswith("perpbft_disk_free_bytes "):
                return float(line.split()[1])
        return None


def test_full_disk_stops_the_node_with_one_fatal_event(tmp_path: Path, small_disk: Path) -> None:
    data_dir = small_disk / "data"
    node = OneNode(tmp_path, data_dir)
    try:
        node.start()
        node.wait_for("height 5", lambda: node.height() >= 5)
        node.wait_for("ready", lambda: node.readyz().status_code == 200)
        metric = node.wait_for("the free-space metric", node.disk_free_metric)
        assert 0 < metric <= TMPFS_BYTES

        # Below the readiness floor: the node runs on but tells balancers to go elsewhere.
        fill(small_disk / "filler", LEAVE_FREE_BYTES)
        r = node.wait_for("not ready", lambda: (r := node.readyz()).status_code == 503 and r)
        assert r.json()["code"] == "not_ready"
        assert "disk nearly full" in r.json()["message"] and str(data_dir) in r.json()["message"]
        low = node.disk_free_metric()
        assert low is not None and low < READY_MIN_BYTES

        fill(small_disk / "filler", 0)
        code = node.wait_exit()
        output = node.output()
        assert code == EXIT_STORAGE_FAILED, output[-3000:]
        assert "Traceback" not in output
        lines = json_lines(output)
        fatal = [line for line in lines if line["event"] == "fatal_storage_error"]
        assert len(fatal) == 1, output[-3000:]
        event = fatal[0]
        assert event["level"] == "critical"
        assert event["cause"] == "disk_full"
        assert event["data_dir"] == str(data_dir)
        assert event["errno"] in ("ENOSPC", "EIO")
        assert event["exit_code"] == EXIT_STORAGE_FAILED
        stopped_at = event["height"]
        assert stopped_at >= 5

        # Still full: the node refuses to start, in one line.
        node.start()
        assert node.wait_exit() == EXIT_START_REFUSED
        refusal = node.output().strip().splitlines()
        assert len(refusal) == 1 and "disk_free_start_min_bytes" in refusal[0], refusal

        # Space freed: the store passes its start-up checks (page walk, root recomputed from
        # the entries) and the node resumes from the last whole block. (With one validator
        # it cannot commit on: the block decided when the disk filled existed only in its
        # memory, and with no peer to fetch it from, its lock waits for it.)
        (small_disk / "filler").unlink()
        node.start()
        # The API answers from the opened store a moment before ``node_started`` is logged:
        # wait for the event itself (whole lines only), then compare.
        started = node.wait_for("node_started in the log", lambda: started_events(node))
        assert [e["height"] for e in started] == [stopped_at]
        assert node.height() == stopped_at
    finally:
        node.kill()
        node.http.close()
