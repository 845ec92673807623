"""The node's conservation audit: it passes on a real state, it fails on a state with one
atom too many (even though that state's root and every store check are consistent), the
failure is the documented fatal event and exit code, and the metrics count both."""

from __future__ import annotations

import errno
from pathlib import Path

import lmdb
import pytest

from node.audit_runner import AuditFailed, Auditor, audit_stored_state
from node.chain import Chain
from node.fatal import EXIT_AUDIT_FAILED, NodeFatal, storage_cause, underlying_errno
from node.metrics import Metrics
from node.storage import DEFAULT_MAP_SIZE_BYTES, StoreError
from node.testnet import write_testnet
from state_machine.genesis import Genesis, genesis_from_json
from tests.cluster import free_base_port
from tests.node.audit_helpers import copy_with_extra_atoms


@pytest.fixture(scope="module")
def genesis(tmp_path_factory: pytest.TempPathFactory) -> Genesis:
    root = tmp_path_factory.mktemp("audit")
    layout = write_testnet(root / "net", 1, base_port=free_base_port(1))
    return genesis_from_json((layout.homes[0] / "config" / "genesis.json").read_text())


def sample(metrics: Metrics, result: str) -> float:
    value = metrics.registry.get_sample_value("perpbft_state_audits_total", {"result": result})
    return float(value or 0)


def auditor(metrics: Metrics, tmp_path: Path, every: int = 10) -> Auditor:
    return Auditor(every, tmp_path, metrics.state_audits, metrics.state_audit_seconds)


def test_audit_passes_on_a_real_state_and_is_counted(genesis: Genesis, tmp_path: Path) -> None:
    chain = Chain.open(tmp_path / "data", genesis, map_size_bytes=DEFAULT_MAP_SIZE_BYTES)
    metrics = Metrics()
    try:
        auditor(metrics, tmp_path).check(chain.state, chain.height, "startup")
    finally:
        chain.close()
    assert (sample(metrics, "ok"), sample(metrics, "failed")) == (1, 0)
    count = metrics.registry.get_sample_value("perpbft_state_audit_seconds_count")
    assert count == 1


def test_one_atom_too_many_fails_the_audit_with_the_fatal_exit(
    genesis: Genesis, tmp_path: Path
) -> None:
    Chain.open(tmp_path / "good", genesis, map_size_bytes=DEFAULT_MAP_SIZE_BYTES).close()
    copy_with_extra_atoms(tmp_path / "good", tmp_path / "bad", genesis)
    assert audit_stored_state(tmp_path / "good", genesis) == 0
    with pytest.raises(AuditFailed, match=r"asset 0: .* atoms in the system"):
        audit_stored_state(tmp_path / "bad", genesis)
    # Every store check passes on the copy: only the audit sees the extra atom.
    chain = Chain.open(tmp_path / "bad", genesis, map_size_bytes=DEFAULT_MAP_SIZE_BYTES)
    metrics = Metrics()
    try:
        with pytest.raises(NodeFatal) as raised:
            auditor(metrics, tmp_path / "bad").check(chain.state, chain.height, "startup")
    finally:
        chain.close()
    fatal = raised.value
    assert fatal.event == "fatal_audit_failed" and fatal.exit_code == EXIT_AUDIT_FAILED == 4
    assert "asset 0" in fatal.fields["rule"] and fatal.fields["when"] == "startup"
    assert fatal.fields["data_dir"] == str(tmp_path / "bad")
    assert (sample(metrics, "ok"), sample(metrics, "failed")) == (0, 1)


def test_audit_schedule() -> None:
    metrics = Metrics()
    every_10 = Auditor(10, Path("."), metrics.state_audits, metrics.state_audit_seconds)
    assert [h for h in range(1, 31) if every_10.due(h)] == [10, 20, 30]
    startup_only = Auditor(0, Path("."), metrics.state_audits, metrics.state_audit_seconds)
    assert not any(startup_only.due(h) for h in range(1, 100))


def wrapped(error: lmdb.Error) -> StoreError:
    """An lmdb error as Store.commit_block re-raises it (``from None`` keeps the context)."""
    try:
        try:
            raise error
        except lmdb.Error as exc:
            raise StoreError(f"commit of block 7 failed: {exc}") from None
    except StoreError as outer:
        return outer


def test_storage_causes() -> None:
    """LMDB reports a short write as EIO: the free space decides whether the disk is full."""
    eio = wrapped(lmdb.DiskError("mdb_txn_commit: Input/output error"))
    enospc = wrapped(lmdb.DiskError("mdb_txn_commit: No space left on device"))
    assert underlying_errno(eio) == errno.EIO and underlying_errno(enospc) == errno.ENOSPC
    assert storage_cause(enospc, 10**12)[0] == "disk_full"
    assert storage_cause(eio, 0)[0] == "disk_full"
    assert storage_cause(eio, 10**12)[0] == "io_error"
    map_full = wrapped(lmdb.MapFullError("mdb_put: MDB_MAP_FULL: Environment mapsize limit"))
    assert storage_cause(map_full, 0)[0] == "map_full"
    assert storage_cause(OSError(errno.EROFS, "Read-only file system"), 10**12)[0] == "read_only"
