"""Read-only query helpers the API serves."""

from __future__ import annotations

from state_machine.queries import account_summary, book_levels, market_info, markets, open_orders
from state_machine.tx import SetLeverage
from tests.state_machine.helpers import BTC_PERP, BTC_SPOT, Harness, acct, limit

P = 6_000_000


def test_queries() -> None:
    h = Harness()
    a1, a2 = acct(1), acct(2)
    h.do(
        a1,
        limit(BTC_SPOT, True, P - 1, 10),
        limit(BTC_SPOT, True, P - 1, 5),
        limit(BTC_SPOT, False, P + 3, 7, client_id=4),
    )
    lv = book_levels(h.state, BTC_SPOT, 5)
    assert lv is not None
    assert lv["bids"] == [[P - 1, 15, 2]] and lv["asks"] == [[P + 3, 7, 1]]
    assert book_levels(h.state, 99) is None
    oo = open_orders(h.state, a1)
    assert [o["size_lots"] for o in oo] == [10, 5, 7] and oo[2]["client_id"] == 4
    assert open_orders(h.state, a1, BTC_PERP) == [] and open_orders(h.state, acct(9)) == []

    h.one(a1, SetLeverage(BTC_PERP, 5, False))
    h.one(a2, limit(BTC_PERP, False, P, 100))
    h.one(a1, limit(BTC_PERP, True, P, 100))
    h.oracle(BTC_PERP, P + 1000)
    s = account_summary(h.state, a1)
    (pos,) = s["positions"]
    assert pos["size_lots"] == 100 and pos["entry_price_ticks"] == P
    assert pos["unrealized_pnl_atoms"] == 100 * 1000
    assert pos["mark_price_ticks"] == P + 1000
    assert pos["initial_margin_atoms"] == (P + 1000) * 100 // 5
    assert pos["maintenance_margin_atoms"] == -(-(P + 1000) * 100 * 10_000 // 10**6)
    usdc = next(b for b in s["balances"] if b["asset_id"] == 0)
    assert s["account_value_atoms"] == usdc["available_atoms"] + 100 * 1000
    assert s["open_orders"] == 3
    assert account_summary(h.state, acct(9))["positions"] == []

    info = market_info(h.state, BTC_PERP)
    assert info is not None
    assert info["oracle_price_ticks"] == P + 1000 and info["last_trade_price_ticks"] == P
    assert info["open_interest_lots"] == 100 and info["kind"] == "perp"
    assert [m["symbol"] for m in markets(h.state)] == [
        "BTC/USDC",
        "ETH/USDC",
        "BTC-PERP",
        "ETH-PERP",
    ]
