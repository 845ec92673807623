"""The README's first command, `make localnet`, in a fresh clone: it builds its own virtual
environment, starts four validators with feeders and demo traders, and trades within a bounded
time. A fresh clone holds only what is committed, as CI's checkout does."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cluster import free_base_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
MAKE_TIMEOUT_S = 900  # creating the venv and installing from PyPI (or pip's cache)
TRADES_TIMEOUT_S = 60


@pytest.fixture()
def clone(tmp_path: Path) -> Iterator[Path]:
    # CI runs in a git clone; the README's promise is about a fresh clone, so this is the test.
    assert (REPO / ".git").exists(), "run the tests from a git checkout (this test clones it)"
    assert shutil.which("git") is not None, "git is needed to clone the checkout"
    target = tmp_path / "perpbft"
    subprocess.run(
        ["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(target)],
        check=True,
        timeout=120,
    )
    yield target


def wait_for_trades(api: str) -> tuple[int, int]:
    """(height, number of trades) once node0 has committed blocks and BTC-PERP has trades."""
    deadline = time.monotonic() + TRADES_TIMEOUT_S
    with httpx.Client(timeout=5.0) as http:
        while time.monotonic() < deadline:
            try:
                height = http.get(api + "/v1/status").json()["height"]
                trades = http.get(api + "/v1/markets/BTC-PERP/trades").json()["trades"]
            except (httpx.HTTPError, KeyError, ValueError):
                height, trades = 0, []
            if height >= 2 and trades:
                return height, len(trades)
            time.sleep(0.5)
    raise AssertionError(f"no committed trades on BTC-PERP within {TRADES_TIMEOUT_S} s")


def test_make_localnet_in_a_fresh_clone_trades(clone: Path, tmp_path: Path) -> None:
    home = tmp_path / "localnet-home"
    base_port = free_base_port(4)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PERPBFT_HOME")}
    args = f"--home {home} --base-port {base_port} --block-ms 300"
    started = time.monotonic()
    make = subprocess.run(
        ["make", "localnet", f"LOCALNET_ARGS={args}"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=MAKE_TIMEOUT_S,
    )
    perpbft = clone / ".venv" / "bin" / "perpbft"
    try:
        assert make.returncode == 0, f"make localnet failed:\n{make.stdout[-3000:]}\n{make.stderr}"
        assert perpbft.exists(), "make localnet did not build the clone's own .venv"
        assert "http://127.0.0.1:" in make.stdout + make.stderr  # it printed the endpoints
        assert f"web page: http://127.0.0.1:{base_port + 1}/app/" in make.stdout
        height, trades = wait_for_trades(f"http://127.0.0.1:{base_port + 1}")
        print(f"make localnet: trading at height {height} after {time.monotonic() - started:.0f} s")
        assert trades > 0
    finally:
        down = subprocess.run(
            [str(perpbft), "localnet", "down", "--home", str(home)],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert down.returncode == 0 or not perpbft.exists(), down.stderr
