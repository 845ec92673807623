"""End to end through the command line against a running localnet (real processes).

One localnet for the module (``perpbft localnet up`` in a temporary home, free ports, 300 ms
blocks), then every trader command as a subprocess, as a user would type it: fund (transfer),
place, fill, query, amend, cancel, leverage, proofs (a good one verifies, a tampered one
fails), the live stream, and last a liquidation after the oracle feeders are told to crash the
price. ``localnet down`` must leave no process behind.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_utils.address import to_checksum_address

from evm import chain
from localnet.evm import DEMO_TOKENS_ATOMS, LocalEvm, anvil_path
from localnet.net import Localnet
from tests.cluster import free_base_port

pytestmark = pytest.mark.slow

CLI_TIMEOUT_S = 60
UP_TIMEOUT_S = 120


class Net:
    def __init__(self, home: Path, base_port: int) -> None:
        self.home = home
        self.base_port = base_port
        self.localnet = Localnet(home)
        self.up_summary: dict[str, Any] = {}
        self.api = f"http://127.0.0.1:{base_port + 1}"
        self.keys = home / "net" / "keys"
        self.genesis = home / "net" / "genesis.json"

    def run(
        self, *argv: str, key: int | None = 0, node: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, PERPBFT_NODE=node or self.api)
        env.pop("PERPBFT_KEY", None)
        if key is not None:
            env["PERPBFT_KEY"] = str(self.keys / f"demo{key}.json")
        return subprocess.run(
            [sys.executable, "-m", "cli.main", *argv],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            cwd=self.home,
        )

    def ok_json(self, *argv: str, key: int | None = 0) -> Any:
        proc = self.run(*argv, "--json", key=key)
        assert proc.returncode == 0, f"{argv}: rc {proc.returncode}\n{proc.stdout}{proc.stderr}"
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def address(self, index: int) -> str:
        proc = self.run("keys", "show", str(self.keys / f"demo{index}.json"), key=None)
        return proc.stdout.strip()

    def wait_for(self, what: str, check: Any, timeout_s: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    home = tmp_path_factory.mktemp("localnet")
    n = Net(home, free_base_port(4))
    up = n.run(
        "localnet", "up", "--home", str(home), "--base-port", str(n.base_port),
        "--block-ms", "300", "--json", key=None, timeout=UP_TIMEOUT_S,
    )  # fmt: skip
    try:
        assert up.returncode == 0, f"localnet up failed:\n{up.stdout}\n{up.stderr}"
        n.up_summary = json.loads(up.stdout.strip().splitlines()[-1])
        yield n
    finally:
        down = n.run("localnet", "down", "--home", str(home), key=None)
        assert down.returncode == 0, down.stderr
        assert n.localnet.running() == [], "localnet down left processes running"


def test_up_commits_blocks_with_trades(net: Net) -> None:
    """What `make localnet` promises: committed blocks and a live market within bounded time."""
    status = net.ok_json("localnet", "status", "--home", str(net.home), key=None)
    assert len(status["nodes"]) == 4
    assert all(row["height"] >= 2 and row["peers"] == 3 for row in status["nodes"])
    assert {"maker", "taker", "leverage", "oracle0", "oracle3"} <= set(status["helpers"])

    def trades() -> Any:
        body = net.ok_json("trades", "BTC-PERP", key=None)
        return body["trades"] or None

    net.wait_for("demo trades on BTC-PERP", trades, timeout_s=45)
    book = net.ok_json("book", "BTC-PERP", key=None)
    assert book["bids"] and book["asks"], "the demo maker should keep both sides quoted"


@pytest.mark.skipif(anvil_path() is None, reason="anvil not installed (make anvil)")
def test_up_starts_anvil_with_the_bridge_deployed(net: Net) -> None:
    contracts = net.up_summary["bridge_contracts"]
    assert contracts is not None, net.up_summary["bridge"]
    w3 = chain.connect(contracts["rpc_url"])
    assert w3.eth.get_code(to_checksum_address(contracts["bridge"]))
    bridge = chain.bridge_contract(w3, contracts["bridge"])
    assert bridge.functions.validator_count().call() == 4
    wallet = LocalEvm(net.home).wallets()[0]
    token = chain.token_contract(w3, contracts["token"])
    assert token.functions.balanceOf(wallet.evm_address).call() == DEMO_TOKENS_ATOMS
    assert "anvil" in net.localnet.running()


def test_logs_show_each_process_and_refuse_an_unknown_name(net: Net) -> None:
    every = net.run("localnet", "logs", "--home", str(net.home), "-n", "3", key=None)
    assert every.returncode == 0, every.stderr
    names = {line.split(":", 1)[0] for line in every.stdout.splitlines() if ":" in line}
    assert {"node0", "node3", "maker", "taker", "oracle0"} <= names
    one = net.run("localnet", "logs", "node1", "--home", str(net.home), "-n", "5", key=None)
    assert one.returncode == 0 and 0 < len(one.stdout.splitlines()) <= 5
    assert not one.stdout.startswith("node1:")  # one process: its lines as they are
    missing = net.run("localnet", "logs", "node9", "--home", str(net.home), key=None)
    assert missing.returncode == 2 and "no log named node9" in missing.stderr


def test_transfer_funds_another_account(net: Net) -> None:
    to = net.address(3)
    before = _usdc(net.ok_json("account", to, key=None))
    tx = net.ok_json("transfer", to, "USDC", "1234.5", key=1)
    assert tx["status"] == "committed" and tx["results"][0]["code"] == "ok"
    after = _usdc(net.ok_json("account", to, key=None))
    assert after - before == pytest.approx(1234.5)


def test_place_amend_cancel_and_list(net: Net) -> None:
    market = net.ok_json("book", "ETH-PERP", key=None)
    best_bid = float(market["bids"][0][0])
    price = f"{best_bid * 0.97:.2f}"  # rests below the book, inside the 10 % band
    placed = net.ok_json("order", "place", "ETH-PERP", "buy", "0.05", "--price", price,
                         "--client-id", "77")  # fmt: skip
    result = placed["results"][0]
    assert result["code"] == "ok" and result["status"] == "resting"
    order_id = str(result["order_id"])
    listed = net.ok_json("order", "list", "--market", "ETH-PERP")["orders"]
    assert [o["order_id"] for o in listed] == [result["order_id"]]
    assert listed[0]["price"] == price.rstrip("0").rstrip(".")

    new_price = f"{best_bid * 0.96:.2f}"
    amended = net.ok_json("order", "amend", "ETH-PERP", order_id, "--price", new_price)
    assert amended["results"][0]["code"] == "ok"
    listed = net.ok_json("order", "list", "--market", "ETH-PERP")["orders"]
    assert float(listed[0]["price"]) == pytest.approx(float(new_price))
    assert listed[0]["size"] == "0.05"

    cancelled = net.ok_json("order", "cancel", "ETH-PERP", "--client-id", "77")
    assert cancelled["results"][0]["code"] == "ok"
    assert net.ok_json("order", "list", "--market", "ETH-PERP")["orders"] == []
    again = net.run("order", "cancel", "ETH-PERP", order_id)
    assert again.returncode == 1 and "unknown_order" in again.stdout


def test_market_order_fills_against_the_maker(net: Net) -> None:
    filled = net.ok_json("order", "place", "BTC-PERP", "buy", "0.002", key=2)
    result = filled["results"][0]
    assert result["code"] == "ok" and int(result["filled_lots"]) == 20
    account = net.ok_json("account", key=2)
    position = next(p for p in account["positions"] if p["market"] == "BTC-PERP")
    assert position["side"] == "long" and position["size"] == "0.002"
    fills = [e for e in filled.get("events", []) if e.get("kind") == "fill"]
    assert fills, "the committed transaction lists its fill events"
    tx = net.ok_json("tx", filled["tx_id"], key=None)
    assert tx["height"] == filled["height"] and tx["results"][0]["code"] == "ok"


def test_triggers_reduce_only_cancel_all_withdraw_and_tables(net: Net) -> None:
    """demo2 holds the 0.002 BTC-PERP long bought above."""
    mark = float(net.ok_json("book", "BTC-PERP", key=None)["bids"][0][0])
    take = net.ok_json("order", "place", "BTC-PERP", "sell", "0.001",
                       "--take-profit", f"{mark * 1.05:.0f}", key=2)  # fmt: skip
    stop = net.ok_json("order", "place", "BTC-PERP", "sell", "0.001", "--stop",
                       f"{mark * 0.95:.0f}", "--reduce-only", key=2)  # fmt: skip
    for placed in (take, stop):
        assert placed["results"][0]["code"] == "ok"
        assert placed["results"][0]["status"] == "waiting"
        assert [e["kind"] for e in placed["events"]] == ["trigger_accepted"]
    # Waiting, they are open orders: listed with their trigger, counted, in the table.
    waiting = net.ok_json("order", "list", "--market", "BTC-PERP", key=2)["orders"]
    ids = [take["results"][0]["order_id"], stop["results"][0]["order_id"]]
    assert [(o["order_id"], o["status"]) for o in waiting] == [(i, "waiting") for i in ids]
    assert [o["trigger_kind"] for o in waiting] == ["take_profit", "stop"]
    assert waiting[1]["trigger_price"] == f"{mark * 0.95:.0f}" and waiting[1]["reduce_only"]
    assert net.ok_json("account", key=2)["open_orders"] == 2
    table = net.run("order", "list", "--market", "BTC-PERP", key=2)
    assert table.returncode == 0 and f"mark <= {mark * 0.95:.0f}" in table.stdout
    every = net.ok_json("order", "cancel", "all", "--all", key=2)
    assert every["results"][0]["code"] == "ok" and every["results"][0]["count"] == 2
    cancelled = [(e["kind"], e["order_id"], e["reason"]) for e in every["events"]]
    assert cancelled == [("trigger_cancelled", i, "user") for i in ids]
    assert net.ok_json("order", "list", "--market", "BTC-PERP", key=2)["orders"] == []

    reduce = net.ok_json("order", "place", "BTC-PERP", "sell", "0.001", "--reduce-only", key=2)
    assert reduce["results"][0]["code"] == "ok" and int(reduce["results"][0]["filled_lots"]) == 10
    account = net.ok_json("account", key=2)
    position = next(p for p in account["positions"] if p["market"] == "BTC-PERP")
    assert position["size"] == "0.001"

    withdrawn = net.ok_json("withdraw-request", "USDC", "10", "--destination", "bank", key=2)
    assert withdrawn["results"][0]["code"] == "ok"
    text = net.run("withdraw-request", "USDC", "1", key=2)  # the id is named as a withdrawal's
    assert text.returncode == 0 and "ok withdrawal_id=" in text.stdout, text.stdout
    isolated = net.ok_json("leverage", "ETH-PERP", "5", "--isolated", key=2)
    assert isolated["results"][0]["code"] == "ok"

    # Tables for people: the same data without --json.
    table = net.run("account", key=2)
    assert table.returncode == 0 and "BTC-PERP" in table.stdout and "{" not in table.stdout
    address = net.address(2)
    assert table.stdout.splitlines()[0] == f"account {address}"  # whole, on one line
    trades = net.run("watch", "trades", "BTC-PERP", "--count", "1", "--seconds", "30", key=None)
    assert trades.returncode == 0 and trades.stdout.strip(), trades.stderr
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} ", trades.stdout), trades.stdout
    listed = net.run("trades", "BTC-PERP", key=None)
    assert "time (UTC)" in listed.stdout and re.search(r"\d\d:\d\d:\d\d\.\d{3}", listed.stdout)


def test_leverage(net: Net) -> None:
    ok = net.ok_json("leverage", "ETH-PERP", "10", key=1)
    assert ok["results"][0]["code"] == "ok"
    bad = net.run("leverage", "ETH-PERP", "1000", key=1)
    assert bad.returncode == 1
    assert "invalid_leverage" in bad.stdout
    spot = net.run("leverage", "BTC/USDC", "2", key=1)
    assert spot.returncode == 1 and "not_perp" in spot.stdout


def test_rejections_and_usage_errors_have_codes(net: Net) -> None:
    band = net.run("order", "place", "BTC-PERP", "buy", "0.01", "--price", "1000")
    assert band.returncode == 1 and "REJECTED price_band" in band.stdout
    tick = net.run("order", "place", "BTC-PERP", "buy", "0.01", "--price", "60000.001")
    assert tick.returncode == 2 and "tick" in tick.stderr and "Traceback" not in tick.stderr
    market = net.run("book", "DOGE-PERP", key=None)
    assert market.returncode == 2 and "no market" in market.stderr
    watched = net.run("watch", "book", "DOGE-PERP", "--seconds", "20", key=None)
    assert watched.returncode == 2 and "unknown_market" in watched.stderr, watched.stderr
    no_key = net.run("order", "place", "BTC-PERP", "buy", "0.01", key=None)
    assert no_key.returncode == 2 and "--key" in no_key.stderr
    down = net.run("book", "BTC-PERP", key=None, node="http://127.0.0.1:1")
    assert down.returncode == 2 and "cannot reach node" in down.stderr


def test_watch_streams_the_book(net: Net) -> None:
    proc = net.run(
        "watch", "book", "BTC-PERP", "--count", "1", "--seconds", "20", "--json", key=None
    )
    assert proc.returncode == 0, proc.stderr
    messages = [json.loads(line) for line in proc.stdout.splitlines()]
    assert messages[0]["type"] == "snapshot" and messages[0]["seq"] == 0
    assert [m["seq"] for m in messages] == list(range(len(messages)))


def test_proof_verifies_and_tampered_proof_fails(net: Net, tmp_path: Path) -> None:
    address = net.address(0)
    saved = tmp_path / "proof.json"
    good = net.run("proof", "account", address, "--genesis", str(net.genesis), "--save", str(saved))
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.startswith("VERIFIED")

    body = json.loads(saved.read_text())
    entry = next(e for e in body["entries"] if e["value"] is not None)
    entry["value"] = _flip_last_hex_digit(entry["value"])
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(body))
    bad = net.run(
        "proof", "account", address, "--genesis", str(net.genesis),
        "--proof-file", str(tampered),
    )  # fmt: skip
    assert bad.returncode == 1
    assert bad.stdout.startswith("NOT VERIFIED") and "Merkle proof" in bad.stdout

    body = json.loads(saved.read_text())
    sig = body["certified_by"]["commit_qc"]
    qc_wire = sig["wire"]
    sig["wire"] = qc_wire[:-2] + ("00" if qc_wire[-2:] != "00" else "01")
    forged = tmp_path / "forged_qc.json"
    forged.write_text(json.dumps(body))
    bad_qc = net.run(
        "proof", "account", address, "--genesis", str(net.genesis),
        "--proof-file", str(forged),
    )  # fmt: skip
    assert bad_qc.returncode == 1 and "commit QC" in bad_qc.stdout

    # The same account at the earlier height of the saved proof, once the chain moved on.
    then = json.loads(saved.read_text())["height"]
    net.wait_for("a later block", lambda: _height(net) > then + 1)
    past = net.run(
        "proof", "account", address, "--genesis", str(net.genesis), "--height", str(then),
        "--json",
    )  # fmt: skip
    assert past.returncode == 0, past.stdout + past.stderr
    verdict = json.loads(past.stdout.strip().splitlines()[-1])
    assert verdict["verified"] and verdict["height"] == then


def test_liquidation_after_oracle_crash(net: Net) -> None:
    """Leave demo3 with little USDC and a leveraged long, crash the oracle 30 %: the risk engine
    must close the position (the vault takes it over or ADL closes it), and the account's
    ledger must show the liquidation."""
    spare = _usdc_exact(net.ok_json("account", key=3)) - Decimal(200)
    net.ok_json("transfer", net.address(0), "USDC", str(spare), key=3)
    net.ok_json("leverage", "BTC-PERP", "20", key=3)
    bought = net.ok_json("order", "place", "BTC-PERP", "buy", "0.02", key=3)
    assert int(bought["results"][0]["filled_lots"]) == 200

    net.wait_for("the leveraged demo accounts' positions", lambda: _bot_lines(net, " filled "))
    vault_before = net.ok_json("vault", key=None)
    crash = net.run("localnet", "oracle", "--home", str(net.home), "--crash", "30%", key=None)
    assert crash.returncode == 0, crash.stderr
    assert "localnet logs leverage" in crash.stdout and " vault --node " in crash.stdout
    try:

        def oracle_crashed() -> bool:
            market = net.ok_json("funding", "BTC-PERP", key=None)
            return float(market["oracle_price"]) < 60_000 * 0.8

        net.wait_for("the oracle to follow the feeders' crash", oracle_crashed, timeout_s=30)

        def position_closed() -> bool:
            account = net.ok_json("account", key=3)
            return not any(
                p["market"] == "BTC-PERP" and p["side"] == "long" for p in account["positions"]
            )

        net.wait_for("demo3's long to be liquidated", position_closed, timeout_s=30)

        # The account's ledger records the liquidation and what closed the position.
        address = net.address(3)

        def ledger() -> list[dict[str, Any]]:
            url = f"{net.api}/v1/accounts/{address}/ledger"
            answer = httpx.get(url, params={"limit": 1000}, timeout=10)
            assert answer.status_code == 200, answer.text
            items: list[dict[str, Any]] = answer.json()["ledger"]
            return items if any(e["kind"] == "liquidation" for e in items) else []

        items = net.wait_for("a liquidation in demo3's ledger", ledger, timeout_s=10)
        liquidation = next(e for e in reversed(items) if e["kind"] == "liquidation")
        assert liquidation["account"] == address
        assert liquidation["height"] > bought["height"]
        assert Decimal(liquidation["value"]) < Decimal(liquidation["maintenance"])
        closing = {
            e["kind"]
            for e in items
            if e["height"] >= liquidation["height"] and e["kind"] != "liquidation"
        }
        assert closing & {"fill", "position_transfer", "backstop", "adl"}, closing

        # The demo traffic's leveraged longs are liquidated too, as their bot's log shows; the
        # vault ends solvent (what it could not carry was ADL'd, reported as socialised).
        lines = net.wait_for(
            "liquidations in the leverage bot's log",
            lambda: _bot_lines(net, ": liquidation "),
            timeout_s=30,
        )
        for line in lines:  # "levN ADDR: height H: liquidation value=V maintenance=M"
            fields = dict(w.split("=", 1) for w in line.split(": liquidation ")[1].split())
            assert Decimal(fields["value"]) < Decimal(fields["maintenance"]), line
        vault = net.ok_json("vault", "--limit", "50", key=None)
        assert vault["under_water"] is False and Decimal(vault["equity"]) >= 0
        assert Decimal(vault_before["equity"]) > 0
        taken = [e for e in vault["ledger"] if e["kind"] == "position_transfer"]
        refused = _bot_lines(net, ": vault_refused ")
        assert taken or refused, "the vault neither took a position over nor refused one"
    finally:
        net.run("localnet", "oracle", "--home", str(net.home), "--reset", key=None)


def _bot_lines(net: Net, marker: str) -> list[str]:
    """Lines of the leverage bot's log that contain ``marker``."""
    logs = net.run("localnet", "logs", "leverage", "--home", str(net.home), "-n", "500", key=None)
    assert logs.returncode == 0, logs.stderr
    return [line for line in logs.stdout.splitlines() if marker in line]


def _usdc(account: dict[str, Any]) -> float:
    for balance in account["balances"]:
        if balance["asset"] == "USDC":
            return float(balance["available"])
    return 0.0


def _usdc_exact(account: dict[str, Any]) -> Decimal:
    for balance in account["balances"]:
        if balance["asset"] == "USDC":
            return Decimal(balance["available"])
    return Decimal(0)


def _flip_last_hex_digit(text: str) -> str:
    last = text[-1]
    return text[:-1] + ("0" if last != "0" else "1")


def test_api_reachable_directly(net: Net) -> None:
    """The CLI's default node for a default localnet is node0's API; here it is the env var."""
    assert httpx.get(net.api + "/v1/status", timeout=5).json()["chain_id"] == "perpbft-localnet"


def _height(net: Net) -> int:
    height: int = httpx.get(net.api + "/v1/status", timeout=5.0).json()["height"]
    return height
