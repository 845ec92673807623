"""``snapshot import`` refuses another chain's snapshot before writing anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.main import main
from node.snapshot import SnapshotError, export_snapshot, import_snapshot
from node.storage import store_path
from state_machine.genesis import default_genesis, genesis_to_json
from tests.storage.helpers import CHAIN_ID, GENESIS_HASH
from tests.storage.test_storage import new_store


@pytest.fixture
def snap(tmp_path: Path) -> Path:
    with new_store(tmp_path / "src", blocks=3) as store:
        return export_snapshot(store, tmp_path / "s.snap").path


def test_import_checks_chain_id_and_genesis_hash(tmp_path: Path, snap: Path) -> None:
    with pytest.raises(SnapshotError, match="is of chain"):
        import_snapshot(snap, tmp_path / "a", expect_genesis=("other-chain", GENESIS_HASH))
    with pytest.raises(SnapshotError, match="genesis hash"):
        import_snapshot(snap, tmp_path / "b", expect_genesis=(CHAIN_ID, bytes(32)))
    assert not store_path(tmp_path / "a").exists() and not store_path(tmp_path / "b").exists()
    import_snapshot(snap, tmp_path / "c", expect_genesis=(CHAIN_ID, GENESIS_HASH)).close()


def test_cli_import_into_a_home_of_another_chain_is_refused(
    tmp_path: Path, snap: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    assert main(["init", "--home", str(home), "--json"]) == 0
    capsys.readouterr()
    args = ["snapshot", "import", str(snap), "--home", str(home)]
    assert main(args) == 2
    assert "does not exist" in capsys.readouterr().err  # no genesis yet: cannot check
    genesis = default_genesis("another-chain", [(b"\x07" * 32, 1)], [])
    (home / "config" / "genesis.json").write_text(genesis_to_json(genesis))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: snapshot is of chain") and "another-chain" in err
    assert not store_path(home / "data").exists()
    # --genesis names the file to check against when importing into a bare data dir.
    data_args = ["snapshot", "import", str(snap), "--data", str(tmp_path / "d")]
    assert main([*data_args, "--genesis", str(home / "config" / "genesis.json")]) == 2
    assert "is of chain" in capsys.readouterr().err
