"""Snapshots: export/import round trip, the CLI, and damaged files."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from pathlib import Path

import pytest

from cli.main import main
from node.snapshot import (
    SNAPSHOT_MAGIC,
    SnapshotError,
    SnapshotHeader,
    export_snapshot,
    import_snapshot,
    read_snapshot,
)
from node.storage import Store, store_path
from state_machine.merkle_state import MerkleState
from tests.storage.helpers import commit, expected_state, make_block
from tests.storage.test_storage import SEED, new_store


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, bytes]:
    """A source store and its snapshot; tests only read them."""
    tmp_path = tmp_path_factory.mktemp("exported")
    data_dir = tmp_path / "src"
    with new_store(data_dir, blocks=25) as store:
        info = export_snapshot(store, tmp_path / "state.snap")
        assert info.height == 25 and info.state_root == store.state_root
        root = store.state_root
    return data_dir, info.path, root


def test_round_trip_into_an_empty_data_dir(
    tmp_path: Path, exported: tuple[Path, Path, bytes]
) -> None:
    src, snap, root = exported
    with Store.open(src) as original:
        entries = original.read_entries()
        meta = original.meta
    with import_snapshot(snap, tmp_path / "dst") as store:
        assert store.state_root == root and store.height == 25
    with Store.open(tmp_path / "dst") as store:
        assert store.read_entries() == entries
        assert store.meta.chain_id == meta.chain_id and store.meta.genesis_hash == meta.genesis_hash
        assert store.get_block(25) == make_block(SEED, 25).block
        assert store.get_qc(25) == make_block(SEED, 25).qc
        assert store.get_block(24) is None
        commit(store, make_block(SEED, 26))  # the imported node carries on from there


def test_import_refuses_a_store_that_exists(
    tmp_path: Path, exported: tuple[Path, Path, bytes]
) -> None:
    src, snap, _ = exported
    with pytest.raises(SnapshotError, match="already exists"):
        import_snapshot(snap, src)


def test_import_checks_the_expected_root(
    tmp_path: Path, exported: tuple[Path, Path, bytes]
) -> None:
    _, snap, root = exported
    with pytest.raises(SnapshotError, match="not the expected"):
        import_snapshot(snap, tmp_path / "dst", expect_root=bytes(32))
    assert not (store_path(tmp_path / "dst") / "data.mdb").exists()
    import_snapshot(snap, tmp_path / "dst", expect_root=root).close()


@pytest.mark.parametrize("seed", range(30))
def test_damaged_snapshot_is_refused_and_nothing_is_written(
    tmp_path: Path, exported: tuple[Path, Path, bytes], seed: int
) -> None:
    _, snap, _ = exported
    data = bytearray(snap.read_bytes())
    rng = random.Random(seed)
    mode = seed % 5
    if mode == 0:
        data = data[: rng.randrange(len(data))]
    elif mode == 1:
        pos = rng.randrange(len(data))
        data[pos] ^= 1 << rng.randrange(8)
    elif mode == 2:
        data += b"\x00"
    elif mode == 3:
        pos = rng.randrange(len(SNAPSHOT_MAGIC), len(data))
        data[pos : pos + 64] = rng.randbytes(64)
    else:
        data = data[: len(SNAPSHOT_MAGIC) + 3]
    bad = tmp_path / "bad.snap"
    bad.write_bytes(bytes(data))
    with pytest.raises(SnapshotError):
        import_snapshot(bad, tmp_path / "dst")
    assert not (store_path(tmp_path / "dst") / "data.mdb").exists()


def test_a_consistent_file_with_a_wrong_root_is_refused(
    tmp_path: Path, exported: tuple[Path, Path, bytes]
) -> None:
    """Rewrite the header's root and the checksum: only the Merkle check can catch it."""
    _, snap, _ = exported
    data = snap.read_bytes()
    start = len(SNAPSHOT_MAGIC)
    size = int.from_bytes(data[start : start + 4], "big")
    header = SnapshotHeader.from_wire(data[start + 4 : start + 4 + size])
    forged = dataclasses.replace(header, state_root=bytes(32))
    body = (
        data[:start]
        + len(forged.to_wire()).to_bytes(4, "big")
        + forged.to_wire()
        + data[start + 4 + size : -32]
    )
    bad = tmp_path / "forged.snap"
    bad.write_bytes(body + hashlib.sha256(body).digest())
    read_snapshot(bad)  # structurally fine
    with pytest.raises(SnapshotError, match="root mismatch"):
        import_snapshot(bad, tmp_path / "dst")


