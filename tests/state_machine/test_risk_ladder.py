"""The liquidation ladder step by step with exact amounts: the backstop (vault) takeover and its
fee, a book too thin for the liquidation order, ADL ranking and prices, and the mark (not the
oracle) driving triggers and liquidations."""

from __future__ import annotations

from fractions import Fraction

import pytest

from state_machine.accounts.records import VAULT
from state_machine.audit import audit
from state_machine.genesis import Parameters
from state_machine.liquidation.risk import liquidation_price_ticks, unit_value_and_mm
from state_machine.perpetuals.margin import maintenance_margin_atoms
from state_machine.tx import KIND_STOP_MARKET, OraclePrice, OracleUpdate, SetLeverage
from tests.state_machine.helpers import (
    BTC_PERP,
    ETH_PERP,
    USDC,
    VALIDATORS,
    Harness,
    acct,
    limit,
    make_genesis,
    trigger,
    tx,
)

A1, A2, A3, A4, A7 = acct(1), acct(2), acct(3), acct(4), acct(7)
ENTRY = 6_000_000  # 60,000.00; BTC-PERP: one tick on one lot is one USDC atom
LOTS = 7_000  # 0.7 BTC, 42,000 USDC at the entry
FEE_PPM = 5_000  # the documented default liquidation_fee_ppm


def ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


INSURANCE = 10_000 * USDC  # the vault's fund: enough margin to take 42,000 USDC at 50x


def leveraged_long() -> Harness:
    """acct(7): 1,000 USDC cross at 50x, long 7,000 lots at 60,000 bought from A2; empty book;
    a vault with an insurance fund of 10,000 USDC."""
    rich = [(a, 0, 10**6 * USDC) for a in (A1, A2, A3, A4)]
    params = Parameters(insurance_fund_atoms=INSURANCE)
    h = Harness(make_genesis(funded=[*rich, (A7, 0, 1_000 * USDC)], parameters=params))
    assert h.genesis.parameters.liquidation_fee_ppm == FEE_PPM
    h.one(A7, SetLeverage(BTC_PERP, 50, False))
    h.one(A2, limit(BTC_PERP, False, ENTRY, LOTS))
    assert h.one(A7, limit(BTC_PERP, True, ENTRY, LOTS)).status == "filled"
    return h


def btc_mm(h: Harness, lots: int, price: int) -> int:
    return maintenance_margin_atoms(h.state.markets[BTC_PERP], lots * price)


def size(h: Harness, who: bytes, market: int = BTC_PERP) -> int:
    a = h.state.accounts.get(who)
    pos = a.positions.get(market) if a is not None else None
    return pos.size_lots if pos is not None else 0


# ---- step 2: the vault takes the position over -------------------------------------------


@pytest.mark.parametrize("price", [5_895_000, 5_885_000], ids=["fee_paid", "fee_capped"])
def test_backstop_takes_the_position_at_the_mark_and_charges_the_fee(price: int) -> None:
    h = leveraged_long()
    usdc = h.bal(A7, 0)[0]
    h.oracle(BTC_PERP, price)
    assert h.state.mstates[BTC_PERP].mark_price_ticks == price  # empty book: mark = oracle
    value = usdc + (price - ENTRY) * LOTS
    mm = btc_mm(h, LOTS, price)
    assert 0 < 3 * value < 2 * mm  # below 2/3 of maintenance: straight to the vault
    # the fee is liquidation_fee_ppm of the notional at the mark, never more than is left
    fee = min(ceil_div(LOTS * price * FEE_PPM, 10**6), value)
    assert (fee < value) == (price == 5_895_000)
    assert not h.events("internal_order") and not h.events("liquidation_fee")
    (b,) = h.events("backstop")
    assert (b["account"], b["value_atoms"], b["fee_atoms"]) == (A7, value, fee)
    (t,) = h.events("position_transfer")
    assert (t["from"], t["to"], t["size_lots"], t["price_ticks"]) == (A7, VAULT, LOTS, price)
    vault_pos = h.state.accounts[VAULT].positions[BTC_PERP]
    assert (vault_pos.size_lots, vault_pos.entry_value) == (LOTS, LOTS * price)
    assert h.bal(VAULT, 0) == (INSURANCE + fee, 0)
    assert h.bal(A7, 0) == (value - fee, 0) and size(h, A7) == 0
    assert not h.events("insurance_payout")
    audit(h.state)


