"""The order tools end to end through the command line against a running localnet (real
processes, 300 ms blocks): a TWAP placed, filled slice by slice every 30 s of block time and
listed with its progress, another cancelled; a TP/SL pair set on the resulting position, listed
with the open orders and cancelled; an order with an attached TP/SL and a good-til time that
the chain cancels at that time; refusals with their codes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from client.trader import Trader
from state_machine.codec import decode_raw
from tests.cluster import free_base_port
from tests.e2e.test_localnet_cli import UP_TIMEOUT_S, Net

pytestmark = pytest.mark.slow

TRADER = 3  # demo3: no other test of this module's localnet trades with it


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    home = tmp_path_factory.mktemp("localnet-order-tools")
    n = Net(home, free_base_port(4))
    up = n.run(
        "localnet", "up", "--home", str(home), "--base-port", str(n.base_port),
        "--block-ms", "300", "--json", key=None, timeout=UP_TIMEOUT_S,
    )  # fmt: skip
    try:
        assert up.returncode == 0, f"localnet up failed:\n{up.stdout}\n{up.stderr}"
        n.wait_for("a quoted BTC-PERP book", lambda: best_bid(n), timeout_s=60)
        yield n
    finally:
        down = n.run("localnet", "down", "--home", str(home), key=None)
        assert down.returncode == 0, down.stderr
        assert n.localnet.running() == [], "localnet down left processes running"


def best_bid(net: Net) -> float | None:
    bids = net.ok_json("book", "BTC-PERP", key=None)["bids"]
    return float(bids[0][0]) if bids else None


def listing(net: Net) -> dict[str, Any]:
    body: dict[str, Any] = net.ok_json("order", "list", "--market", "BTC-PERP", key=TRADER)
    return body


def position_size(net: Net) -> str | None:
    account = net.ok_json("account", key=TRADER)
    pos = next((p for p in account["positions"] if p["market"] == "BTC-PERP"), None)
    return pos["size"] if pos is not None and pos["side"] != "flat" else None


def test_a_twap_fills_slice_by_slice_and_shows_its_progress(net: Net) -> None:
    placed = net.ok_json("twap", "place", "BTC-PERP", "buy", "0.004", "--duration", "1m",
                         "--randomize", key=TRADER)  # fmt: skip
    result = placed["results"][0]
    assert (result["code"], result["status"]) == ("ok", "running")
    twap_id = result["order_id"]
    kinds = [e["kind"] for e in placed["events"]]
    assert kinds[0] == "twap_accepted" and "twap_slice" in kinds  # the first slice at once
    running = net.ok_json("twap", "list", key=TRADER)["twaps"]
    assert [(t["twap_id"], t["slices_total"]) for t in running] == [(twap_id, 2)]
    assert running[0]["slices_done"] == 1 and running[0]["size"] == "0.004"
    table = net.run("twap", "list", key=TRADER)
    assert table.returncode == 0 and "running TWAPs" in table.stdout and "1/2" in table.stdout
    # The second slice comes 30 s of block time later, then the TWAP is done.
    net.wait_for("the TWAP to finish", lambda: not listing(net)["twaps"], timeout_s=90)
    assert position_size(net) == "0.004"

    # 20 slices of 0.005, each no worse than 1 ppm from the oracle: none should fill.
    long_one = net.ok_json("twap", "place", "BTC-PERP", "buy", "0.1", "--duration", "10m",
                           "--max-slippage", "0.0001%", key=TRADER)  # fmt: skip
    long_id = long_one["results"][0]["order_id"]
    cancelled = net.ok_json("twap", "cancel", "BTC-PERP", str(long_id), key=TRADER)
    assert cancelled["results"][0]["code"] == "ok"
    finished = [e for e in cancelled["events"] if e["kind"] == "twap_finished"]
    assert [e["reason"] for e in finished] == ["user"]
    again = net.run("twap", "cancel", "BTC-PERP", str(long_id), key=TRADER)
    assert again.returncode == 1 and "unknown_twap" in again.stdout
    short = net.run("twap", "place", "BTC-PERP", "buy", "0.01", "--duration", "10s", key=TRADER)
    assert short.returncode == 1 and "invalid_twap" in short.stdout
    usage = net.run("twap", "place", "BTC-PERP", "buy", "0.01", "--duration", "ten", key=TRADER)
    assert usage.returncode == 2 and "--duration" in usage.stderr


def test_position_tpsl_is_listed_refused_on_the_wrong_side_and_cancelled(net: Net) -> None:
    if position_size(net) is None:  # run alone: make the long the TWAP test would have made
        net.ok_json("order", "place", "BTC-PERP", "buy", "0.004", key=TRADER)
    bid = best_bid(net)
    assert bid is not None
    tp, sl = f"{bid * 1.08:.0f}", f"{bid * 0.92:.0f}"
    wrong = net.run("tpsl", "set", "BTC-PERP", "--tp", f"{bid * 0.9:.0f}", key=TRADER)
    assert wrong.returncode == 1 and "tpsl_wrong_side" in wrong.stdout
    armed = net.ok_json("tpsl", "set", "BTC-PERP", "--tp", tp, "--sl", sl, key=TRADER)
    result = armed["results"][0]
    assert (result["code"], result["status"]) == ("ok", "armed")
    group_id = result["order_id"]
    body = listing(net)
    (group,) = body["tpsl_groups"]
    assert (group["group_id"], group["status"], group["position_side"]) == (
        group_id,
        "armed",
        "long",
    )
    assert (group["take_profit_price"], group["stop_loss_price"]) == (tp, sl)
    members = {group["take_profit_order_id"], group["stop_loss_order_id"]}
    waiting = {o["order_id"]: o for o in body["orders"] if o["status"] == "waiting"}
    assert members <= set(waiting)
    size = position_size(net)
    assert all(waiting[i]["reduce_only"] and waiting[i]["size"] == size for i in members)
    table = net.run("orders", "--market", "BTC-PERP", key=TRADER)  # = order list
    assert table.returncode == 0 and "TP/SL groups" in table.stdout and "armed" in table.stdout
    text = net.run("tpsl", "cancel", "BTC-PERP", str(group_id), key=TRADER)
    assert text.returncode == 0 and f"ok group_id={group_id}" in text.stdout, text.stdout
    body = listing(net)
    assert body["tpsl_groups"] == [] and not members & {o["order_id"] for o in body["orders"]}


def test_an_order_with_tp_sl_and_a_good_til_time(net: Net) -> None:
    bid = best_bid(net)
    assert bid is not None
    price = f"{bid * 0.97:.0f}"  # rests below the book
    placed = net.ok_json("order", "place", "BTC-PERP", "buy", "0.001", "--price", price,
                         "--gtt", "20s", "--tp", f"{bid * 1.05:.0f}", "--sl", f"{bid * 0.9:.0f}",
                         key=TRADER)  # fmt: skip
    result = placed["results"][0]
    assert (result["code"], result["status"]) == ("ok", "resting")
    assert result["action"] == "place_order_extended"
    order_id = result["order_id"]
    assert [e["kind"] for e in placed["events"]][-1] == "tpsl_accepted"
    body = listing(net)
    (order,) = [o for o in body["orders"] if o["order_id"] == order_id]
    assert order["good_til_ms"] and order["good_til_ms"] > int(time.time() * 1000) - 5_000
    (group,) = [g for g in body["tpsl_groups"] if g["parent_order_id"] == order_id]
    assert group["status"] == "pending"

    def gone() -> bool:
        body = listing(net)
        return all(o["order_id"] != order_id for o in body["orders"]) and not [
            g for g in body["tpsl_groups"] if g["parent_order_id"] == order_id
        ]

    net.wait_for("the good-til time to cancel the order and its TP/SL", gone, timeout_s=60)
    # A market order with a TP/SL fills at once, so the pair arms in the same block; cancelling
    # one of its orders cancels the other.
    filled = net.ok_json("order", "place", "BTC-PERP", "buy", "0.001", "--tp",
                         f"{bid * 1.06:.0f}", "--sl", f"{bid * 0.91:.0f}", key=TRADER)  # fmt: skip
    assert int(filled["results"][0]["filled_lots"]) == 10
    assert "tpsl_armed" in [e["kind"] for e in filled["events"]]
    (armed,) = [g for g in listing(net)["tpsl_groups"] if g["status"] == "armed"]
    assert armed["parent_order_id"] == filled["results"][0]["order_id"]
    take = str(armed["take_profit_order_id"])
    cancelled = net.ok_json("order", "cancel", "BTC-PERP", take, key=TRADER)
    assert cancelled["results"][0]["code"] == "ok"
    body = listing(net)
    assert body["tpsl_groups"] == []
    assert armed["stop_loss_order_id"] not in [o["order_id"] for o in body["orders"]]

    ioc = net.run("order", "place", "BTC-PERP", "buy", "0.001", "--price", price, "--tif", "ioc",
                  "--gtt", "1m", key=TRADER)  # fmt: skip
    assert ioc.returncode == 1 and "invalid_good_til" in ioc.stdout


def test_the_account_proof_covers_the_twaps_and_the_sdk_places_them(
    net: Net, tmp_path: Path
) -> None:
    """A TWAP placed through the SDK appears in the account's order-tools record (0x4b), which
    the light client requires in every account proof; the TWAP's own record proves too."""
    key_file = net.keys / f"demo{TRADER}.json"
    with Trader(net.api, key_file) as trader:
        placed = trader.place_twap("BTC-PERP", "buy", "0.1", 10 * 60_000,
                                   max_slippage_ppm=1)  # fmt: skip
        twap_id = placed["results"][0]["order_id"]
        assert placed["results"][0]["status"] == "running"
        assert [t["twap_id"] for t in trader.open_orders()["twaps"]] == [twap_id]
        address = trader.address
    saved = tmp_path / "proof.json"
    proof = net.run("proof", "account", address, "--genesis", str(net.genesis),
                    "--save", str(saved), key=None)  # fmt: skip
    assert proof.returncode == 0 and proof.stdout.startswith("VERIFIED"), proof.stdout
    body = json.loads(saved.read_text())
    tools_key = "4b" + address
    (entry,) = [e for e in body["entries"] if e["key"] == tools_key]
    twaps, _, _ = decode_raw(bytes.fromhex(entry["value"]))
    assert [2, twap_id] in twaps
    record = net.run("proof", "twap", "2", str(twap_id), "--genesis", str(net.genesis), key=None)
    assert record.returncode == 0 and record.stdout.startswith("VERIFIED"), record.stdout
    with Trader(net.api, key_file) as trader:
        assert trader.cancel_twap("BTC-PERP", twap_id)["results"][0]["code"] == "ok"
