"""Listing by governance on a real four-validator localnet: validators propose and vote with
``perpbft gov`` (signed with their node keys), a new asset and its perpetual are listed at
their execution heights on every node, and the demo traders trade in the new market through
the SDK like in any genesis market. The cluster audits every node's stored state at the end
(conservation of every asset, the listed one included)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from client.trader import Trader
from state_machine.governance.params import GovernanceParams
from tests.cluster import Cluster

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
GOVERNANCE = GovernanceParams(voting_period_blocks=60, execution_delay_blocks=3)

SOL_PERP = {
    "market_id": 4,
    "symbol": "SOL-PERP",
    "kind": "perp",
    "base_asset_id": 3,
    "quote_asset_id": 0,
    "lot_base_atoms": 10_000_000,  # 0.01 SOL
    "tick_lot_atoms": 100,  # a tick of 0.01 USDC on a lot
    "min_notional_atoms": 10_000_000,
    "max_price_ticks": 100_000_000,
    "max_order_lots": 10_000_000,
    "max_leverage": 20,
    "margin_tiers": [{"notional_floor_atoms": 0, "mmr_ppm": 25_000}],
    "maker_fee_ppm": 150,
    "taker_fee_ppm": 450,
    "price_band_ppm": 100_000,
    "oracle_max_age_ms": 60_000,
    "initial_price_ticks": 15_000,  # 150.00
    "impact_notional_atoms": 10_000_000_000,
}


def gov_command(cluster: Cluster, validator: int, *args: str) -> list[str]:
    key = cluster.layout.homes[validator] / "config" / "node_key.json"
    return [sys.executable, "-m", "cli.main", "gov", *args, "--node", cluster.api(validator),
            "--key", str(key), "--json"]  # fmt: skip


def gov_answer(returncode: int, stdout: str, stderr: str) -> dict[str, Any]:
    assert returncode == 0, stderr + stdout
    answer: dict[str, Any] = json.loads(stdout)
    return answer


def gov_cli(cluster: Cluster, validator: int, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        gov_command(cluster, validator, *args), capture_output=True, text=True, timeout=60, cwd=REPO
    )
    return gov_answer(done.returncode, done.stdout, done.stderr)


def gov_cli_together(cluster: Cluster, calls: list[tuple[int, tuple[str, ...]]]) -> list[Any]:
    """Several ``perpbft gov`` commands at once: on a loaded machine one after the other they
    can outlast a short voting period (each is a Python start-up)."""
    running = [
        subprocess.Popen(
            gov_command(cluster, validator, *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for validator, args in calls
    ]
    answers = []
    for process in running:
        stdout, stderr = process.communicate(timeout=60)
        answers.append(gov_answer(process.returncode, stdout, stderr))
    return answers


def pass_proposal(cluster: Cluster, tmp_path: Path, title: str, content: dict[str, Any]) -> int:
    path = tmp_path / f"{title.replace(' ', '_')}.json"
    path.write_text(json.dumps(content))
    answer = gov_cli(cluster, 0, "propose", str(path), "--title", title)
    (result,) = answer["results"]
    assert result["code"] == "ok", result
    pid = int(result["order_id"])
    votes = gov_cli_together(cluster, [(v, ("vote", str(pid), "yes")) for v in (0, 1, 2)])
    for vote in votes:
        assert vote["results"][0]["code"] == "ok", vote
    shown: dict[str, Any] = {}

    def executed() -> bool:
        shown.update(cluster.get(3, f"/v1/gov/proposals/{pid}"))
        return bool(shown["status"] == "executed")

    cluster.wait_for(executed, f"proposal {pid} executed", timeout_s=90)
    assert shown["yes_power"] == 3 and shown["total_power"] == 4
    return pid


def test_a_market_listed_by_governance_trades_on_every_node(tmp_path: Path) -> None:
    with Cluster(tmp_path, governance=GOVERNANCE) as cluster:
        cluster.start_all()
        cluster.wait_height(2)
        asset = {"kind": "list_asset", "asset": {"asset_id": 3, "symbol": "SOL", "decimals": 9}}
        pass_proposal(cluster, tmp_path, "list SOL", asset)
        listing = {"kind": "list_market", "market": SOL_PERP}
        pass_proposal(cluster, tmp_path, "list SOL-PERP", listing)
        for i in range(4):
            market = cluster.get(i, "/v1/markets/SOL-PERP")
            assert (market["state"], market["mark_price"]) == ("active", "150")

        with Trader(cluster.api(1), cluster.layout.demo_keys[0]) as seller:
            rested = seller.place_limit("SOL-PERP", "sell", price="150", size="5")
            assert rested["results"][0]["status"] == "resting", rested
        with Trader(cluster.api(2), cluster.layout.demo_keys[1]) as buyer:
            filled = buyer.place_limit("SOL-PERP", "buy", price="150", size="2", tif="ioc")
            assert filled["results"][0]["code"] == "ok", filled
            height = filled["height"]
            (pos,) = [p for p in buyer.account()["positions"] if p["market"] == "SOL-PERP"]
            assert pos["size"] == "2"
        cluster.wait_height(height + 1)
        for i in range(4):
            market = cluster.get(i, "/v1/markets/SOL-PERP")
            assert market["open_interest"] == "2" and market["last_trade_price"] == "150"
