"""Sub-accounts, agent keys and fee tiers end to end: real processes, from the command line.

A localnet (``perpbft localnet up``, 4 validators, no demo traffic) whose genesis gains the
optional ``fee_tiers`` and ``accounts_policy`` sections before its first start, then every
command a user would type: create and list a sub-account, fund it, trade for it with ``--as``,
approve an agent that trades for the master and the sub-account but is refused a transfer
(``agent_not_allowed``), revoke it (``not_authorized``), a stranger refused (``not_authorized``),
the sub-account limit (``subaccount_limit``), a verified account proof of the sub-account, and
fees: a maker rebate once the 14-day volume reaches the second tier, shown per fill.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from localnet.net import Localnet, UpOptions
from tests.cluster import free_base_port
from tests.e2e.test_localnet_cli import UP_TIMEOUT_S, Net

pytestmark = pytest.mark.slow

# Tier 1 from 100 USDC of 14-day volume: taker 300 ppm, maker -100 ppm (a rebate).
FEE_TIERS = [
    {"min_volume_atoms": 0, "taker_fee_ppm": 500, "maker_fee_ppm": 100},
    {"min_volume_atoms": 100_000_000, "taker_fee_ppm": 300, "maker_fee_ppm": -100},
]
MAX_SUBACCOUNTS = 2


def _add_sections(home: Path) -> None:
    """Every copy of genesis.json gets the optional sections (before any node started)."""
    copies = [home / "net" / "genesis.json", *home.glob("net/*/config/genesis.json")]
    assert len(copies) >= 5
    for path in copies:
        body = json.loads(path.read_text())
        body["fee_tiers"] = FEE_TIERS
        body["accounts_policy"] = {"max_subaccounts": MAX_SUBACCOUNTS, "max_agents": 4}
        path.write_text(json.dumps(body, indent=2) + "\n")


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    home = tmp_path_factory.mktemp("acctsnet")
    n = Net(home, free_base_port(4))
    Localnet(home).write(UpOptions(base_port=n.base_port, block_ms=300))
    _add_sections(home)
    up = n.run(
        "localnet", "up", "--home", str(home), "--base-port", str(n.base_port),
        "--block-ms", "300", "--no-traffic", "--json", key=None, timeout=UP_TIMEOUT_S,
    )  # fmt: skip
    try:
        assert up.returncode == 0, f"localnet up failed:\n{up.stdout}\n{up.stderr}"
        yield n
    finally:
        down = n.run("localnet", "down", "--home", str(home), key=None)
        assert down.returncode == 0, down.stderr
        assert n.localnet.running() == [], "localnet down left processes running"


def _usdc(account: dict[str, Any]) -> float:
    return next(float(b["available"]) for b in account["balances"] if b["asset"] == "USDC")


def _refused(net: Net, code: str, *argv: str, key: int = 0) -> None:
    proc = net.run(*argv, key=key)
    assert proc.returncode == 1, f"{argv}: rc {proc.returncode}\n{proc.stdout}{proc.stderr}"
    assert code in proc.stdout, proc.stdout


def _oracle(net: Net) -> float:
    """The BTC-PERP oracle price once the feeders have set it (the price band is around it)."""

    def price() -> float:
        return float(net.ok_json("funding", "BTC-PERP", key=None).get("oracle_price") or 0)

    found: float = net.wait_for("an oracle price", price)
    return found


def test_subaccount_agent_and_fees_from_the_cli(net: Net) -> None:
    master = net.address(0)
    created = net.ok_json("subaccount", "create", "alpha")
    result = created["results"][0]
    assert result["code"] == "ok" and result["order_id"] == 0
    sub = result["message"]
    listed = net.ok_json("subaccount", "list")
    assert [s["address"] for s in listed["subaccounts"]] == [sub]
    assert net.ok_json("subaccount", "list", sub, key=None)["master"] == master
    table = net.run("subaccount", "list")
    assert table.returncode == 0 and "alpha" in table.stdout

    funded = net.ok_json("subaccount", "transfer", sub, "--deposit", "--amount", "5000")
    assert funded["results"][0]["code"] == "ok"
    assert _usdc(net.ok_json("account", sub, key=None)) == pytest.approx(5000)

    # The master's key trades for the sub-account: the order and its fills are the sub's.
    px = f"{_oracle(net) * 0.98:.0f}"
    placed = net.ok_json("order", "place", "BTC-PERP", "buy", "0.001", "--price", px, "--as", sub)
    assert [r["code"] for r in placed["results"]] == ["ok", "ok"]
    assert len(net.ok_json("order", "list", "--as", sub)["orders"]) == 1
    assert net.ok_json("order", "list")["orders"] == []  # the master's own book is empty

    # An agent (demo1's key) trades for the master's sub-account, never moves funds.
    agent = net.address(1)
    approved = net.ok_json("agent", "approve", agent, "--name", "bot")
    assert approved["results"][0]["code"] == "ok"
    agents = net.ok_json("agent", "list")["agents"]
    assert [(a["agent"], a["name"]) for a in agents] == [(agent, "bot")]
    cancelled = net.ok_json("order", "cancel", "all", "--all", "--as", sub, key=1)
    assert cancelled["results"][1]["count"] == 1
    _refused(net, "agent_not_allowed", "transfer", net.address(2), "USDC", "1", "--as", master,
             key=1)  # fmt: skip
    _refused(net, "agent_not_allowed", "withdraw-request", "USDC", "1", "--as", sub, key=1)
    _refused(net, "not_authorized", "order", "place", "BTC-PERP", "buy", "0.001", "--price", px,
             "--as", sub, key=2)  # fmt: skip
    revoked = net.ok_json("agent", "revoke", agent)
    assert revoked["results"][0]["code"] == "ok"
    _refused(net, "not_authorized", "order", "cancel", "all", "--all", "--as", master, key=1)

    # The limit from genesis, and the sub-account's proof names its master.
    assert net.ok_json("subaccount", "create", "beta")["results"][0]["code"] == "ok"
    _refused(net, "subaccount_limit", "subaccount", "create", "gamma")
    proof = net.run("proof", "account", sub, "--genesis", str(net.genesis), key=None)
    assert proof.returncode == 0 and proof.stdout.startswith("VERIFIED"), proof.stdout


def test_fee_tiers_and_maker_rebate_from_the_cli(net: Net) -> None:
    schedule = net.ok_json("fees", net.address(3), key=None)
    assert [t["maker_fee_ppm"] for t in schedule["tiers"]] == [100, -100]
    assert schedule["tier"] is None or schedule["tier"] == 0
    px = f"{_oracle(net):.0f}"

    def trade() -> dict[str, Any]:
        maker = net.ok_json("order", "place", "BTC-PERP", "sell", "0.01", "--price", px,
                            "--tif", "alo", key=3)  # fmt: skip
        assert maker["results"][0]["status"] == "resting", maker
        taker = net.ok_json("order", "place", "BTC-PERP", "buy", "0.01", "--price", px,
                            "--tif", "ioc", key=2)  # fmt: skip
        fills = [e for e in taker["events"] if e["kind"] == "fill"]
        assert fills, taker
        fill: dict[str, Any] = fills[0]
        return fill

    first = trade()  # tier 0 for both: a maker fee
    assert float(first["maker_fee"]) > 0 and first["maker_fee_asset"] == "USDC"
    mine = net.ok_json("fees", key=3)
    assert mine["tier"] == 1 and float(mine["volume_14d"]) >= 100
    second = trade()  # tier 1: the maker is paid a rebate out of the taker's fee
    assert float(second["maker_fee"]) < 0 < float(second["taker_fee"])
    assert float(second["taker_fee"]) + float(second["maker_fee"]) >= 0
    assert net.ok_json("order", "list", key=3)["orders"] == []  # nothing left resting
    # The account's fill history shows each fill's fees in their asset (the rebate negative).
    history = httpx.get(f"{net.api}/v1/accounts/{net.address(3)}/fills", timeout=10).json()
    maker_fees = [float(f["maker_fee"]) for f in history["fills"] if f["maker"] == net.address(3)]
    assert any(fee < 0 for fee in maker_fees) and any(fee > 0 for fee in maker_fees)
