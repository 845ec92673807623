"""Operator-facing command-line behaviour (issue "Operator experience"): defaults that agree,
exit codes scripts can test, one-line errors instead of tracebacks."""

from __future__ import annotations

import json
import random
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from cli.main import main
from client.http import DEFAULT_NODE_URL
from node.config import ApiSettings, P2PSettings
from node.testnet import DEFAULT_BASE_PORT, ports_for


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
