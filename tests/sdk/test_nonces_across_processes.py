"""The client-side nonce allocator: processes sharing one key file never get the same nonce,
even when their clocks give them all the same millisecond."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from client.nonces import next_nonce

PROCESSES = 6
NONCES_EACH = 150
# A fixed "now": without the shared file every process would hand out this same nonce.
NOW_MS = 1_800_000_000_000

WORKER = """
import sys
from pathlib import Path
from client.nonces import next_nonce
key, now, count = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
print("\\n".join(str(next_nonce(key, now_ms=now)) for _ in range(count)))
"""


def test_concurrent_processes_sharing_a_key_never_collide(tmp_path: Path) -> None:
    key = tmp_path / "alice.key"
    key.write_text("unused: only the .nonce file beside it matters\n")
    root = str(Path(__file__).resolve().parents[2])
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(key), str(NOW_MS), str(NONCES_EACH)],
            stdout=subprocess.PIPE,
            cwd=root,
        )
        for _ in range(PROCESSES)
    ]
    nonces: list[int] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        nonces += [int(line) for line in out.split()]
    assert len(nonces) == PROCESSES * NONCES_EACH
    assert len(set(nonces)) == len(nonces), "two processes got the same nonce"
    assert min(nonces) == NOW_MS
    assert max(nonces) == NOW_MS + len(nonces) - 1  # dense: each one the last plus one


def test_the_clock_wins_when_it_is_ahead(tmp_path: Path) -> None:
    key = tmp_path / "k.key"
    assert next_nonce(key, now_ms=NOW_MS) == NOW_MS
    assert next_nonce(key, now_ms=NOW_MS) == NOW_MS + 1
    assert next_nonce(key, now_ms=NOW_MS + 1000) == NOW_MS + 1000
    assert next_nonce(key, now_ms=NOW_MS) == NOW_MS + 1001  # a clock going back