def test_a_book_too_thin_for_the_liquidation_order_sends_the_rest_to_the_vault() -> None:
    h = leveraged_long()
    usdc = h.bal(A7, 0)[0]
    bid = 5_905_000
    h.one(A3, limit(BTC_PERP, True, bid, 1_000))  # the only bid: 1,000 of the 7,000 lots
    mark = 5_910_000
    h.oracle(BTC_PERP, mark)
    assert h.state.mstates[BTC_PERP].mark_price_ticks == mark  # one-sided book: the oracle
    value = usdc + (mark - ENTRY) * LOTS
    mm = btc_mm(h, LOTS, mark)
    assert 2 * mm <= 3 * value < 3 * mm  # step 1: a reduce-only order into the book
    (io,) = h.events("internal_order")
    assert (io["account"], io["code"], io["filled_lots"]) == (A7, "ok", 1_000)
    fee1 = ceil_div(1_000 * mark * FEE_PPM, 10**6)
    (lf,) = h.events("liquidation_fee")
    assert (lf["account"], lf["market_id"], lf["fee_atoms"]) == (A7, BTC_PERP, fee1)
    # After the fill the unit is still at or above 2/3 of its maintenance: only the part the
    # book did not absorb sends the rest of the position to the vault.
    taker_fee = ceil_div(1_000 * bid * 450, 10**6)
    value2 = value - (mark - bid) * 1_000 - taker_fee - fee1
    mm2 = btc_mm(h, LOTS - 1_000, mark)
    assert 2 * mm2 <= 3 * value2 < 3 * mm2
    fee2 = ceil_div((LOTS - 1_000) * mark * FEE_PPM, 10**6)
    (b,) = h.events("backstop")
    assert (b["value_atoms"], b["fee_atoms"]) == (value2, fee2)
    (t,) = h.events("position_transfer")
    assert (t["from"], t["to"], t["size_lots"], t["price_ticks"]) == (A7, VAULT, 6_000, mark)
    vault_pos = h.state.accounts[VAULT].positions[BTC_PERP]
    assert (vault_pos.size_lots, vault_pos.entry_value) == (6_000, 6_000 * mark)
    assert h.bal(VAULT, 0) == (INSURANCE + fee1 + fee2, 0)
    assert h.bal(A7, 0) == (value2 - fee2, 0) and size(h, A7) == 0
    assert size(h, A3) == 1_000
    audit(h.state)


# ---- step 3: auto-deleveraging -------------------------------------------------------------

LB, S1, S2, S3, S4, LR, BY, S5 = (acct(i) for i in range(10, 18))


