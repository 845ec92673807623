"""A genesis ceremony between operators who never share a private key: each publishes
``perpbft genesis info``; ``perpbft genesis build`` makes one genesis and the peer lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main
from node.config import load_config
from node.keys import read_key_file
from state_machine.genesis import genesis_from_json


def test_operators_build_one_genesis_from_their_public_infos(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    infos: list[Path] = []
    keys: list[bytes] = []
    for i in range(3):
        home = tmp_path / f"op{i}"
        assert main(["init", "--home", str(home), "--moniker", f"op{i}"]) == 0
        capsys.readouterr()
        assert main(["genesis", "info", "--home", str(home), "--address", f"10.9.0.{i}:26656"]) == 0
        text = capsys.readouterr().out
        info = json.loads(text)
        assert set(info) == {"moniker", "pubkey", "power", "address"}  # nothing secret
        keys.append(read_key_file(load_config(home).node_key_path).public_key)
        assert info["pubkey"] == keys[-1].hex()
        path = tmp_path / f"op{i}.json"
        path.write_text(text)
        infos.append(path)
    out = tmp_path / "genesis.json"
    args = ["genesis", "build", "--chain-id", "perpbft-ceremony", "--out", str(out), "--json"]
    for path in infos:
        args += ["--info", str(path)]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    genesis = genesis_from_json(out.read_text())
    assert [v.pubkey for v in genesis.validators] == keys
    assert summary["genesis_hash"] == genesis.hash().hex()
    assert summary["peers"] == [f"{k.hex()}@10.9.0.{i}:26656" for i, k in enumerate(keys)]


def test_a_damaged_info_file_is_refused_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"pubkey": "zz", "power": 1, "address": "10.0.0.1:1"}))
    out = tmp_path / "genesis.json"
    code = main(["genesis", "build", "--chain-id", "x", "--out", str(out), "--info", str(bad)])
    assert code != 0
    assert "bad.json" in capsys.readouterr().err
    assert not out.exists()


def test_a_ceremony_can_turn_staking_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--staking``: the power in the infos is each validator's self-stake in whole USDC, and
    each record publishes the info's address; a power below the minimum self-stake is refused
    naming the validator."""
    infos: list[Path] = []
    for i, power in enumerate((1_000, 2_000)):
        home = tmp_path / f"op{i}"
        assert main(["init", "--home", str(home)]) == 0
        capsys.readouterr()
        address = f"10.9.0.{i}:26656"
        argv = ["genesis", "info", "--home", str(home), "--address", address]
        assert main([*argv, "--power", str(power)]) == 0
        path = tmp_path / f"op{i}.json"
        path.write_text(capsys.readouterr().out)
        infos.append(path)
    out = tmp_path / "genesis.json"
    args = ["genesis", "build", "--chain-id", "perpbft-staking", "--out", str(out), "--json"]
    for path in infos:
        args += ["--info", str(path)]
    assert main([*args, "--epoch-blocks", "30"]) == 2  # tuning without --staking
    capsys.readouterr()
    assert main([*args, "--staking", "--epoch-blocks", "30", "--active-set-size", "7"]) == 0
    capsys.readouterr()
    genesis = genesis_from_json(out.read_text())
    assert genesis.staking is not None
    assert (genesis.staking.epoch_length_blocks, genesis.staking.active_set_size) == (30, 7)
    addresses = [o.p2p_address for o in genesis.staking.operators]
    assert addresses == ["10.9.0.0:26656", "10.9.0.1:26656"]
    assert main([*args, "--staking", "--min-self-stake-usdc", "1500"]) != 0
    assert "validators[0].power" in capsys.readouterr().err
