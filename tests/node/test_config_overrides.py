"""Config keys by flag and environment over the file (node/overrides.py, `perpbft config show`,
`perpbft start --SECTION.KEY`): precedence flag > env > file > default, errors that name the
flag or variable, and the node started with the result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main
from node.config import CONFIG_FILE, ConfigError, init_home
from node.overrides import env_overrides, flag_overrides, resolve
from node.runner import prepare
from node.testnet import write_testnet


def home_with_file(tmp_path: Path, text: str) -> Path:
    home = tmp_path / "home"
    init_home(home, moniker="filed")
    (home / CONFIG_FILE).write_text(text)
    return home


def test_flag_beats_env_beats_file_beats_default(tmp_path: Path) -> None:
    home = home_with_file(tmp_path, 'moniker = "filed"\n[api]\nlisten = "127.0.0.1:36001"\n')
    env = {
        "PERPBFT_API__LISTEN": "127.0.0.1:36002",
        "PERPBFT_MEMPOOL__TXS_MAX": "1_000",
        "PERPBFT_METRICS__ENABLED": "false",
        "PERPBFT_HOME": "/elsewhere",  # not a config key: left alone
    }
    flags = {"api.listen": "127.0.0.1:36003", "p2p.peers": None}
    config, origins = resolve(home, flags, env)
    assert config.api.listen == "127.0.0.1:36003" and origins["api.listen"] == "flag"
    assert config.mempool.txs_max == 1000 and origins["mempool.txs_max"] == "env"
    assert config.metrics.enabled is False and origins["metrics.enabled"] == "env"
    assert config.node.moniker == "filed" and origins["moniker"] == "file"
    assert origins["p2p.listen"] == "default"
    config, origins = resolve(home, {}, env)
    assert config.api.listen == "127.0.0.1:36002" and origins["api.listen"] == "env"
    config, origins = resolve(home, {}, {})
    assert config.api.listen == "127.0.0.1:36001" and origins["api.listen"] == "file"


def test_lists_are_comma_separated(tmp_path: Path) -> None:
    home = home_with_file(tmp_path, "")
    peer = "ab" * 32 + "@127.0.0.1:36010"
    config, _ = resolve(home, {"p2p.peers": f"{peer}, {'cd' * 32}@127.0.0.1:36020"}, {})
    assert config.p2p.peers == (peer, "cd" * 32 + "@127.0.0.1:36020")


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        ({}, {"PERPBFT_API__LISTN": "x"}, r"\$PERPBFT_API__LISTN names no config key"),
        ({"mempool.txs_max": "many"}, {}, "--mempool.txs_max must be an integer"),
        ({}, {"PERPBFT_MEMPOOL__TXS_MAX": "0"}, r"\$PERPBFT_MEMPOOL__TXS_MAX: .* out of range"),
        ({"metrics.enabled": "yes"}, {}, "--metrics.enabled must be true or false"),
        ({"api.listen": "0.0.0.0:26656"}, {}, "already used by p2p.listen"),
    ],
)
def test_bad_overrides_name_their_source(
    tmp_path: Path, flags: dict[str, str], env: dict[str, str], message: str
) -> None:
    home = home_with_file(tmp_path, "")
    with pytest.raises(ConfigError, match=message):
        resolve(home, flags, env)


def test_config_show_prints_values_and_origins(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = home_with_file(tmp_path, '[log]\nlevel = "debug"\n')
    monkeypatch.setenv("PERPBFT_LOG__FORMAT", "json")
    argv = ["config", "show", "--home", str(home), "--mempool.per_signer_max", "7"]
    assert main([*argv, "--json"]) == 0
    keys = json.loads(capsys.readouterr().out)["keys"]
    assert keys["log.level"] == {"value": "debug", "origin": "file"}
    assert keys["log.format"] == {"value": "json", "origin": "env"}
    assert keys["mempool.per_signer_max"] == {"value": 7, "origin": "flag"}
    assert keys["p2p.peers"] == {"value": [], "origin": "default"}
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert 'log.format' in text and '"json"  [env PERPBFT_LOG__FORMAT]' in text
    monkeypatch.setenv("PERPBFT_LOG__FORMT", "json")
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("error: $PERPBFT_LOG__FORMT names no config key")


def test_the_node_starts_with_the_overrides(tmp_path: Path) -> None:
    layout = write_testnet(tmp_path / "net", 1, base_port=36_100)
    home = layout.homes[0]
    overrides = [
        *env_overrides({"PERPBFT_API__LISTEN": "127.0.0.1:36199"}),
        *flag_overrides({"consensus.block_interval_ms": "250"}),
    ]
    config, _, node = prepare(home, overrides)
    assert config.api.listen == "127.0.0.1:36199"
    assert node.config.consensus.block_interval_ms == 250