def adl_harness() -> Harness:
    """LB (1,000 USDC, 50x) is long 7,000 lots at 60,000. Shorts: S1 3,000 (rich), S2 2,000
    (3,000 USDC), S4 2,000 (10,200 USDC), S5 1,000 (1,000 USDC, also long 6,000 ETH-PERP at
    25x) at 60,000, and S3 2,000 (10,000 USDC) at 62,000. LR is long too; BY has no position.
    The vault is empty (no insurance fund)."""
    funded = [(LB, 1_000), (S1, 10**6), (S2, 3_000), (S3, 10_000), (S4, 10_200), (LR, 10**6)]
    funded += [(S5, 1_000)]
    g = make_genesis(funded=[(a, 0, n * USDC) for a, n in funded] + [(BY, 0, 777)])
    h = Harness(g)
    levs = [SetLeverage(BTC_PERP, 50, False), SetLeverage(ETH_PERP, 25, False)]
    h.block([tx(LB, levs[:1], h.next_nonce()), tx(S5, levs, h.next_nonce())])
    sells = ((S1, 3_000), (S2, 2_000), (S5, 1_000), (S4, 2_000))
    h.block([tx(s, [limit(BTC_PERP, False, ENTRY, n)], h.next_nonce()) for s, n in sells])
    assert h.one(LB, limit(BTC_PERP, True, ENTRY, LOTS)).status == "filled"
    assert h.one(LR, limit(BTC_PERP, True, ENTRY, 1_000)).status == "filled"
    h.one(S3, limit(BTC_PERP, False, 6_200_000, 2_000))
    assert h.one(LR, limit(BTC_PERP, True, 6_200_000, 2_000)).status == "filled"
    h.one(S1, limit(ETH_PERP, False, 300_000, 6_000))
    assert h.one(S5, limit(ETH_PERP, True, 300_000, 6_000)).status == "filled"
    assert not h.state.books[BTC_PERP].bids.keys and not h.state.books[BTC_PERP].asks.keys
    return h


def test_adl_ranks_counterparties_and_closes_at_the_bankruptcy_price() -> None:
    h = adl_harness()
    mark = 5_700_000  # -5 %: LB loses 2,100 USDC, far more than it has
    shorts = (S1, S2, S3, S4)
    values = {}
    for s in shorts:
        pos = h.state.accounts[s].positions[BTC_PERP]
        values[s] = h.bal(s, 0)[0] + mark * pos.size_lots - pos.entry_value
    # (entry / mark) x (notional / account value) for a short, from the positions before
    score = {
        s: Fraction(-h.state.accounts[s].positions[BTC_PERP].entry_value, -size(h, s) * mark)
        * Fraction(-size(h, s) * mark, values[s])
        for s in shorts
    }
    assert sorted(shorts, key=lambda s: -score[s]) == [S2, S3, S4, S1]
    # S3 is ahead of S4 only for its better entry: its notional / value is the smaller one
    assert Fraction(2_000 * mark, values[S3]) < Fraction(2_000 * mark, values[S4])
    lb = h.state.accounts[LB].positions[BTC_PERP]
    # price at which LB's value is zero, rounded up (a long): 58,598.43
    p_b = ceil_div(lb.entry_value - h.bal(LB, 0)[0], LOTS)
    assert p_b == 5_859_843
    untouched = {a: (h.bal(a, 0), size(h, a)) for a in (LR, BY)}
    s1_btc = size(h, S1)
    # BTC and ETH fall in one block; S5's ETH long leaves its account value below zero.
    prices = (OraclePrice(BTC_PERP, mark), OraclePrice(ETH_PERP, 270_000))
    h.block([tx(v, [OracleUpdate(prices)], h.next_nonce()) for v in VALIDATORS])
    value_s5, _ = unit_value_and_mm(h.state, h.state.accounts[S5], None)
    assert 0 <= value_s5 < 6_000 * 10  # deleveraged after LB, at its own bankruptcy price
    liquidations = [e["account"] for e in h.events("liquidation")]
    assert liquidations == [LB, S5]  # key order
    assert not h.events("backstop")  # the vault has nothing to cover the loss
    btc_adl = [e for e in h.events("adl") if e["market_id"] == BTC_PERP]
    # S5 first: an account value <= 0 ranks ahead of every score; then by score; S1 untouched
    assert [(e["counterparty"], e["size_lots"]) for e in btc_adl] == [
        (S5, 1_000),
        (S2, 2_000),
        (S3, 2_000),
        (S4, 2_000),
    ]
    assert {e["bankrupt"] for e in btc_adl} == {LB}
    assert {e["price_ticks"] for e in btc_adl} == {p_b}
    assert [size(h, a) for a in (LB, S2, S3, S4, S5)] == [0] * 5
    assert size(h, S1) == s1_btc
    assert 0 <= h.bal(LB, 0)[0] < LOTS  # zero value, up to the price rounding
    # the counterparties closed at p_b: S2's short of 2,000 from 60,000
    s2_fees = ceil_div(2_000 * ENTRY * 150, 10**6)
    assert h.bal(S2, 0)[0] == 3_000 * USDC - s2_fees + (ENTRY - p_b) * 2_000
    assert {a: (h.bal(a, 0), size(h, a)) for a in (LR, BY)} == untouched
    assert h.bal(VAULT, 0) == (0, 0) and size(h, VAULT) == 0
    audit(h.state)


