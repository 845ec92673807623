from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from client.nonces import next_nonce, nonce_path


def test_monotonic_even_when_clock_stands_still(tmp_path: Path) -> None:
    key = tmp_path / "k.json"
    assert next_nonce(key, now_ms=1000) == 1000
    assert next_nonce(key, now_ms=1000) == 1001
    assert next_nonce(key, now_ms=900) == 1002
    assert next_nonce(key, now_ms=5000) == 5000
    assert nonce_path(key).read_text() == "5000"


def test_concurrent_processes_never_collide(tmp_path: Path) -> None:
    key = tmp_path / "k.json"
    code = (
        "import sys; from pathlib import Path; from client.nonces import next_nonce;"
        "print('\\n'.join(str(next_nonce(Path(sys.argv[1]), 777)) for _ in range(50)))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(key)], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    nonces: list[int] = []
    for p in procs:
        out, _ = p.communicate(timeout=60)
        nonces.extend(int(x) for x in out.split())
    assert len(nonces) == 200 and len(set(nonces)) == 200
    assert sorted(nonces) == list(range(777, 977))
