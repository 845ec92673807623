"""Client-side nonces: monotonic per key file, unique across concurrent commands.

A nonce is the current time in milliseconds unless that is not above the last nonce issued for
the same key file, in which case it is the last one plus one. The last nonce lives in
``<keyfile>.nonce`` and is read and advanced under an exclusive ``flock``, so two commands
started in the same millisecond still get different nonces. Milliseconds keep the nonces inside
the chain's time window (DESIGN section 3) and let several programs share a key.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from client.errors import CliError


def nonce_path(key_file: Path) -> Path:
    return key_file.with_name(key_file.name + ".nonce")


def next_nonce(key_file: Path, now_ms: int | None = None) -> int:
    path = nonce_path(key_file)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise CliError(f"cannot open nonce file {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        raw = os.read(fd, 64).decode("ascii", "replace").strip()
        last = int(raw) if raw.isdigit() else 0
        nonce = max(now, last + 1)
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, str(nonce).encode("ascii"))
        os.fsync(fd)
        return nonce
    finally:
        os.close(fd)  # closing releases the lock
