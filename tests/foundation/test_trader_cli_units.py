"""Unit tests of the trader CLI's and localnet's pure pieces (the e2e tests cover the rest)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from cli.errors import CliError
from cli.localnet_cmd import parse_percent
from cli.main import build_parser
from cli.trade_cmd import build_place
from cli.trade_common import Catalogue
from localnet.oracle import RandomWalk, read_shift_ppm, shifted, write_shift_ppm
from state_machine.tx import KIND_LIMIT, KIND_MARKET, KIND_STOP_LIMIT, TIF_ALO, TIF_IOC

MARKETS = {
    "markets": [
        {"market_id": 2, "symbol": "BTC-PERP", "kind": "perp", "tick_size": "0.01",
         "lot_size": "0.0001", "base_asset": "BTC", "oracle_price": "60000"},
    ],
    "assets": [{"asset_id": 0, "symbol": "USDC", "decimals": 6}],
}  # fmt: skip


def test_exact_units_or_refusal() -> None:
    market = Catalogue(MARKETS).market("btc-perp")
    assert market.price_to_ticks("60000.25") == 6_000_025
    assert market.size_to_lots("0.0123") == 123
    assert market.ticks_to_price(6_000_025) == "60000.25"
    for bad in ("60000.001", "-1", "1e3", "0"):
        with pytest.raises(CliError):
            market.price_to_ticks(bad)
    with pytest.raises(CliError, match="no market"):
        Catalogue(MARKETS).market("DOGE")


def test_asset_amounts_are_exact() -> None:
    catalogue = Catalogue(MARKETS)
    assert catalogue.asset_atoms("usdc", "1.5") == (0, 1_500_000)
    with pytest.raises(CliError, match="6 decimal places"):
        catalogue.asset_atoms("USDC", "0.0000001")


def _place_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["order", "place", *argv])


def test_order_kinds_and_time_in_force() -> None:
    market = Catalogue(MARKETS).market("BTC-PERP")
    limit = build_place(_place_args("BTC-PERP", "buy", "0.01", "--price", "59000"), market)
    assert (limit.kind, limit.price_ticks, limit.size_lots) == (KIND_LIMIT, 5_900_000, 100)
    market_order = build_place(_place_args("BTC-PERP", "sell", "0.01"), market)
    assert (market_order.kind, market_order.tif, market_order.is_buy) == (
        KIND_MARKET,
        TIF_IOC,
        False,
    )
    post_only = build_place(
        _place_args("BTC-PERP", "buy", "0.01", "--price", "1", "--tif", "alo"), market
    )
    assert post_only.tif == TIF_ALO
    stop = build_place(
        _place_args("BTC-PERP", "sell", "0.01", "--price", "50000", "--stop", "50100"), market
    )
    assert (stop.kind, stop.trigger_price_ticks) == (KIND_STOP_LIMIT, 5_010_000)
    with pytest.raises(CliError, match="market order"):
        build_place(_place_args("BTC-PERP", "buy", "0.01", "--tif", "gtc"), market)


def test_percentages() -> None:
    assert parse_percent("30%") == 300_000
    assert parse_percent("2.5") == 25_000
    with pytest.raises(CliError):
        parse_percent("lots")


def test_random_walk_is_deterministic_and_shiftable(tmp_path: Path) -> None:
    market = {"symbol": "BTC-PERP", "base_asset": "BTC"}
    a = RandomWalk(1_000, {"BTC-PERP": 6_000_000}, seed="s")
    b = RandomWalk(1_000, {"BTC-PERP": 6_000_000}, seed="s")
    prices = [a.price_ticks(market, 1_000 + 1_000 * k) for k in range(50)]
    assert prices == [b.price_ticks(market, 1_000 + 1_000 * k) for k in range(50)]
    assert len(set(prices)) > 10 and all(5_000_000 < p < 7_000_000 for p in prices)
    # asking out of order (a feeder restarted) gives the same answer
    assert b.price_ticks(market, 1_000 + 1_000 * 7) == prices[7]
    assert read_shift_ppm(tmp_path) == 0
    write_shift_ppm(tmp_path, -300_000)
    assert read_shift_ppm(tmp_path) == -300_000
    assert shifted(6_000_000, -300_000, 10**10) == 4_200_000