def test_adl_ranking_puts_a_counterparty_without_value_first() -> None:
    from state_machine.liquidation.risk import adl_ranking

    h = adl_harness()
    h.oracle(BTC_PERP, 5_990_000)  # everyone healthy
    market = h.state.markets[BTC_PERP]

    def ranked() -> list[bytes]:
        return [a.pubkey for a, _ in adl_ranking(h.state, market, h.state.accounts[LB], False)]

    assert ranked()[-1] == S1  # the rich account has the lowest score
    # S1's cross value at zero, then below: it ranks first whatever its score.
    s1 = h.state.accounts[S1]
    for target in (0, -1):
        value, _ = unit_value_and_mm(h.state, s1, None)
        s1.balances[0].available_atoms += target - value
        assert ranked()[0] == S1
        assert ranked()[1:] == [S5, S2, S3, S4]


# ---- the mark, not the oracle ---------------------------------------------------------------


def test_triggers_and_liquidations_follow_the_mark_when_it_leaves_the_oracle() -> None:
    """The oracle stays at 60,000 while a two-sided book under it pulls the mark down through
    the basis EMA: a stop fires and a 50x long is liquidated on the mark alone."""
    h = leveraged_long()
    h.one(A2, limit(BTC_PERP, False, ENTRY, 100))
    h.one(A1, limit(BTC_PERP, True, ENTRY, 100))
    stop_px = 5_950_000
    stop = h.one(A1, trigger(BTC_PERP, False, KIND_STOP_MARKET, stop_px, 100)).order_id
    liq_px = liquidation_price_ticks(h.state, h.state.accounts[A7], BTC_PERP)
    assert stop_px > liq_px > 5_870_000
    h.one(A3, limit(BTC_PERP, True, 5_850_000, 100_000))
    h.one(A4, limit(BTC_PERP, False, 5_870_000, 10))  # mid 58,600; last trade 60,000
    fired_at = liquidated_at = None
    prev_mark = h.state.mstates[BTC_PERP].mark_price_ticks
    usdc = h.bal(A7, 0)[0]
    for n in range(30):
        h.block([], dt_ms=20_000)
        ms = h.state.mstates[BTC_PERP]
        mark = ms.mark_price_ticks
        assert ms.oracle_price_ticks == ENTRY  # the oracle never moves
        assert mark < prev_mark
        fired = [e for e in h.events("trigger_fired") if e["trigger_id"] == stop]
        # the stop fires in the block the mark first reaches it, not before
        assert bool(fired) == (mark <= stop_px < prev_mark)
        if fired:
            fired_at = n
        liq = h.events("liquidation")
        if liq:
            # value and maintenance margin at the mark (at the oracle the unit is healthy)
            value = usdc + (mark - ENTRY) * LOTS
            assert (liq[0]["account"], liq[0]["value_atoms"]) == (A7, value)
            assert liq[0]["maintenance_atoms"] == btc_mm(h, LOTS, mark) > value
            assert usdc >= btc_mm(h, LOTS, ENTRY)
            assert mark < liq_px <= prev_mark
            liquidated_at = n
            break
        assert mark >= liq_px
        prev_mark = mark
    assert fired_at is not None and liquidated_at is not None and fired_at < liquidated_at
    assert size(h, A1) == 0 and size(h, A7) == 0
    audit(h.state)
