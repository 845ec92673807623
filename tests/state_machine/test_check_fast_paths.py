"""The order checks' fast paths, and the fee formula the fills write out, equal the named
functions they stand for.

The placement fast path asks ``limit_rules_pass`` once instead of calling lots_error,
price_error, band_error and min_notional_error; the spot balance check calls balance_error only
when its own comparison fails; the fills compute trade_fee_atoms inline. If a copy drifts from
its function, an order would be accepted that the predicates refuse (or the reverse), or a fee
would change: these properties catch that.
"""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as hs

from state_machine.clob.checks import (
    balance_error,
    band_error,
    limit_rules_pass,
    lots_error,
    min_notional_error,
    notional_atoms,
    price_error,
    trade_fee_atoms,
)
from state_machine.exchange import BlockContext, ExchangeState, apply_block
from state_machine.genesis import Market
from state_machine.invariants import PPM
from tests.conftest import examples
from tests.state_machine.helpers import BTC_PERP, BTC_SPOT, T0, make_genesis
from tests.state_machine.randgen import RandomFlow

MARKETS = {m.market_id: m for m in make_genesis().markets}
# The predicates read only the genesis (asset symbols and decimals) from the state, for messages.
ST = ExchangeState(make_genesis())

small = hs.integers(min_value=0, max_value=2_000)
u64 = hs.integers(min_value=0, max_value=2**64 - 1)


@hs.composite
def markets(draw: hs.DrawFn) -> Market:
    """A genesis market with its order limits redrawn, small enough that edges are hit."""
    base = MARKETS[draw(hs.sampled_from([BTC_SPOT, BTC_PERP]))]
    return dataclasses.replace(
        base,
        max_order_lots=draw(hs.integers(min_value=1, max_value=1_000)),
        max_price_ticks=draw(hs.integers(min_value=1, max_value=1_000)),
        tick_lot_atoms=draw(hs.integers(min_value=1, max_value=50)),
        min_notional_atoms=draw(hs.integers(min_value=0, max_value=100_000)),
        price_band_ppm=draw(hs.integers(min_value=0, max_value=1_000_000)),
    )


@hs.composite
def orders(draw: hs.DrawFn) -> tuple[Market, int, int, int, bool]:
    """(market, reference, price, size, reduce-only), the price often on a band edge."""
    market = draw(markets())
    ref = draw(small)
    edge = [ref * (PPM + s * market.price_band_ppm) // PPM for s in (-1, 1)]
    price = draw(hs.one_of(small, hs.sampled_from(edge).map(lambda p: p + draw(nudge))))
    price = max(price, 0)
    size = draw(small)
    if draw(hs.booleans()):  # the minimum notional on (or next to) this order's notional
        notional = price * size * market.tick_lot_atoms
        market = dataclasses.replace(market, min_notional_atoms=max(notional + draw(nudge), 0))
    return market, ref, price, size, draw(hs.booleans())


nudge = hs.integers(min_value=-2, max_value=2)


@settings(max_examples=examples(3000))
@given(orders())
def test_limit_rules_pass_is_the_four_predicates(
    order: tuple[Market, int, int, int, bool],
) -> None:
    market, ref, price, size, reduce_only = order
    predicates_pass = (
        lots_error(ST, market, size) is None
        and price_error(ST, market, price) is None
        and band_error(ST, market, ref, price) is None
        and min_notional_error(ST, market, price, size, reduce_only) is None
    )
    assert limit_rules_pass(market, ref, price, size, reduce_only) == predicates_pass


@settings(max_examples=examples(300))
@given(hs.sampled_from(list(MARKETS.values())), u64, u64, u64, hs.booleans())
def test_limit_rules_pass_is_the_four_predicates_at_wire_scale(
    market: Market, ref: int, price: int, size: int, reduce_only: bool
) -> None:
    predicates_pass = (
        lots_error(ST, market, size) is None
        and price_error(ST, market, price) is None
        and band_error(ST, market, ref, price) is None
        and min_notional_error(ST, market, price, size, reduce_only) is None
    )
    assert limit_rules_pass(market, ref, price, size, reduce_only) == predicates_pass


@settings(max_examples=examples(300))
@given(u64, u64)
def test_balance_fast_test_is_balance_error(available: int, need: int) -> None:
    assert (available < need) == (balance_error(ST, 0, available, need) is not None)


@settings(max_examples=examples(8), deadline=None)
@given(
    hs.integers(min_value=0, max_value=10_000),
    hs.integers(min_value=0, max_value=50_000),
    hs.integers(min_value=0, max_value=2**16),
)
def test_fill_fees_are_trade_fee_atoms(maker_ppm: int, extra_ppm: int, seed: int) -> None:
    """The fills compute trade_fee_atoms written out; every fill's fees, spot and perp, at
    drawn fee rates, must equal the named formula on the fill's amounts."""
    taker_ppm = maker_ppm + extra_ppm  # genesis: a maker never pays more than a taker
    g = make_genesis(6)
    g = dataclasses.replace(
        g,
        markets=tuple(
            dataclasses.replace(m, maker_fee_ppm=maker_ppm, taker_fee_ppm=taker_ppm)
            for m in g.markets
        ),
    )
    st = ExchangeState.from_genesis(g)
    flow = RandomFlow(seed)
    fills = 0
    for h in range(1, 16):
        res = apply_block(st, BlockContext(h, T0 + 500 * h, b""), flow.block(st))
        for e in res.events:
            if e[0] != "fill":
                continue
            _, mid, price, qty, taker_buy, *_, tfee, mfee, _, _ = e
            market = st.markets[mid]
            notional = notional_atoms(market, price, qty)
            base = qty * market.lot_base_atoms
            if market.is_perp:
                want = trade_fee_atoms(notional, taker_ppm), trade_fee_atoms(notional, maker_ppm)
            elif taker_buy:
                want = trade_fee_atoms(base, taker_ppm), trade_fee_atoms(notional, maker_ppm)
            else:
                want = trade_fee_atoms(notional, taker_ppm), trade_fee_atoms(base, maker_ppm)
            assert (tfee, mfee) == want
            fills += 1
    assert fills > 0, "the random flow should trade"
