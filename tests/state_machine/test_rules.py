"""One test (or more) per exchange rule and per rejection code."""

from __future__ import annotations

import dataclasses

import pytest

from state_machine.audit import audit
from state_machine.genesis import MarginTier, Parameters
from state_machine.perpetuals.margin import maintenance_margin_atoms, tier_deductions_ppm
from state_machine.results import event_to_dict
from state_machine.tx import (
    KIND_MARKET,
    KIND_STOP_MARKET,
    STP_CANCEL_BOTH,
    STP_CANCEL_TAKER,
    TIF_ALO,
    TIF_FOK,
    TIF_IOC,
    AdjustIsolatedMargin,
    AmendOrder,
    CancelAll,
    CancelByClientId,
    CancelOrder,
    OraclePrice,
    OracleUpdate,
    PlaceOrder,
    SetLeverage,
    Transfer,
    WithdrawRequest,
)
from tests.state_machine.helpers import (
    BTC_PERP,
    BTC_SPOT,
    ETH_SPOT,
    USDC,
    VALIDATORS,
    Harness,
    acct,
    limit,
    make_genesis,
    run_bench,
    tx,
)

A1, A2, A3, A4 = acct(1), acct(2), acct(3), acct(4)
P = 6_000_000  # 60,000.00 USDC in BTC ticks (the genesis reference price)


@pytest.fixture
def h() -> Harness:
    return Harness()


def book(h: Harness, mid: int) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
    b = h.state.books[mid]
    return b.bids.depth(100), b.asks.depth(100)


# ---- transaction envelope ----------------------------------------------------------------


def test_wrong_chain_rejects_every_action_and_keeps_the_nonce(h: Harness) -> None:
    res = h.block([tx(A1, [limit(BTC_SPOT, True, P, 10)] * 2, 5 + h.time_ms, chain_id="other")])
    t = res.tx_results[0]
    assert t.code == "wrong_chain" and [a.code for a in t.actions] == ["wrong_chain"] * 2
    assert not h.state.orders
    res = h.block([tx(A1, [limit(BTC_SPOT, True, P, 10)], 5 + h.time_ms - 500)])
    assert res.tx_results[0].actions[0].code == "ok"


def test_bad_version_and_expiry(h: Harness) -> None:
    res = h.block(
        [
            tx(A1, [limit(BTC_SPOT, True, P, 10)], h.next_nonce(), version=2),
            tx(A1, [limit(BTC_SPOT, True, P, 10)], h.next_nonce(), expires_at_ms=h.time_ms),
            tx(A1, [limit(BTC_SPOT, True, P, 10)], h.next_nonce(), expires_at_ms=h.time_ms + 500),
        ]
    )
    assert [t.code for t in res.tx_results] == ["bad_version", "expired", "ok"]


def test_nonce_rules(h: Harness) -> None:
    n = h.next_nonce()
    res = h.block(
        [
            tx(A1, [CancelAll(None)], n),
            tx(A1, [CancelAll(None)], n),
            tx(A2, [CancelAll(None)], n),  # nonces are per signer
            tx(A1, [CancelAll(None)], 5),
        ]
    )
    assert [t.code for t in res.tx_results] == ["ok", "nonce_used", "ok", "nonce_out_of_window"]
    assert h.state.nonces.kept(A1) == (n,)


