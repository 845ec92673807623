"""`perpbft bench state-root` with tiny sizes, random and exchange states."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

from bench.state_root import _exchange_worker
from tests.state_machine.helpers import run_bench

TIMINGS = ("update_ms", "commit_ms", "update_cpu_ms", "commit_cpu_ms", "peak_rss_mb")


def bench(*args: str) -> dict[str, Any]:
    return run_bench("state-root", *args)


def test_random_state_json_last_line(tmp_path: Path) -> None:
    common = ["--changed-keys", "50", "--blocks", "2", "--warmup-blocks", "1"]
    out = bench("--sizes", "300,600", *common, "--dir", str(tmp_path))
    assert out["bench"] == "state_root"
    assert out["changed_keys"] == 50
    assert out["state"] == "random"
    assert out["proof_history_heights"] == 300
    assert [r["total_keys"] for r in out["results"]] == [300, 600]
    for r in out["results"]:
        assert all(r[k] >= 0 for k in TIMINGS)
        assert r["peak_rss_mb"] > 0
    assert bench("--sizes", "300", *common, "--proof-history", "0")["proof_history_heights"] == 0


def test_exchange_state_json_last_line(tmp_path: Path) -> None:
    out = bench(
        "--exchange",
        "--sizes",
        "500,1500",
        "--changed-keys",
        "200",
        "--blocks",
        "2",
        "--warmup-blocks",
        "2",
        "--proof-history",
        "5",
        "--dir",
        str(tmp_path),
    )
    assert out["state"] == "exchange"
    assert out["proof_history_heights"] == 5
    for requested, r in zip((500, 1500), out["results"], strict=True):
        assert r["state"] == "exchange"
        assert r["requested_keys"] == requested
        assert r["total_keys"] == requested == sum(r["entries"].values())
        kinds = r["entries"]
        assert kinds["balance"] == 3 * r["accounts"]
        assert kinds["nonces"] == r["accounts"] + 1  # and the treasury's
        assert kinds["order"] > 0 and kinds["position"] > 0
        assert r["changed_keys_per_block"] > 0
        assert all(r[k] >= 0 for k in TIMINGS)
    assert list(tmp_path.iterdir()) == []  # the worker's stores are removed


def test_exchange_store_follows_the_state(tmp_path: Path) -> None:
    params = {
        "total_keys": 400,
        "changed_keys": 100,
        "blocks": 3,
        "warmup": 1,
        "work_dir": str(tmp_path),
        "exchange": True,
        "proof_history": 2,
        "verify": True,  # the store's root is recomputed from the state's entries at the end
    }
    try:
        result = _exchange_worker(params)
    finally:
        gc.unfreeze()  # the worker freezes its heap, as its own process would
    assert result["total_keys"] == 400
    assert 50 <= result["changed_keys_per_block"] <= 200
