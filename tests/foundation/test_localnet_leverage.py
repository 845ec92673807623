"""The leveraged demo bot's arithmetic (localnet/leverage.py): amounts, lot values, the
mix of accounts, and the lines it prints for liquidation events."""

from __future__ import annotations

from client.markets import MarketInfo
from localnet.leverage import BOOK, describe, key_names, lot_value_atoms, market_amount


def market(symbol: str, tick: str, lot: str) -> MarketInfo:
    return MarketInfo({"market_id": 2, "symbol": symbol, "kind": "perp", "tick_size": tick,
                       "lot_size": lot})  # fmt: skip


def test_amounts_and_lot_values() -> None:
    assert market_amount("12.5") == 12_500_000
    assert market_amount("-0.000001") == -1
    assert market_amount("2000") == 2_000 * 10**6
    # BTC-PERP: 0.01 USDC on 0.0001 BTC is one atom; ETH-PERP: 0.01 on 0.001 ETH is ten
    assert lot_value_atoms(market("BTC-PERP", "0.01", "0.0001")) == 1
    assert lot_value_atoms(market("ETH-PERP", "0.01", "0.001")) == 10


def test_longs_and_shorts_that_a_crash_or_a_pump_liquidates() -> None:
    assert len(key_names()) == len(BOOK) == 6
    longs = [lev for _, is_long, lev in BOOK if is_long]
    shorts = [lev for _, is_long, lev in BOOK if not is_long]
    # every long is liquidated by a 30 % fall (above ~3x), and a short by the pump back
    assert longs and shorts and min(longs) > 3 and max(shorts) > 3


def test_a_liquidation_line_names_value_and_maintenance() -> None:
    item = {"kind": "liquidation", "height": 79, "timestamp_ms": 1, "cursor": "79.3",
            "account": "ab" * 32, "market_id": None, "value": "-7497.77",
            "maintenance": "225.14"}  # fmt: skip
    assert describe(item) == "height 79: liquidation value=-7497.77 maintenance=225.14"