# ---- order validation --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order", "code"),
    [
        (limit(99, True, P, 10), "unknown_market"),
        (limit(BTC_SPOT, True, P, 10, kind=KIND_STOP_MARKET), "not_perp"),
        (limit(BTC_SPOT, True, P, 0), "lot_size"),
        (limit(BTC_SPOT, True, P, 10**8 + 1), "lot_size"),
        (limit(BTC_SPOT, True, 0, 10), "tick_size"),
        (limit(BTC_SPOT, True, 10**10 + 1, 10), "tick_size"),
        (limit(BTC_SPOT, True, P * 11 // 10 + 1, 10), "price_band"),
        (limit(BTC_SPOT, False, P * 9 // 10 - 1, 10), "price_band"),
        (limit(BTC_SPOT, True, P, 1), "min_notional"),
        (limit(BTC_SPOT, True, P, 10, reduce_only=True), "invalid_order"),
        (limit(BTC_SPOT, True, P, 10, tif=TIF_ALO, kind=KIND_MARKET), "invalid_order"),
        (limit(BTC_PERP, True, P, 10, reduce_only=True), "reduce_only_would_increase"),
        (limit(BTC_SPOT, True, P, 10, tif=TIF_IOC), "no_liquidity"),
        (limit(BTC_SPOT, True, P, 10, tif=TIF_FOK), "fok_not_filled"),
        (limit(BTC_SPOT, True, P, 10**7), "insufficient_balance"),
        (limit(BTC_SPOT, False, P, 10**6), "insufficient_balance"),
        (limit(BTC_PERP, True, P, 2 * 10**6), "insufficient_margin"),
    ],
)
def test_order_rejections(h: Harness, order: PlaceOrder, code: str) -> None:
    r = h.one(A1, order)
    assert r.code == code, r
    assert r.message
    if code not in ("no_liquidity",):
        rejected = h.events("order_rejected")
        assert rejected and rejected[0]["code"] == code
    assert not h.state.orders
    assert h.bal(A1, 0) == (1_000_000 * USDC, 0)
    audit(h.state)


def test_price_band_edges_are_inclusive(h: Harness) -> None:
    assert h.one(A1, limit(BTC_SPOT, True, P * 11 // 10, 10)).code == "ok"
    assert h.one(A2, limit(BTC_SPOT, False, P * 9 // 10, 10)).code == "ok"
    assert h.events("fill")[0]["price_ticks"] == P * 11 // 10


def test_no_reference_price_for_market_orders() -> None:
    g = make_genesis()
    m = dataclasses.replace(g.markets[0], initial_price_ticks=0)
    h = Harness(dataclasses.replace(g, markets=(m, *g.markets[1:])))
    r = h.one(A1, limit(BTC_SPOT, True, 0, 10, kind=KIND_MARKET))
    assert r.code == "no_reference_price"
    # Without a reference any limit price is allowed; after a trade the band applies.
    assert h.one(A1, limit(BTC_SPOT, False, 100_000, 200)).code == "ok"
    assert h.one(A2, limit(BTC_SPOT, True, 100_000, 200)).status == "filled"
    assert h.one(A2, limit(BTC_SPOT, True, 200_000, 200)).code == "price_band"


def test_duplicate_client_id_and_reuse_after_cancel(h: Harness) -> None:
    assert h.one(A1, limit(BTC_SPOT, True, P, 10, client_id=7)).code == "ok"
    assert h.one(A1, limit(BTC_SPOT, True, P, 10, client_id=7)).code == "duplicate_client_id"
    assert h.one(A2, limit(BTC_SPOT, True, P, 10, client_id=7)).code == "ok"  # per account
    assert h.one(A1, CancelByClientId(BTC_SPOT, 7)).code == "ok"
    assert h.one(A1, limit(BTC_SPOT, True, P, 10, client_id=7)).code == "ok"


def test_open_order_limit() -> None:
    h = Harness(make_genesis(parameters=Parameters(max_open_orders_per_account=2)))
    assert [r.code for r in h.do(A1, *[limit(BTC_SPOT, True, P - i, 10) for i in range(3)])] == [
        "ok",
        "ok",
        "too_many_orders",
    ]
    # IOC orders never rest, so they are not limited.
    assert h.one(A1, limit(BTC_SPOT, True, P, 10, tif=TIF_IOC)).code == "no_liquidity"


# ---- matching ---------------------------------------------------------------------------


def test_price_time_priority_and_partial_fills(h: Harness) -> None:
    o1 = h.one(A1, limit(BTC_SPOT, False, P, 5)).order_id
    o2 = h.one(A2, limit(BTC_SPOT, False, P, 5)).order_id
    o3 = h.one(A3, limit(BTC_SPOT, False, P - 10, 5)).order_id
    r = h.one(A4, limit(BTC_SPOT, True, P, 12))
    assert (r.code, r.filled_lots, r.status) == ("ok", 12, "filled")
    fills = h.events("fill")
    assert [(f["maker_order_id"], f["price_ticks"], f["size_lots"]) for f in fills] == [
        (o3, P - 10, 5),
        (o1, P, 5),
        (o2, P, 2),
    ]
    assert book(h, BTC_SPOT) == ([], [(P, 3, 1)])
    assert h.state.orders[o2].size_lots == 3 and h.state.orders[o2].filled_lots == 2
    audit(h.state)


def test_spot_settlement_and_fees_exact(h: Harness) -> None:
    h.one(A1, limit(BTC_SPOT, False, P, 10))
    assert h.bal(A1, 1) == (10 * 10**8 - 10 * 10**4, 10 * 10**4)  # base held by the ask
    r = h.one(A2, limit(BTC_SPOT, True, P + 100, 10))  # price improvement for the taker
    assert r.status == "filled"
    quote = P * 10  # tick_lot_atoms = 1
    base = 10 * 10**4
    taker_fee_base = -(-base * 450 // 10**6)  # 45 BTC atoms, rounded up
    maker_fee_quote = -(-quote * 150 // 10**6)  # 9000 USDC atoms
    assert h.bal(A2, 1) == (10 * 10**8 + base - taker_fee_base, 0)
    assert h.bal(A2, 0) == (10**12 - quote, 0)  # the hold at P + 100 was released
    assert h.bal(A1, 0) == (10**12 + quote - maker_fee_quote, 0)
    assert h.bal(A1, 1) == (10 * 10**8 - base, 0)
    assert h.state.fee_pools[1].amount_atoms == taker_fee_base
    assert h.state.fee_pools[0].amount_atoms == maker_fee_quote
    f = h.events("fill")[0]
    assert (f["taker_fee_atoms"], f["maker_fee_atoms"]) == (taker_fee_base, maker_fee_quote)
    assert h.state.mstates[BTC_SPOT].last_trade_price_ticks == P
    audit(h.state)


def test_buy_hold_is_exact_and_released_on_cancel(h: Harness) -> None:
    oid = h.one(A1, limit(ETH_SPOT, True, 300_000, 7)).order_id
    assert h.bal(A1, 0) == (10**12 - 300_000 * 7 * 10, 300_000 * 7 * 10)
    assert h.one(A1, CancelOrder(ETH_SPOT, oid)).code == "ok"
    assert h.bal(A1, 0) == (10**12, 0)
    ev = h.events("order_cancelled")[0]
    assert ev["reason"] == "user" and ev["order_id"] == oid


def test_ioc_partial_fill_cancels_remainder(h: Harness) -> None:
    h.one(A1, limit(BTC_SPOT, False, P, 5))
    r = h.one(A2, limit(BTC_SPOT, True, P, 8, tif=TIF_IOC))
    assert (r.code, r.filled_lots, r.status) == ("ok", 5, "cancelled")
    assert h.events("order_cancelled")[0]["reason"] == "ioc"
    assert book(h, BTC_SPOT) == ([], [])
    assert h.bal(A2, 0)[1] == 0


def test_fok_fills_entirely_or_not_at_all(h: Harness) -> None:
    h.one(A1, limit(BTC_SPOT, False, P, 5))
    h.one(A2, limit(BTC_SPOT, False, P + 5, 5))
    assert h.one(A3, limit(BTC_SPOT, True, P + 5, 11, tif=TIF_FOK)).code == "fok_not_filled"
    assert h.one(A3, limit(BTC_SPOT, True, P, 6, tif=TIF_FOK)).code == "fok_not_filled"
    r = h.one(A3, limit(BTC_SPOT, True, P + 5, 10, tif=TIF_FOK))
    assert (r.code, r.filled_lots) == ("ok", 10)
    # Own orders do not count as liquidity for a fill-or-kill order.
    h.one(A4, limit(BTC_SPOT, False, P, 5))
    assert h.one(A4, limit(BTC_SPOT, True, P, 5, tif=TIF_FOK)).code == "fok_not_filled"


def test_post_only(h: Harness) -> None:
    h.one(A1, limit(BTC_SPOT, False, P, 5))
    assert h.one(A2, limit(BTC_SPOT, True, P, 5, tif=TIF_ALO)).code == "post_only_would_cross"
    r = h.one(A2, limit(BTC_SPOT, True, P - 1, 5, tif=TIF_ALO))
    assert (r.code, r.status) == ("ok", "resting")


def test_market_order_fills_within_band(h: Harness) -> None:
    h.one(A1, limit(BTC_SPOT, False, P + 10, 5))
    h.one(A1, limit(BTC_SPOT, False, P * 11 // 10, 5))
    r = h.one(A2, limit(BTC_SPOT, True, 0, 20, kind=KIND_MARKET))
    assert (r.code, r.filled_lots, r.status) == ("ok", 10, "cancelled")
    # A worst price given with the market order bounds it further.
    h.one(A1, limit(BTC_SPOT, False, P + 10, 5))
    h.one(A1, limit(BTC_SPOT, False, P + 20, 5))
    r = h.one(A2, limit(BTC_SPOT, True, P + 10, 20, kind=KIND_MARKET))
    assert r.filled_lots == 5


@pytest.mark.parametrize(
    ("stp", "code", "resting_left", "filled"),
    [
        (0, "ok", False, 5),
        (STP_CANCEL_TAKER, "self_trade", True, 0),
        (STP_CANCEL_BOTH, "self_trade", False, 0),
    ],
)
def test_self_trade_prevention(
    h: Harness, stp: int, code: str, resting_left: bool, filled: int
) -> None:
    own = h.one(A1, limit(BTC_SPOT, False, P, 5)).order_id
    h.one(A2, limit(BTC_SPOT, False, P, 5))
    r = h.one(A1, limit(BTC_SPOT, True, P, 5, tif=TIF_IOC, stp=stp))
    assert (r.code, r.filled_lots) == (code, filled)
    assert (own in h.state.orders) == resting_left
    if not resting_left:
        assert any(e["reason"] == "self_trade" for e in h.events("order_cancelled"))
    assert all(f["maker"] != A1 for f in h.events("fill"))
    audit(h.state)


# ---- cancels and amends -----------------------------------------------------------------


def test_cancels(h: Harness) -> None:
    ids = [r.order_id for r in h.do(A1, *[limit(BTC_SPOT, True, P - i, 10) for i in range(3)])]
    eth = h.one(A1, limit(ETH_SPOT, True, 300_000, 10, client_id=9)).order_id
    assert h.one(A2, CancelOrder(BTC_SPOT, ids[0])).code == "unknown_order"  # not A2's
    assert h.one(A1, CancelOrder(ETH_SPOT, ids[0])).code == "unknown_order"  # wrong market
    assert h.one(A1, CancelByClientId(BTC_SPOT, 9)).code == "unknown_order"
    assert h.one(A1, CancelOrder(BTC_SPOT, ids[0])).code == "ok"
    assert h.one(A1, CancelOrder(BTC_SPOT, ids[0])).code == "unknown_order"
    assert h.one(A1, CancelAll(99)).code == "unknown_market"
    r = h.one(A1, CancelAll(BTC_SPOT))
    assert (r.code, r.count) == ("ok", 2)
    assert list(h.state.orders) == [eth]
    assert h.one(A1, CancelAll(None)).count == 1
    assert not h.state.orders and h.bal(A1, 0) == (10**12, 0)


def test_amend_size_decrease_keeps_priority(h: Harness) -> None:
    first = h.one(A1, limit(BTC_SPOT, False, P, 10)).order_id
    h.one(A2, limit(BTC_SPOT, False, P, 10))
    r = h.one(A1, AmendOrder(BTC_SPOT, first, P, 4))
    assert (r.code, r.status) == ("ok", "resting")
    assert h.bal(A1, 1)[1] == 4 * 10**4
    h.one(A3, limit(BTC_SPOT, True, P, 4, tif=TIF_IOC))
    assert h.events("fill")[0]["maker_order_id"] == first


@pytest.mark.parametrize("change", ["size_up", "price"])
def test_amend_that_loses_priority(h: Harness, change: str) -> None:
    first = h.one(A1, limit(BTC_SPOT, False, P, 10)).order_id
    second = h.one(A2, limit(BTC_SPOT, False, P, 10)).order_id
    if change == "size_up":
        h.one(A1, AmendOrder(BTC_SPOT, first, P, 12))
        assert h.bal(A1, 1)[1] == 12 * 10**4
    else:
        h.one(A1, AmendOrder(BTC_SPOT, first, P + 1, 10))
        h.one(A1, AmendOrder(BTC_SPOT, first, P, 10))
    h.one(A3, limit(BTC_SPOT, True, P, 4, tif=TIF_IOC))
    assert h.events("fill")[0]["maker_order_id"] == second
    audit(h.state)


def test_amend_rejections_and_crossing(h: Harness) -> None:
    bid = h.one(A1, limit(BTC_SPOT, True, P - 10, 10)).order_id
    alo = h.one(A1, limit(BTC_SPOT, True, P - 20, 10, tif=TIF_ALO)).order_id
    h.one(A2, limit(BTC_SPOT, False, P, 5))
    assert h.one(A1, AmendOrder(BTC_SPOT, 12345, P, 5)).code == "unknown_order"
    assert h.one(A1, AmendOrder(BTC_SPOT, bid, P, 0)).code == "lot_size"
    assert h.one(A1, AmendOrder(BTC_SPOT, bid, 0, 5)).code == "tick_size"
    assert h.one(A1, AmendOrder(BTC_SPOT, bid, P * 2, 5)).code == "price_band"
    assert h.one(A1, AmendOrder(BTC_SPOT, bid, P, 1)).code == "min_notional"
    assert h.one(A1, AmendOrder(BTC_SPOT, bid, P, 10**7)).code == "insufficient_balance"
    assert h.one(A1, AmendOrder(BTC_SPOT, alo, P, 10)).code == "post_only_would_cross"
    r = h.one(A1, AmendOrder(BTC_SPOT, bid, P, 10))  # crosses: trades as a taker, then rests
    assert (r.code, r.filled_lots, r.status) == ("ok", 5, "partially_filled")
    assert book(h, BTC_SPOT)[0][0] == (P, 5, 1)
    audit(h.state)


# ---- block ordering ---------------------------------------------------------------------


def test_in_block_ordering_favours_makers(h: Harness) -> None:
    resting = h.one(A3, limit(BTC_SPOT, True, P - 50, 10)).order_id
    res = h.block(
        [
            tx(A1, [limit(BTC_SPOT, False, P, 5)], h.next_nonce()),  # other order: runs last
            tx(A2, [limit(BTC_SPOT, True, P, 5, tif=TIF_ALO)], h.next_nonce()),  # post-only
            tx(A3, [CancelOrder(BTC_SPOT, resting)], h.next_nonce()),  # cancel: first of the 3
        ]
    )
    assert [t.actions[0].code for t in res.tx_results] == ["ok", "ok", "ok"]
    kinds = [e[0] for e in res.events]
    assert kinds.index("order_cancelled") < kinds.index("order_rested") < kinds.index("fill")
    fill = event_to_dict(next(e for e in res.events if e[0] == "fill"))
    assert fill["maker"] == A2 and fill["taker"] == A1  # the post-only order was the maker


def test_in_block_ordering_runs_non_order_actions_first(h: Harness) -> None:
    """All four classes in one block, listed in reverse: each later class depends on the
    earlier ones having run (funds, leverage and oracle for the order, the cancel for the
    post-only order)."""
    a9 = acct(9)  # unfunded until the transfer
    bid = h.one(A3, limit(BTC_PERP, True, P * 11 // 10, 5)).order_id  # 6.6M: old band edge
    res = h.block(
        [
            # (d) needs the transfer (funds), 20x (fails at 10x) and the new oracle (6.65M is
            # outside the band around 6.0M)
            tx(a9, [limit(BTC_PERP, True, 6_650_000, 900)], h.next_nonce()),
            # (c) would cross A3's bid unless the cancel ran first
            tx(A2, [limit(BTC_PERP, False, 6_600_000, 900, tif=TIF_ALO)], h.next_nonce()),
            tx(A3, [CancelOrder(BTC_PERP, bid)], h.next_nonce()),  # (b)
            tx(VALIDATORS[0], [OracleUpdate((OraclePrice(BTC_PERP, 6_100_000),))], h.next_nonce()),
            tx(a9, [SetLeverage(BTC_PERP, 20, False)], h.next_nonce()),  # (a)
            tx(A1, [Transfer(a9, 0, 1_000 * USDC)], h.next_nonce()),  # (a)
        ]
    )
    assert [t.actions[0].code for t in res.tx_results] == ["ok"] * 6
    assert res.tx_results[0].actions[0].status == "filled"
    kinds = [e[0] for e in res.events]
    first_cancel = kinds.index("order_cancelled")
    assert kinds[:first_cancel] == ["oracle", "leverage", "transfer"]  # proposer's order
    assert first_cancel < kinds.index("order_rested") < kinds.index("fill")
    fill = event_to_dict(next(e for e in res.events if e[0] == "fill"))
    assert (fill["maker"], fill["taker"], fill["price_ticks"]) == (A2, a9, 6_600_000)
    assert h.state.accounts[a9].positions[BTC_PERP].size_lots == 900
    audit(h.state)


def test_order_and_cancel_in_one_tx_cancel_runs_first(h: Harness) -> None:
    rs = h.do(A1, limit(BTC_SPOT, True, P, 10, client_id=5), CancelByClientId(BTC_SPOT, 5))
    assert [r.code for r in rs] == ["ok", "unknown_order"]


def test_order_opened_and_closed_in_one_block_is_not_written(h: Harness) -> None:
    res = h.block(
        [
            tx(A1, [limit(BTC_SPOT, False, P, 5)], h.next_nonce()),
            tx(A2, [limit(BTC_SPOT, True, P, 5)], h.next_nonce()),
        ]
    )
    assert not [k for k, _ in res.writes if k[0] == 3]
    assert any(k[0] == 1 for k, _ in res.writes)


# ---- perpetuals ------------------------------------------------------------------------


def test_position_entry_and_realized_pnl(h: Harness) -> None:
    h.one(A2, limit(BTC_PERP, False, P, 100))
    h.one(A1, limit(BTC_PERP, True, P, 100))
    pos = h.state.accounts[A1].positions[BTC_PERP]
    assert (pos.size_lots, pos.entry_value) == (100, P * 100)
    usdc_before = h.bal(A1, 0)[0]
    h.one(A3, limit(BTC_PERP, True, P + 1000, 40))
    h.one(A1, limit(BTC_PERP, False, P + 1000, 40))  # taker: sells 40 into A3's bid
    assert (pos.size_lots, pos.entry_value, pos.realized_pnl_atoms) == (60, P * 60, 40 * 1000)
    fee = -(-(P + 1000) * 40 * 450 // 10**6)
    assert h.bal(A1, 0)[0] == usdc_before + 40 * 1000 - fee
    assert h.state.mstates[BTC_PERP].open_interest_lots == 100
    f = h.events("fill")[0]
    assert f["taker_realized_pnl_atoms"] == 40_000 and f["maker_realized_pnl_atoms"] == 0
    audit(h.state)


def test_position_flip(h: Harness) -> None:
    h.one(A2, limit(BTC_PERP, False, P, 10))
    h.one(A1, limit(BTC_PERP, True, P, 10))
    h.one(A2, limit(BTC_PERP, True, P - 100, 25))
    h.one(A1, limit(BTC_PERP, False, P - 100, 25))
    pos = h.state.accounts[A1].positions[BTC_PERP]
    assert (pos.size_lots, pos.entry_value, pos.realized_pnl_atoms) == (
        -15,
        -(P - 100) * 15,
        -1000,
    )
    assert h.state.mstates[BTC_PERP].open_interest_lots == 15
    audit(h.state)


def small_account_harness(usdc: int) -> Harness:
    a5 = acct(5)
    funded = [A1, A2, A3, A4]
    from state_machine.genesis import default_genesis

    g = default_genesis(
        "test-chain",
        [(v, 10) for v in VALIDATORS],
        funded,
        genesis_time_ms=1_700_000_000_000,
    )
    from state_machine.genesis import FundedBalance

    g = dataclasses.replace(g, balances=(*g.balances, FundedBalance(a5, 0, usdc)))
    return Harness(g)


def test_initial_margin_counts_open_orders() -> None:
    h = small_account_harness(1000 * USDC)
    a5 = acct(5)
    assert h.one(a5, SetLeverage(BTC_PERP, 1, False)).code == "ok"
    # 100 lots at 60,000.00 with 0.0001 BTC lots = 600 USDC notional.
    assert h.one(a5, limit(BTC_PERP, True, P, 100)).code == "ok"
    # A sell of the same size adds no exposure beyond the buy: max(|0+100|, |0-100|).
    assert h.one(a5, limit(BTC_PERP, False, P + 10, 100)).code == "ok"
    assert h.one(a5, limit(BTC_PERP, True, P, 100)).code == "insufficient_margin"
    # Leverage cannot be lowered below what open orders need; raising frees margin.
    assert h.one(a5, SetLeverage(BTC_PERP, 2, False)).code == "ok"
    assert h.one(a5, limit(BTC_PERP, True, P, 100)).code == "ok"
    assert h.one(a5, SetLeverage(BTC_PERP, 1, False)).code == "insufficient_margin"
    assert h.state.accounts[a5].positions[BTC_PERP].leverage == 2
    # Transfers and withdrawals must leave initial margin covered.
    assert h.one(a5, Transfer(A1, 0, 500 * USDC)).code == "insufficient_margin"
    assert h.one(a5, WithdrawRequest(0, 500 * USDC, b"x")).code == "insufficient_margin"
    assert h.one(a5, Transfer(A1, 0, 100 * USDC)).code == "ok"


def test_leverage_cannot_drop_below_what_a_position_needs() -> None:
    """No open orders: the existing position alone decides (cross margin)."""
    h = small_account_harness(1000 * USDC)
    a5 = acct(5)
    h.one(A2, limit(BTC_PERP, False, P, 1000))
    assert h.one(a5, limit(BTC_PERP, True, P, 1000)).status == "filled"  # 6,000 USDC at 10x
    assert not h.state.accounts[a5].orders
    fee = -(-P * 1000 * 450 // 10**6)
    assert h.bal(a5, 0) == (1000 * USDC - fee, 0)  # value 997.3 USDC at the mark (= entry)
    # 6x needs 1,000 USDC of initial margin, more than the value; 7x needs 857.15.
    assert h.one(a5, SetLeverage(BTC_PERP, 6, False)).code == "insufficient_margin"
    assert not h.events("leverage")
    assert h.state.accounts[a5].positions[BTC_PERP].leverage == 10
    assert h.one(a5, SetLeverage(BTC_PERP, 7, False)).code == "ok"
    assert h.state.accounts[a5].positions[BTC_PERP].leverage == 7


def test_isolated_leverage_is_checked_against_the_isolated_margin(h: Harness) -> None:
    """The cross account is rich; only the position's own isolated margin counts."""
    assert h.one(A1, SetLeverage(BTC_PERP, 10, True)).code == "ok"
    h.one(A2, limit(BTC_PERP, False, P, 100))
    assert h.one(A1, limit(BTC_PERP, True, P, 100)).status == "filled"
    pos = h.state.accounts[A1].positions[BTC_PERP]
    im_5x = P * 100 // 5  # 120 USDC at the mark, which equals the entry (no PnL)
    assert pos.isolated_margin_atoms == P * 100 // 10
    assert h.one(A1, SetLeverage(BTC_PERP, 5, True)).code == "insufficient_margin"
    assert h.one(A1, AdjustIsolatedMargin(BTC_PERP, im_5x - pos.isolated_margin_atoms - 1)).ok
    assert h.one(A1, SetLeverage(BTC_PERP, 5, True)).code == "insufficient_margin"
    assert (pos.leverage, pos.isolated) == (10, True)
    assert h.one(A1, AdjustIsolatedMargin(BTC_PERP, 1)).ok
    assert pos.isolated_margin_atoms == im_5x
    assert h.one(A1, SetLeverage(BTC_PERP, 5, True)).code == "ok"
    assert h.events("leverage")[0]["leverage"] == 5
    assert (pos.leverage, pos.isolated) == (5, True)


def test_transfer_and_withdraw_count_unrealised_loss() -> None:
    h = small_account_harness(1000 * USDC)
    a5 = acct(5)
    h.one(A2, limit(BTC_PERP, False, P, 1000))
    assert h.one(a5, limit(BTC_PERP, True, P, 1000)).status == "filled"
    usdc = h.bal(a5, 0)[0]
    h.oracle(BTC_PERP, 5_700_000)  # -5 %: the long loses 300 USDC, still above maintenance
    assert h.state.mstates[BTC_PERP].mark_price_ticks == 5_700_000
    value = usdc + (5_700_000 - P) * 1000
    free = value - 5_700_000 * 1000 // 10  # 127.3 USDC
    assert free == 127_300_000 and usdc > 4 * free
    assert h.one(a5, Transfer(A1, 0, free + 1)).code == "insufficient_margin"
    assert h.one(a5, WithdrawRequest(0, free + 1, b"x")).code == "insufficient_margin"
    assert h.bal(a5, 0) == (usdc, 0)
    assert h.one(a5, WithdrawRequest(0, free, b"x")).code == "ok"
    assert h.bal(a5, 0) == (usdc - free, 0)
    audit(h.state)


def test_leverage_rules(h: Harness) -> None:
    assert h.one(A1, SetLeverage(BTC_PERP, 0, False)).code == "invalid_leverage"
    assert h.one(A1, SetLeverage(BTC_PERP, 51, False)).code == "invalid_leverage"
    assert h.one(A1, SetLeverage(BTC_SPOT, 2, False)).code == "not_perp"
    assert h.one(A1, SetLeverage(77, 2, False)).code == "unknown_market"
    h.one(A1, limit(BTC_PERP, True, P - 5, 10))
    assert h.one(A1, SetLeverage(BTC_PERP, 5, True)).code == "position_open"
    assert h.one(A1, SetLeverage(BTC_PERP, 5, False)).code == "ok"
    assert h.events("leverage")[0]["leverage"] == 5


def test_isolated_margin_flow(h: Harness) -> None:
    assert h.one(A1, SetLeverage(BTC_PERP, 10, True)).code == "ok"
    assert h.one(A1, AdjustIsolatedMargin(BTC_PERP, 5)).code == "no_position"
    assert h.one(A2, AdjustIsolatedMargin(BTC_PERP, 5)).code == "not_isolated"
    assert h.one(A1, AdjustIsolatedMargin(BTC_SPOT, 5)).code == "not_perp"
    h.one(A2, limit(BTC_PERP, False, P, 100))
    usdc0 = h.bal(A1, 0)[0]
    h.one(A1, limit(BTC_PERP, True, P, 100))
    pos = h.state.accounts[A1].positions[BTC_PERP]
    im = P * 100 // 10
    fee = -(-P * 100 * 450 // 10**6)
    assert pos.isolated_margin_atoms == im
    assert h.bal(A1, 0)[0] == usdc0 - im - fee
    assert h.one(A1, AdjustIsolatedMargin(BTC_PERP, 0)).code == "invalid_amount"
    assert h.one(A1, AdjustIsolatedMargin(BTC_PERP, -1)).code == "insufficient_margin"
    assert h.one(A1, AdjustIsolatedMargin(BTC_PERP, 1000)).code == "ok"
    assert h.one(A1, AdjustIsolatedMargin(BTC_PERP, -1000)).code == "ok"
    assert h.one(A1, AdjustIsolatedMargin(BTC_PERP, 10**15)).code == "insufficient_margin"
    # Closing at a profit releases the margin plus the PnL to cross.
    h.one(A3, limit(BTC_PERP, True, P + 500, 100))
    h.one(A1, limit(BTC_PERP, False, P + 500, 100))
    fee2 = -(-(P + 500) * 100 * 450 // 10**6)
    assert pos.size_lots == 0 and pos.isolated_margin_atoms == 0
    assert h.bal(A1, 0)[0] == usdc0 - fee + 500 * 100 - fee2
    audit(h.state)


def test_reduce_only(h: Harness) -> None:
    h.one(A2, limit(BTC_PERP, False, P, 10))
    h.one(A1, limit(BTC_PERP, True, P, 10))
    assert h.one(A1, limit(BTC_PERP, True, P, 5, reduce_only=True)).code == (
        "reduce_only_would_increase"
    )
    r = h.one(A1, limit(BTC_PERP, False, P + 50, 25, reduce_only=True))  # clamped to 10
    assert r.code == "ok" and h.state.orders[r.order_id].size_lots == 10
    # Once the position is closed by another order, the resting reduce-only order is cancelled
    # instead of filling into a new position.
    h.one(A3, limit(BTC_PERP, True, P - 10, 10))
    h.one(A1, limit(BTC_PERP, False, P - 10, 10))
    assert h.state.accounts[A1].positions[BTC_PERP].size_lots == 0
    h.one(A4, limit(BTC_PERP, True, P + 50, 10, tif=TIF_IOC))
    assert any(e["reason"] == "reduce_only" for e in h.events("order_cancelled"))
    assert h.state.accounts[A1].positions[BTC_PERP].size_lots == 0
    audit(h.state)


def test_maintenance_margin_tiers_binance_example() -> None:
    tiers = (
        MarginTier(0, 4_000),
        MarginTier(50_000 * USDC, 5_000),
        MarginTier(250_000 * USDC, 10_000),
    )
    assert [d // 10**6 for d in tier_deductions_ppm(tiers)] == [0, 50 * USDC, 1_300 * USDC]
    m = dataclasses.replace(make_genesis().markets[2], margin_tiers=tiers)
    assert maintenance_margin_atoms(m, 100_000 * USDC) == 450 * USDC
    # Continuous at the tier edges.
    for edge in (50_000 * USDC, 250_000 * USDC):
        below = maintenance_margin_atoms(m, edge - 1)
        at = maintenance_margin_atoms(m, edge)
        assert 0 <= at - below <= 1


# ---- transfers, withdrawals, oracle -------------------------------------------------------


def test_transfer_and_withdraw(h: Harness) -> None:
    assert h.one(A1, Transfer(A1, 0, 5)).code == "invalid_recipient"
    assert h.one(A1, Transfer(A2, 0, 0)).code == "invalid_amount"
    assert h.one(A1, Transfer(A2, 42, 5)).code == "unknown_asset"
    assert h.one(acct(9), Transfer(A2, 0, 5)).code == "insufficient_balance"
    assert h.one(A1, Transfer(acct(9), 1, 12345)).code == "ok"
    assert h.bal(acct(9), 1) == (12345, 0)
    r = h.one(acct(9), WithdrawRequest(1, 345, b"btc-address"))
    assert r.code == "ok"
    assert h.bal(acct(9), 1) == (12000, 0)
    assert h.state.asset_totals[1].amount_atoms == 345
    w = h.events("withdrawal")[0]
    assert (w["amount_atoms"], w["destination"]) == (345, b"btc-address")
    assert h.one(acct(9), WithdrawRequest(1, 12001, b"x")).code == "insufficient_balance"
    audit(h.state)


def test_oracle_is_the_stake_weighted_median_of_fresh_submissions() -> None:
    from state_machine.genesis import default_genesis

    vals = [(bytes([0xB0 + i]) * 32, p) for i, p in enumerate((10, 20, 30, 45))]
    h = Harness(default_genesis("test-chain", vals, [A1], genesis_time_ms=1_700_000_000_000))
    assert h.one(A1, OracleUpdate((OraclePrice(BTC_PERP, P),))).code == "not_validator"
    v = [pk for pk, _ in vals]
    upd = OracleUpdate((OraclePrice(99, P),))
    assert h.one(v[0], upd).code == "unknown_market"
    prices = [6_100_000, 6_000_000, 5_900_000, 6_050_000]
    h.block(
        [
            tx(v[i], [OracleUpdate((OraclePrice(BTC_PERP, prices[i]),))], h.next_nonce())
            for i in range(4)
        ]
    )
    # sorted: 5.9M (30), 6.0M (20), 6.05M (45), 6.1M (10); total 105; half reached at 6.05M.
    assert h.state.mstates[BTC_PERP].oracle_price_ticks == 6_050_000
    assert h.events("oracle")[-1]["price_ticks"] == 6_050_000
    # After max age only the validator that keeps submitting counts.
    h.block([], dt_ms=59_000)
    h.block(
        [tx(v[1], [OracleUpdate((OraclePrice(BTC_PERP, 6_010_000),))], h.next_nonce())], dt_ms=2_000
    )
    assert h.state.mstates[BTC_PERP].oracle_price_ticks == 6_010_000


@pytest.mark.parametrize(
    ("signer", "prices", "code"),
    [
        (A1, [(BTC_PERP, P)], "not_validator"),
        (VALIDATORS[0], [(BTC_PERP, 0)], "tick_size"),
        (VALIDATORS[0], [(BTC_PERP, 10**10 + 1)], "tick_size"),  # above max_price_ticks
        (VALIDATORS[0], [(BTC_PERP, P + 1), (BTC_PERP, P + 2)], "invalid_order"),
        (VALIDATORS[0], [(BTC_SPOT, P + 1), (BTC_PERP, P + 1), (BTC_SPOT, P + 2)], "invalid_order"),
        (VALIDATORS[0], [(BTC_PERP, P + 1), (99, P + 1)], "unknown_market"),
    ],
    ids=["non_validator", "zero", "above_max", "twice", "twice_apart", "unknown_market"],
)
def test_oracle_update_rejections_change_nothing(
    h: Harness, signer: bytes, prices: list[tuple[int, int]], code: str
) -> None:
    upd = OracleUpdate(tuple(OraclePrice(m, p) for m, p in prices))
    r = h.one(signer, upd)
    assert (r.code, r.count) == (code, 0) and r.message
    # all or nothing: no price of a rejected update is stored
    assert not any(h.state.oracle_subs[m] for m in (BTC_SPOT, BTC_PERP))
    assert h.state.mstates[BTC_PERP].oracle_price_ticks == P
    assert not h.events("oracle")
    # the max price itself is accepted
    assert h.one(VALIDATORS[0], OracleUpdate((OraclePrice(BTC_PERP, 10**10),))).count == 1


def test_bench_matching_prints_json_last_line() -> None:
    last = run_bench("matching", "--actions", "3000", "--block-actions", "500")
    assert last["bench"] == "matching" and last["actions"] == 3000
    assert last["actions_per_s"] > 0 and last["bare_loop_actions_per_s"] > 0
    assert last["blocks"] == 6 and last["fills"] > 0


def test_events_are_canonically_encodable(h: Harness) -> None:
    from state_machine.codec import decode_raw, encode

    h.one(A1, limit(BTC_SPOT, False, P, 5))
    res = h.block([tx(A2, [limit(BTC_SPOT, True, P, 7), limit(99, True, P, 1)], h.next_nonce())])
    for e in res.events:
        assert tuple(decode_raw(encode(list(e)))) == e
        assert event_to_dict(e)["kind"] == e[0]
    kinds = [e[0] for e in res.events]
    assert kinds == ["order_accepted", "fill", "order_rested", "order_rejected"]


def test_write_set_is_proportional_to_what_the_block_touched(h: Harness) -> None:
    for k in range(10):
        h.do(A1, *[limit(BTC_SPOT, True, P - 100 - 10 * k - i, 10) for i in range(50)])
    assert len(h.state.entries()) > 500
    victim = next(iter(h.state.accounts[A1].orders))
    res = h.block([tx(A1, [CancelOrder(BTC_SPOT, victim)], h.next_nonce())])
    keys = [k for k, _ in res.writes]
    # meta, the order (deleted), A1's USDC balance, A1's nonces, and the perp market states
    # the risk engine updates every block (mark, funding samples)
    assert keys[0] == b"\x00\x00" and dict(res.writes)[keys[0]] is not None  # meta
    assert sum(1 for k in keys if k[0] == 3) == 1
    assert len(keys) <= 6, [k.hex()[:12] for k in keys]


def test_nonce_too_low_after_the_window_fills(h: Harness) -> None:
    base = h.time_ms
    res = h.block([tx(A1, [CancelAll(None)], base + i) for i in range(1, 130)])
    assert all(t.code == "ok" for t in res.tx_results)
    # 128 kept: the smallest accepted (base + 1) was evicted, anything at or below the new
    # smallest kept that is not kept itself is refused.
    res = h.block([tx(A1, [CancelAll(None)], base + 1), tx(A1, [CancelAll(None)], base + 2)])
    assert [t.code for t in res.tx_results] == ["nonce_too_low", "nonce_used"]


def test_perp_orders_need_an_oracle_price() -> None:
    g = make_genesis()
    m = dataclasses.replace(g.markets[2], initial_price_ticks=0)
    h = Harness(dataclasses.replace(g, markets=(*g.markets[:2], m, g.markets[3])))
    assert h.one(A1, limit(BTC_PERP, True, P, 10)).code == "no_reference_price"
    h.oracle(BTC_PERP, P)
    assert h.one(A1, limit(BTC_PERP, True, P, 10)).code == "ok"
