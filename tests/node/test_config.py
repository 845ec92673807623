"""Node home, ``perpbft init``, the strict config loader and the home lock."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cli.errors import CliError
from cli.main import main
from cli.node_cmd import load_home_config
from node.config import (
    CONFIG_FILE,
    HOME_ENV,
    NODE_KEY_FILE,
    SECTIONS,
    Config,
    ConfigError,
    HomeError,
    HomeLockedError,
    init_home,
    load_config,
    lock_home,
    parse_config,
    render_config,
    resolve_home,
)
from node.keys import read_key_file
from p2p import PeerAddress, TransportConfig
from tests.conftest import REPO_ROOT

KEY_A = "aa" * 32
KEY_B = "bb" * 32


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_config(home: Path, text: str) -> None:
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / CONFIG_FILE).write_text(text)


# ---------------------------------------------------------------------------- init


def test_init_writes_config_key_and_data_with_private_modes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "node0"
    assert main(["init", "--home", str(home), "--moniker", "val-0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    key = read_key_file(home / NODE_KEY_FILE)  # refuses anything looser than 0600
    assert out["node_id"] == key.public_key.hex()
    assert out["node_key_created"] is True
    assert mode(home / NODE_KEY_FILE) == 0o600
    for directory in (home, home / "config", home / "data"):
        assert directory.is_dir() and mode(directory) == 0o700
    config = load_config(home)
    assert config.node.moniker == "val-0"
    assert config == dataclasses.replace(
        Config(home=home), node=dataclasses.replace(Config(home=home).node, moniker="val-0")
    )
    assert config.data_path == home / "data"
    assert config.node_key_path == home / NODE_KEY_FILE
    text = (home / CONFIG_FILE).read_text()
    assert "# largest message" in text and "frame_bytes_max = 4_194_304" in text


def test_init_refuses_an_initialised_home_unless_forced_and_keeps_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "node"
    assert main(["init", "--home", str(home), "--moniker", "first"]) == 0
    key_before = (home / NODE_KEY_FILE).read_bytes()
    (home / CONFIG_FILE).write_text('moniker = "edited"\n')
    capsys.readouterr()

    assert main(["init", "--home", str(home), "--moniker", "second"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "already initialised" in err and "--force" in err
    assert err.count("\n") == 1  # one line, no traceback
    assert (home / CONFIG_FILE).read_text() == 'moniker = "edited"\n'

    assert main(["init", "--home", str(home), "--moniker", "second", "--force"]) == 0
    assert "existing key kept" in capsys.readouterr().out
    assert (home / NODE_KEY_FILE).read_bytes() == key_before
    assert load_config(home).node.moniker == "second"


def test_init_rejects_a_bad_moniker_and_a_file_as_home(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="moniker"):
        init_home(tmp_path / "h", moniker="has space")
    (tmp_path / "file").write_text("x")
    with pytest.raises(HomeError, match="not a directory"):
        init_home(tmp_path / "file", moniker="n")


def test_init_refuses_a_home_whose_node_is_running(tmp_path: Path) -> None:
    home = tmp_path / "node"
    init_home(home, moniker="n")
    with lock_home(load_config(home)), pytest.raises(HomeLockedError, match=str(os.getpid())):
        init_home(home, moniker="n", force=True)


# ---------------------------------------------------------------------------- round trip


def test_config_round_trips_through_the_rendered_file(tmp_path: Path) -> None:
    base = Config(home=tmp_path)
    config = dataclasses.replace(
        base,
        node=dataclasses.replace(base.node, moniker="v.1", data_dir="/var/lib/perpbft"),
        p2p=dataclasses.replace(
            base.p2p,
            listen="[::]:7000",
            peers=(f"{KEY_A}@10.0.0.1:26656", f"{KEY_B}@[::1]:26656"),
            full_nodes=(KEY_A,),
            frame_bytes_max=1024 * 1024,
        ),
        metrics=dataclasses.replace(base.metrics, enabled=False),
        log=dataclasses.replace(base.log, format="json", level="debug"),
        storage=dataclasses.replace(base.storage, pruning_keep_blocks=100_000),
    )
    text = render_config(config)
    assert parse_config(text, tmp_path) == config
    assert parse_config(render_config(base), tmp_path) == base
    assert parse_config("", tmp_path) == base  # every key has a default
    assert config.data_path == Path("/var/lib/perpbft")  # absolute paths stay absolute
    assert config.peer_addresses() == [
        PeerAddress(bytes.fromhex(KEY_A), "10.0.0.1", 26656),
        PeerAddress(bytes.fromhex(KEY_B), "::1", 26656),
    ]
    assert config.full_node_keys() == [bytes.fromhex(KEY_A)]


def test_transport_config_follows_the_p2p_section(tmp_path: Path) -> None:
    config = parse_config(
        '[p2p]\nlisten = "127.0.0.1:0"\nidle_timeout_ms = 20000\nban_ms = 5\n', tmp_path
    )
    transport = config.transport_config()
    transport.validate()
    assert (transport.listen_host, transport.listen_port) == ("127.0.0.1", 0)
    assert transport.idle_timeout_ms == 20_000 and transport.ban_ms == 5
    # Every p2p key other than the address lists and the node's gossip timing maps onto the
    # transport field of that name.
    for field in dataclasses.fields(type(config.p2p)):
        if field.name not in ("listen", "peers", "full_nodes", "gossip_flush_ms"):
            assert getattr(transport, field.name) == getattr(config.p2p, field.name)
    assert TransportConfig().frame_bytes_max == config.p2p.frame_bytes_max


# ---------------------------------------------------------------------------- invalid input

INVALID = [
    ('monikr = "x"\n', "unknown key monikr (did you mean moniker?)"),
    ("[p2pp]\nlisten = 1\n", "unknown key p2pp"),
    ("[p2p]\nfram_bytes_max = 5000\n", "unknown key p2p.fram_bytes_max"),
    ("[p2p]\nframe_bytes_max = 0\n", "p2p.frame_bytes_max = 0 is out of range"),
    ('[p2p]\nframe_bytes_max = "big"\n', "p2p.frame_bytes_max must be an integer, got a string"),
    ("[consensus]\nblock_interval_ms = 0.5\n", "consensus.block_interval_ms must be an integer"),
    ("[mempool]\ntxs_max = true\n", "mempool.txs_max must be an integer, got a boolean"),
    ("[storage]\npruning_keep_blocks = -1\n", "storage.pruning_keep_blocks = -1 is out of range"),
    (
        "[storage]\nproof_history_heights = 100001\n",
        "storage.proof_history_heights = 100001 is out of range",
    ),
    (
        "[storage]\narchive = true\npruning_keep_blocks = 1000\n",
        "storage.archive keeps every block: set storage.pruning_keep_blocks = 0",
    ),
    ('[api]\nlisten = "localhost"\n', "api.listen"),
    ('[metrics]\nlisten = "127.0.0.1:99999"\n', "metrics.listen"),
    ('[metrics]\nenabled = "yes"\n', "metrics.enabled must be true or false"),
    ('[p2p]\npeers = ["nokey@1.2.3.4:5"]\n', "p2p.peers[0]"),
    ('[p2p]\npeers = "x"\n', "p2p.peers must be a list"),
    (f'[p2p]\npeers = ["{KEY_A}@a:1", 5]\n', "p2p.peers[1] must be a string"),
    (f'[p2p]\npeers = ["{KEY_A}@a:1", "{KEY_A}@b:2"]\n', "p2p.peers lists one public key twice"),
    (f'[p2p]\nfull_nodes = ["{KEY_A}", "{KEY_A}"]\n', "p2p.full_nodes lists an entry twice"),
    ('[p2p]\nfull_nodes = ["abc"]\n', "p2p.full_nodes[0]"),
    ('[log]\nformat = "xml"\n', "log.format = 'xml' must be one of auto, json, text"),
    ('[log]\nlevel = "loud"\n', "log.level"),
    ("p2p = 5\n", "p2p must be a table"),
    ('moniker = "a b"\n', "moniker = 'a b'"),
    ('data_dir = ""\n', "data_dir"),
    (
        "[p2p]\nkeepalive_interval_ms = 20000\nidle_timeout_ms = 30000\n",
        "p2p.keepalive_interval_ms",
    ),
    (
        "[consensus]\nview_timeout_base_ms = 5000\nview_timeout_cap_ms = 1000\n",
        "consensus.view_timeout_cap_ms",
    ),
    ("[p2p\n", "invalid TOML"),
    (
        '[p2p]\nlisten = "127.0.0.1:9000"\n[api]\nlisten = "127.0.0.1:9000"\n',
        "api.listen = '127.0.0.1:9000' is already used by p2p.listen",
    ),
]


@pytest.mark.parametrize(("text", "message"), INVALID)
def test_invalid_config_names_the_file_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    write_config(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    error = str(info.value)
    assert error.startswith(f"{tmp_path / CONFIG_FILE}: ")
    assert message in error
    assert "\n" not in error


def _all_fields() -> list[tuple[str, dataclasses.Field[object]]]:
    return [(s, f) for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)]


@pytest.mark.parametrize(("section", "field"), _all_fields(), ids=lambda x: getattr(x, "name", x))
def test_every_key_rejects_wrong_types_and_out_of_range_values(
    tmp_path: Path, section: str, field: dataclasses.Field[object]
) -> None:
    dotted = f"{section}.{field.name}" if section else field.name
    header = f"[{section}]\n" if section else ""
    bad_values = ["{ a = 1 }"]  # a table is never a valid value
    lo, hi = field.metadata["lo"], field.metadata["hi"]
    if lo is not None:
        bad_values += [str(lo - 1), str(hi + 1), "1.5"]
    for bad in bad_values:
        with pytest.raises(ConfigError, match=rf"config\.toml: {re.escape(dotted)}\b"):
            parse_config(f"{header}{field.name} = {bad}\n", tmp_path, str(tmp_path / CONFIG_FILE))


def test_missing_config_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="perpbft init --home"):
        load_config(tmp_path / "nowhere")


# ---------------------------------------------------------------------------- home


def test_home_precedence_flag_then_environment_then_default(tmp_path: Path) -> None:
    env = {HOME_ENV: str(tmp_path / "from-env")}
    assert resolve_home(tmp_path / "flag", env) == tmp_path / "flag"
    assert resolve_home(None, env) == tmp_path / "from-env"
    assert resolve_home(None, {}) == Path("~/.perpbft").expanduser()
    assert resolve_home(None, {HOME_ENV: ""}) == Path("~/.perpbft").expanduser()
    assert resolve_home("rel", {}) == Path.cwd() / "rel"


def test_init_uses_the_environment_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "env-home"))
    assert main(["init", "--moniker", "n"]) == 0
    assert (tmp_path / "env-home" / CONFIG_FILE).is_file()
    assert main(["init", "--moniker", "n", "--home", str(tmp_path / "flag-home")]) == 0
    assert (tmp_path / "flag-home" / CONFIG_FILE).is_file()
    capsys.readouterr()


# ---------------------------------------------------------------------------- lock


def test_lock_is_exclusive_and_names_the_holder(tmp_path: Path) -> None:
    init_home(tmp_path, moniker="n")
    config = load_config(tmp_path)
    with lock_home(config) as lock:
        assert (tmp_path / "data" / "LOCK").read_text().strip() == str(os.getpid())
        with pytest.raises(HomeLockedError) as info:
            lock_home(config)
        assert f"pid {os.getpid()}" in str(info.value)
        assert str(lock.path) in str(info.value)
    lock_home(config).release()  # free again once released


def test_lock_held_by_another_process(tmp_path: Path) -> None:
    init_home(tmp_path, moniker="n")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from node.config import load_config, lock_home;"
            f"lock = lock_home(load_config(Path({str(tmp_path)!r})));"
            "print('locked', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(HomeLockedError, match=f"pid {holder.pid}"):
            lock_home(load_config(tmp_path))
    finally:
        holder.communicate(input="", timeout=30)
    # The kernel drops a dead process's flock: the home is usable again.
    lock_home(load_config(tmp_path)).release()


def test_lock_needs_an_initialised_home(tmp_path: Path) -> None:
    with pytest.raises(HomeError, match="perpbft init"):
        lock_home(Config(home=tmp_path / "missing"))


def test_init_writes_a_given_config(tmp_path: Path) -> None:
    # How `perpbft testnet` writes each validator's home with its own ports and peers.
    base = Config(home=tmp_path)
    config = dataclasses.replace(
        base,
        p2p=dataclasses.replace(base.p2p, listen="127.0.0.1:30001", peers=(f"{KEY_A}@h:1",)),
        api=dataclasses.replace(base.api, listen="127.0.0.1:30002"),
    )
    result = init_home(tmp_path, config=config)
    assert load_config(tmp_path) == config
    assert result.key_created and result.node_id == read_key_file(result.node_key_path).public_key


def test_cli_config_errors_are_one_line_usage_errors(tmp_path: Path) -> None:
    write_config(tmp_path, "[p2p]\nframe_bytes_max = 1\n")
    with pytest.raises(CliError) as info:
        load_home_config(str(tmp_path))
    assert info.value.exit_code == 2
    assert info.value.message == (
        f"{tmp_path / CONFIG_FILE}: p2p.frame_bytes_max = 1 is out of range (1024..1073741824)"
    )
    write_config(tmp_path, "")
    assert load_home_config(str(tmp_path)) == Config(home=tmp_path)
