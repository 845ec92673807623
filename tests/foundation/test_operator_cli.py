"""Operator-facing command-line behaviour (issue "Operator experience"): defaults that agree,
exit codes scripts can test, one-line errors instead of tracebacks."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import random
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from prometheus_client import generate_latest

from cli.errors import CliError
from cli.main import main
from cli.trade_common import describe_result, format_time_ms
from cli.watch_cmd import Watch
from client.http import DEFAULT_NODE_URL
from nativebuild import loader
from node.config import ApiSettings, P2PSettings
from node.metrics import Metrics
from node.testnet import DEFAULT_BASE_PORT, ports_for
from node.version import build_info


def test_testnet_and_command_line_defaults_agree() -> None:
    """node0 of `perpbft testnet` answers on the URL the trader commands use by default,
    with the p2p and API ports of a node written by `perpbft init`."""
    node0 = ports_for(DEFAULT_BASE_PORT, 0)
    assert node0.api == urlsplit(DEFAULT_NODE_URL).port == 26657
    assert f":{node0.api}" in ApiSettings().listen and f":{node0.p2p}" in P2PSettings().listen


def test_localnet_status_exits_1_while_nodes_are_down(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "net"
    base = random.randrange(31_000, 39_000, 10)
    out = ["testnet", "--validators", "2", "--out", str(home / "net"), "--base-port", str(base)]
    assert main([*out, "--json"]) == 0
    capsys.readouterr()
    assert main(["localnet", "status", "--home", str(home), "--json"]) == 1
    rows = json.loads(capsys.readouterr().out)["nodes"]
    assert [r["pid"] for r in rows] == [None, None]
    assert main(["localnet", "status", "--home", str(home)]) == 1
    assert "down" in capsys.readouterr().out
    assert main(["localnet", "status", "--home", str(tmp_path / "none")]) == 2


def test_times_in_tables_are_utc_dates() -> None:
    assert format_time_ms(1_795_310_580_123) == "2026-11-22 01:23:00.123"
    assert format_time_ms(0) == "1970-01-01 00:00:00.000"
    assert format_time_ms(None) == "" and format_time_ms(-1) == ""


def test_a_withdrawal_result_names_its_withdrawal_id() -> None:
    result = {"action": "withdraw_request", "code": "ok", "order_id": 1}
    assert describe_result(result, None) == "ok withdrawal_id=1"
    order = {"action": "place_order", "code": "ok", "order_id": 7, "status": "resting"}
    assert describe_result(order, None) == "ok order_id=7 status=resting"


@pytest.mark.parametrize(("code", "exit_code"), [("unknown_market", 2), ("rate_limited", 1)])
def test_watch_error_exit_codes_match_the_book_command(code: str, exit_code: int) -> None:
    """`watch book NOPE` is the same mistake as `book NOPE`: exit 2; a refusal exits 1."""
    args = argparse.Namespace(count=None, json=True, channel="book", market="NOPE")
    with pytest.raises(CliError) as caught:
        Watch(args).on_message({"type": "error", "code": code, "message": "no"})
    assert caught.value.exit_code == exit_code


def test_bench_state_root_with_a_missing_dir_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nonexistent"
    assert main(["bench", "state-root", "--dir", str(missing), "--sizes", "100"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --dir {missing} is not an existing directory\n"


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"perpbft {importlib.metadata.version('perpbft')} (")


def test_build_info_and_process_metrics_are_exported() -> None:
    text = generate_latest(Metrics().registry).decode()
    info = build_info()
    assert f'perpbft_build_info{{implementation="{info["implementation"]}"' in text
    assert f'version="{info["version"]}"' in text
    assert f'state_machine="{loader.build_name()}"' in text
    for name in ("process_resident_memory_bytes", "process_open_fds", "process_cpu_seconds_total"):
        assert f"\n{name} " in text, name
    assert "python_gc_collections_total{generation=" in text


def complete(script: str, line: str) -> list[str]:
    """What bash offers for ``line`` (the cursor at its end) with the generated script."""
    program = (
        f"{script}\nCOMP_WORDS=({line}); "
        + ('COMP_WORDS+=(""); ' if line.endswith(" ") else "")
        + 'COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _perpbft; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return [w for w in done.stdout.split("\n") if w]


def test_bash_completion_follows_the_command_tree(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    assert complete(script, "perpbft ben") == ["bench"]
    assert complete(script, "perpbft bench state-root --d") == ["--dir"]
    assert complete(script, "perpbft start --h") == ["--help", "--home"]
    assert complete(script, "perpbft watch ")[:2] == ["book", "trades"]
    assert complete(script, "perpbft completion ") == ["bash", "zsh", "--help"]
    assert main(["completion", "zsh"]) == 0
    assert "bashcompinit" in capsys.readouterr().out
