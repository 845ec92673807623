"""State root and block commit cost: blocks changing N keys over states of growing size.

For each state size (10k, 100k and 1M keys by default) a fresh subprocess (so its peak RSS is
its own) builds that many entries, holds them in a dict as the node's working copy would,
creates an LMDB store holding them, then commits ``--blocks`` blocks that each change
``--changed-keys`` keys (80 % updates of existing keys, 10 % new keys, 10 % deletions) through
:meth:`node.storage.Store.commit_block`. It reports the median per block of

* ``update_ms``: the Merkle tree update and new root (in memory);
* ``commit_ms``: the LMDB write transaction with its commit and fsync;
* ``update_cpu_ms`` and ``commit_cpu_ms``: the same in CPU time of the committing thread,
  which other load on the machine barely moves (the rest of ``commit_ms`` is disk waits);

and the process's peak RSS (LMDB's mapped pages that were touched count too). The worker calls
``gc.freeze()`` after building its state, as a long-running node does after loading, so the
cyclic collector does not rescan millions of long-lived objects during the measured blocks.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cli.errors import CliError

DEFAULT_SIZES = "10000,100000,1000000"
KEY_PREFIX = b"acct/"
VALUE_BYTES = 96
WORKER_TIMEOUT_S = 1800


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="comma-separated state sizes")
    parser.add_argument("--changed-keys", type=int, default=5000, help="keys changed per block")
    parser.add_argument("--blocks", type=int, default=12, help="measured blocks per size")
    parser.add_argument("--warmup-blocks", type=int, default=3, help="unmeasured blocks first")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the LMDB stores")


def run(args: argparse.Namespace) -> dict[str, Any]:
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s]
    except ValueError:
        raise CliError("--sizes must be comma-separated integers") from None
    if not sizes or min(sizes) < 1 or args.changed_keys < 1 or args.blocks < 1:
        raise CliError("--sizes, --changed-keys and --blocks must be positive")
    results = []
    load_before = round(os.getloadavg()[0], 2)
    for total_keys in sizes:
        print(f"state of {total_keys:,} keys: building and committing...", file=sys.stderr)
        result = _run_worker(total_keys, args)
        print(
            f"  update {result['update_ms']:.1f} ms ({result['update_cpu_ms']:.1f} ms CPU), "
            f"commit {result['commit_ms']:.1f} ms ({result['commit_cpu_ms']:.1f} ms CPU), "
            f"peak RSS {result['peak_rss_mb']:.0f} MB (setup {result['setup_s']:.1f} s)",
            file=sys.stderr,
        )
        results.append(result)
    base = results[0]
    for r in results:
        r["update_vs_smallest"] = round(r["update_ms"] / base["update_ms"], 2)
        r["update_cpu_vs_smallest"] = round(r["update_cpu_ms"] / base["update_cpu_ms"], 2)
        r["total_vs_smallest"] = round(
            (r["update_ms"] + r["commit_ms"]) / (base["update_ms"] + base["commit_ms"]), 2
        )
    # Other processes on the machine inflate wall-clock figures; say how busy it was.
    return {
        "bench": "state_root",
        "changed_keys": args.changed_keys,
        "results": results,
        "load_avg_1m": [load_before, round(os.getloadavg()[0], 2)],
        "cpus": os.cpu_count(),
    }


def _run_worker(total_keys: int, args: argparse.Namespace) -> dict[str, Any]:
    work_dir = Path(tempfile.mkdtemp(prefix="perpbft-bench-", dir=args.dir))
    try:
        cmd = [
            sys.executable,
            "-m",
            "cli.bench_state_root",
            str(total_keys),
            str(args.changed_keys),
            str(args.blocks),
            str(args.warmup_blocks),
            str(work_dir),
        ]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S, check=False
        )
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    if proc.returncode != 0:
        raise CliError(f"worker for {total_keys} keys failed: {proc.stderr.strip()[-500:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# --------------------------------------------------------------------------------------------
# The worker (runs in its own process).
# --------------------------------------------------------------------------------------------


def _worker(total_keys: int, changed_keys: int, blocks: int, warmup: int, work_dir: Path) -> None:
    from node.storage import Store

    rng = random.Random(total_keys)
    started = time.perf_counter()
    state = {_key(rng): rng.randbytes(VALUE_BYTES) for _ in range(total_keys)}
    store = Store.create(work_dir, "bench", bytes(32), sorted(state.items()))
    setup_s = time.perf_counter() - started
    gc.collect()
    gc.freeze()
    keys = list(state)
    update_ms: list[float] = []
    update_cpu_ms: list[float] = []
    commit_ms: list[float] = []
    commit_cpu_ms: list[float] = []
    for height in range(1, warmup + blocks + 1):
        writes = _block_writes(rng, state, keys, changed_keys)
        store.commit_block(
            height=height,
            block_hash=height.to_bytes(32, "big"),
            block=b"b",
            qc=b"q",
            writes=writes,
        )
        stats = store.last_commit
        if stats is not None and height > warmup:
            update_ms.append(stats.tree_update_s * 1000)
            update_cpu_ms.append(stats.tree_update_cpu_s * 1000)
            commit_ms.append(stats.lmdb_write_s * 1000)
            commit_cpu_ms.append(stats.lmdb_write_cpu_s * 1000)
    store.close()
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "total_keys": total_keys,
                "update_ms": round(statistics.median(update_ms), 1),
                "commit_ms": round(statistics.median(commit_ms), 1),
                "update_cpu_ms": round(statistics.median(update_cpu_ms), 1),
                "commit_cpu_ms": round(statistics.median(commit_cpu_ms), 1),
                "update_ms_max": round(max(update_ms), 1),
                "commit_ms_max": round(max(commit_ms), 1),
                "peak_rss_mb": round(peak_rss_mb),
                "setup_s": round(setup_s, 1),
                "blocks": blocks,
            }
        )
    )


def _key(rng: random.Random) -> bytes:
    """An account-like key: prefix, a 32-byte public key, a sub-key."""
    return KEY_PREFIX + rng.randbytes(32) + b"/" + rng.randbytes(4)


def _block_writes(
    rng: random.Random, state: dict[bytes, bytes], keys: list[bytes], changed_keys: int
) -> list[tuple[bytes, bytes | None]]:
    """80 % updates, 10 % inserts, 10 % deletes; applied to ``state``; sorted like a write set."""
    writes: dict[bytes, bytes | None] = {}
    while len(writes) < changed_keys:
        roll = rng.random()
        if roll < 0.1:
            key = _key(rng)
            value: bytes | None = rng.randbytes(VALUE_BYTES)
        else:
            key = keys[rng.randrange(len(keys))]
            if key not in state or key in writes:
                continue
            value = None if roll < 0.2 else rng.randbytes(VALUE_BYTES)
        writes[key] = value
    for key, value in writes.items():
        if value is None:
            del state[key]
        else:
            if key not in state:
                keys.append(key)
            state[key] = value
    return sorted(writes.items())


if __name__ == "__main__":
    _worker(
        int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])
    )
