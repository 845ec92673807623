"""Failures that stop a running node: one structured event, then a documented exit code.

A node that cannot write its store (disk full, I/O error) or finds its own state broken (the
conservation audit fails) must stop: running on would mean answering clients and voting on a
state that is not on disk, or not right. Such a failure is raised as :class:`NodeFatal` where
it happens; the runner logs it as ONE event (``fatal_storage_error`` or ``fatal_audit_failed``,
level critical, no traceback: the cause is known and named) and the process exits with the
code below. The exit codes are documented in docs/OPERATIONS.md ("Exit codes"), so a
supervisor can tell "free some disk" from "restore the state" without parsing logs.

Safety does not depend on any of this: a block is one LMDB write transaction, so a failed
commit leaves the last whole block on disk, and the node restarts from it.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lmdb

EXIT_OK = 0
EXIT_START_REFUSED = 2  # the node did not start: config, files, lock, store checks, disk space
EXIT_STORAGE_FAILED = 3  # the store could not be written while running (disk full, I/O error)
EXIT_AUDIT_FAILED = 4  # the conservation or index audit failed on the node's own state

# An I/O error with less than this free on the data dir's file system is a full disk: LMDB
# reports a short write as EIO, not ENOSPC, and a write that failed for lack of space leaves
# about nothing free behind it.
DISK_FULL_MARGIN_BYTES = 4 * 1024 * 1024

# lmdb errors carry no errno, only "what: strerror(errno)"; these are the ones we name.
_NAMED_ERRNOS = (
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EFBIG,
    errno.EIO,
    errno.EROFS,
    errno.EACCES,
    errno.ENOMEM,
)


class NodeFatal(Exception):
    """The node must stop; ``event`` and ``fields`` are what the runner logs, once."""

    def __init__(self, event: str, exit_code: int, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.event = event
        self.exit_code = exit_code
        self.message = message
        self.fields = fields


class FatalExit(Exception):
    """Raised by the runner after it logged a :class:`NodeFatal`: exit with ``exit_code``."""

    def __init__(self, exit_code: int) -> None:
        super().__init__(f"exit {exit_code}")
        self.exit_code = exit_code


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer can still use on the file system holding ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def leaves(error: BaseException) -> Iterator[BaseException]:
    """Every exception inside (possibly nested) exception groups, in order."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from leaves(inner)
    else:
        yield error


def first_of(error: BaseException, kind: type[BaseException]) -> BaseException | None:
    return next((leaf for leaf in leaves(error) if isinstance(leaf, kind)), None)


def underlying_errno(exc: BaseException) -> int | None:
    """The errno behind a storage failure, following ``raise ... from`` and context links."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen.errno
        if isinstance(seen, lmdb.Error):
            text = str(seen)
            for code in _NAMED_ERRNOS:
                if text.endswith(os.strerror(code)):
                    return code
        seen = seen.__cause__ or seen.__context__
    return None


def _has(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def storage_cause(exc: BaseException, free: int | None) -> tuple[str, str]:
    """(cause code, what to do) for a failed store write; ``free``: bytes free just after."""
    code = underlying_errno(exc)
    if _has(exc, lmdb.MapFullError):
        return "map_full", "raise [storage] map_size_bytes, then restart the node"
    if code in (errno.ENOSPC, errno.EDQUOT) or (
        code in (errno.EIO, errno.EFBIG, None)
        and free is not None
        and free < DISK_FULL_MARGIN_BYTES
    ):
        return "disk_full", "free space on the data dir's file system, then restart the node"
    if code == errno.EIO:
        return "io_error", "check the disk (dmesg, SMART) before restarting the node"
    if code in (errno.EROFS, errno.EACCES) or _has(exc, lmdb.ReadonlyError):
        return "read_only", "the data dir is not writable: check the mount and its permissions"
    if code == errno.ENOMEM:
        return "out_of_memory", "give the node more memory, then restart it"
    return "storage_error", "check the disk and the node's log, then restart the node"


def storage_failure(exc: BaseException, data_dir: Path, height: int, operation: str) -> NodeFatal:
    """The fatal event for a store write that failed during ``operation``."""
    try:
        free: int | None = free_bytes(data_dir)
    except OSError:
        free = None
    cause, action = storage_cause(exc, free)
    code = underlying_errno(exc)
    return NodeFatal(
        "fatal_storage_error",
        EXIT_STORAGE_FAILED,
        f"{operation} failed ({cause}): {exc}; {action}",
        cause=cause,
        errno=errno.errorcode.get(code, str(code)) if code is not None else None,
        error=str(exc),
        operation=operation,
        data_dir=str(data_dir),
        free_bytes=free,
        height=height,
        action=action,
    )


def state_diverged(height: int, ours: bytes, certified: bytes) -> NodeFatal:
    """The fatal event of a full node whose state root after ``height`` differs from the root
    the validators certified in the next block: its own execution went wrong (a bug or a
    damaged store), and serving that state would answer clients with wrong balances."""
    return NodeFatal(
        "fatal_state_diverged",
        EXIT_AUDIT_FAILED,
        f"state root after block {height} differs from the certified one; restore the data "
        "dir from a snapshot or state-sync it",
        height=height,
        state_root=ours.hex(),
        certified_root=certified.hex(),
    )