def test_cli_export_inspect_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "home" / "data"
    new_store(src, blocks=5).close()
    snap = tmp_path / "s.snap"
    assert main(["snapshot", "export", "--data", str(src), "--out", str(snap), "--json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["height"] == 5
    assert main(["snapshot", "inspect", str(snap), "--json"]) == 0
    inspected = json.loads(capsys.readouterr().out)
    assert inspected["root_verified"] and inspected["state_root"] == exported["state_root"]
    dst = tmp_path / "dst"
    args = [
        "snapshot",
        "import",
        str(snap),
        "--data",
        str(dst),
        "--expect-root",
        exported["state_root"],
    ]
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["state_root"] == exported["state_root"]
    # Importing twice, or a damaged file, is a one-line error with exit code 2.
    assert main(args) == 2
    assert capsys.readouterr().err.startswith("error: ")
    snap.write_bytes(snap.read_bytes()[:-1])
    assert main(["snapshot", "inspect", str(snap)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert (
        main(["snapshot", "export", "--data", str(tmp_path / "nothing"), "--out", str(snap)]) == 2
    )
    assert "no store" in capsys.readouterr().err


def test_export_beside_a_process_that_keeps_committing(tmp_path: Path) -> None:
    """Export opens the store while another process commits: a consistent, importable view."""
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    data_dir = tmp_path / "live"
    new_store(data_dir, blocks=1).close()
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.storage.crash_child", str(data_dir), str(SEED)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().startswith("ready")
        for i in range(3):
            with Store.open(data_dir) as store:
                info = export_snapshot(store, tmp_path / f"live{i}.snap")
            with import_snapshot(info.path, tmp_path / f"copy{i}") as copy:
                assert copy.state_root == info.state_root and copy.height == info.height
    finally:
        child.kill()
        child.wait()


def test_export_at_a_past_height_is_the_state_of_that_height(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "src"
    new_store(src, blocks=12).close()
    snap = tmp_path / "at7.snap"
    argv = ["snapshot", "export", "--data", str(src), "--out", str(snap), "--json"]
    assert main([*argv, "--height", "7"]) == 0
    exported = json.loads(capsys.readouterr().out)
    state = expected_state(SEED, 7)
    root = MerkleState.from_entries(sorted(state.items())).root()
    assert exported["height"] == 7 and exported["state_root"] == root.hex()
    header, entries = read_snapshot(snap)
    assert entries == sorted(state.items())
    assert header.block_hash == make_block(SEED, 7).block_hash
    assert header.block == make_block(SEED, 7).block and header.qc == make_block(SEED, 7).qc
    with import_snapshot(snap, tmp_path / "dst", expect_root=root) as store:
        assert store.height == 7 and store.state_root == root
        commit(store, make_block(SEED, 8))  # and carries on with the next block
    # Past the kept history, or not committed yet: a one-line error.
    with Store.open(src) as store:
        store.proof_history_heights = 2
        commit(store, make_block(SEED, 13))
    for height in ("7", "99"):
        assert main([*argv, "--height", height]) == 2
        assert capsys.readouterr().err.startswith("error: cannot export height")
    assert main([*argv, "--height", "-1"]) == 2
    assert "--height must be 0 or more" in capsys.readouterr().err
