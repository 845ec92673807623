"""Risk engine: worked examples from public docs, mark price, funding, triggers of the ladder,
a crash scenario with insurance fund and ADL, property tests and determinism."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from state_machine.accounts.records import VAULT
from state_machine.audit import audit
from state_machine.exchange import ExchangeState
from state_machine.genesis import (
    Asset,
    FundedBalance,
    Genesis,
    MarginTier,
    Market,
    Parameters,
    default_genesis,
)
from state_machine.invariants import PPM
from state_machine.liquidation.risk import (
    evaluate_unit,
    liquidation_price_ticks,
    risk_index,
    unit_key,
    unit_positions,
    unit_value_and_mm,
)
from state_machine.perpetuals.funding import funding_rate_8h_ppb, interval_rate_ppb
from state_machine.perpetuals.margin import (
    maintenance_margin_atoms,
    pending_funding_atoms,
    unrealized_pnl_atoms,
)
from state_machine.prices.mark import median3
from state_machine.queries import account_summary
from state_machine.results import event_to_dict
from state_machine.tx import (
    KIND_STOP_LIMIT,
    KIND_STOP_MARKET,
    KIND_TAKE_PROFIT_LIMIT,
    KIND_TAKE_PROFIT_MARKET,
    TIF_IOC,
    AdjustIsolatedMargin,
    CancelAll,
    CancelByClientId,
    CancelOrder,
    OraclePrice,
    OracleUpdate,
    SetLeverage,
)
from tests.conftest import examples
from tests.state_machine.helpers import (
    BTC_PERP,
    CHAIN,
    ETH_PERP,
    T0,
    USDC,
    VALIDATORS,
    Harness,
    acct,
    limit,
    make_genesis,
    run_bench,
    trigger,
    tx,
)

A1, A2, A3, A4 = acct(1), acct(2), acct(3), acct(4)
STRK_PERP = 4


# ---- worked examples ---------------------------------------------------------------------


def test_funding_formula_hyperliquid_example() -> None:
    # interest 0.01 %, premium 1 % (impact bid 10,100 vs oracle 10,000) -> F = 0.95 % per 8 h
    assert funding_rate_8h_ppb(10_000_000, 100_000, 500_000) == 9_500_000
    # the other clamp edge and the pass-through band
    assert funding_rate_8h_ppb(-10_000_000, 100_000, 500_000) == -9_500_000
    assert funding_rate_8h_ppb(50_000, 100_000, 500_000) == 100_000
    # paid hourly as F/8, capped at 4 % per hour
    assert interval_rate_ppb(9_500_000, 3_600_000, 40_000) == 1_187_500
    assert interval_rate_ppb(10**9, 3_600_000, 40_000) == 40_000_000


def funding_harness(interval_ms: int = 3_600_000) -> Harness:
    """A1 long 100 lots at 10,000.00 (100 USDC); impact bid 10,100.00 and impact ask above the
    oracle (premium exactly 1 %); then one block across the first funding boundary (whose
    average still includes the empty-book blocks)."""
    h = Harness(make_genesis(parameters=Parameters(funding_interval_ms=interval_ms)))
    h.oracle(BTC_PERP, 1_000_000)  # 10,000.00
    h.one(A2, limit(BTC_PERP, False, 1_000_000, 100))
    h.one(A1, limit(BTC_PERP, True, 1_000_000, 100))  # A1 long 100 lots (100 USDC notional)
    h.one(A3, limit(BTC_PERP, True, 1_010_000, 20_000))  # impact bid 10,100.00
    h.one(A4, limit(BTC_PERP, False, 1_020_000, 20_000))  # impact ask above the oracle
    h.block([], dt_ms=interval_ms)
    assert len(btc_funding(h)) == 1
    return h


def btc_funding(h: Harness) -> list[tuple[int, ...]]:
    return [e for e in h.last.events if e[0] == "funding" and e[1] == BTC_PERP]  # type: ignore[union-attr]


def one_interval(h: Harness, interval_ms: int = 3_600_000) -> list[tuple[int, ...]]:
    """Blocks of 10 minutes over one funding interval; the BTC-PERP funding events."""
    funding = []
    for _ in range(interval_ms // 600_000):
        h.block([], dt_ms=600_000)
        funding += btc_funding(h)
    return funding


def test_funding_end_to_end_from_impact_prices() -> None:
    h = funding_harness()
    first_index = h.state.mstates[BTC_PERP].funding_index
    pos = h.state.accounts[A1].positions[BTC_PERP]
    owed_before = pending_funding_atoms(h.state, pos)
    # A full interval with the book unchanged: premium exactly 1 % in every sample.
    (ev,) = one_interval(h)
    _, _, rate_ppb, f8_ppb, premium_ppb, index = ev
    assert premium_ppb == 10_000_000  # 1 %
    assert f8_ppb == 9_500_000  # 0.95 % per 8 hours
    assert rate_ppb == 1_187_500  # paid for one hour
    assert index - first_index == 1_187_500 * 1_000_000
    # A long of 100 USDC notional pays 0.11875 USDC for the hour; shorts receive it.
    assert pending_funding_atoms(h.state, pos) - owed_before == 118_750
    short = h.state.accounts[A2].positions[BTC_PERP]
    assert pending_funding_atoms(h.state, short) < 0
    # Settling on the next trade moves exactly the pending amount.
    usdc = h.bal(A1, 0)[0]
    owed = pending_funding_atoms(h.state, pos)
    h.one(A1, limit(BTC_PERP, False, 1_010_000, 10, tif=TIF_IOC))
    pays = [e for e in h.last.events if e[0] == "funding_payment"]  # type: ignore[union-attr]
    assert pays[0][1:] == (A1, BTC_PERP, owed)
    fee = -(-1_010_000 * 10 * 450 // 10**6)
    assert h.bal(A1, 0)[0] == usdc - owed + 10 * 10_000 - fee
    audit(h.state)


@pytest.mark.parametrize("interval_ms", [1_800_000, 7_200_000])
def test_funding_scales_with_the_interval_length(interval_ms: int) -> None:
    """F / 8 per hour, paid per interval of 30 minutes or 2 hours: exactly half or twice the
    hourly payment of the example above."""
    h = funding_harness(interval_ms)
    pos = h.state.accounts[A1].positions[BTC_PERP]
    owed_before = pending_funding_atoms(h.state, pos)
    index_before = h.state.mstates[BTC_PERP].funding_index
    (ev,) = one_interval(h, interval_ms)
    _, _, rate_ppb, f8_ppb, premium_ppb, index = ev
    assert (premium_ppb, f8_ppb) == (10_000_000, 9_500_000)
    assert rate_ppb == 9_500_000 * interval_ms // (8 * 3_600_000)
    assert rate_ppb == 1_187_500 * interval_ms // 3_600_000  # 593,750 or 2,375,000
    assert index - index_before == rate_ppb * 1_000_000  # rate x oracle
    paid = pending_funding_atoms(h.state, pos) - owed_before
    assert paid == 118_750 * interval_ms // 3_600_000  # 0.059375 or 0.2375 USDC
    audit(h.state)


def test_a_gap_of_several_intervals_settles_one_interval() -> None:
    """A block after three hours without blocks (hourly funding) pays one interval's rate, from
    the samples taken since the last settlement; the skipped intervals pay nothing."""
    h = funding_harness()
    one_interval(h)
    pos = h.state.accounts[A1].positions[BTC_PERP]
    owed_before = pending_funding_atoms(h.state, pos)
    ms = h.state.mstates[BTC_PERP]
    index_before = ms.funding_index
    h.block([], dt_ms=3 * 3_600_000)
    (ev,) = btc_funding(h)
    assert ev[2] == 1_187_500  # one hour's rate
    assert ms.funding_index - index_before == 1_187_500 * 1_000_000
    assert pending_funding_atoms(h.state, pos) - owed_before == 118_750
    # the next boundary is the first one after the block, aligned to genesis time
    assert ms.next_funding_ms == T0 + ((h.time_ms - T0) // 3_600_000 + 1) * 3_600_000


def eth_strk_genesis(a1_usdc: int) -> Genesis:
    """ETH-PERP with a single 5 % maintenance tier and no fees, plus STRK-PERP (10 %)."""
    g = default_genesis(CHAIN, [(v, 10) for v in VALIDATORS], [A2, A3], genesis_time_ms=T0)
    eth = dataclasses.replace(
        g.markets[3],
        margin_tiers=(MarginTier(0, 50_000),),
        max_leverage=10,
        maker_fee_ppm=0,
        taker_fee_ppm=0,
    )
    strk = Market(
        market_id=STRK_PERP,
        symbol="STRK-PERP",
        kind=1,
        base_asset_id=3,
        quote_asset_id=0,
        lot_base_atoms=10**8,
        tick_lot_atoms=100,
        min_notional_atoms=10 * USDC,
        max_price_ticks=10**8,
        max_order_lots=10**7,
        max_leverage=5,
        margin_tiers=(MarginTier(0, 100_000),),
        maker_fee_ppm=0,
        taker_fee_ppm=0,
        price_band_ppm=100_000,
        oracle_max_age_ms=60_000,
        initial_price_ticks=17_500,
        impact_notional_atoms=10_000 * USDC,
    )
    return dataclasses.replace(
        g,
        assets=(*g.assets, Asset(3, "STRK", 8)),
        markets=(*g.markets[:3], eth, strk),
        balances=(*g.balances, FundedBalance(A1, 0, a1_usdc)),
    )


def test_isolated_liquidation_price_dydx_example() -> None:
    # equity 1,000 USDC, short 3 ETH entered at 3,000, maintenance fraction 5 % -> 3,174.60
    h = Harness(eth_strk_genesis(10_000 * USDC))
    assert h.one(A1, SetLeverage(ETH_PERP, 10, True)).code == "ok"
    h.one(A2, limit(ETH_PERP, True, 300_000, 3000))  # 3000 lots of 0.001 ETH
    assert h.one(A1, limit(ETH_PERP, False, 300_000, 3000)).status == "filled"
    pos = h.state.accounts[A1].positions[ETH_PERP]
    assert pos.isolated_margin_atoms == 900 * USDC  # 9,000 notional at 10x
    assert h.one(A1, AdjustIsolatedMargin(ETH_PERP, 100 * USDC)).code == "ok"
    assert liquidation_price_ticks(h.state, h.state.accounts[A1], ETH_PERP) == 317_460
    s = account_summary(h.state, A1)
    assert s["positions"][0]["liquidation_price_ticks"] == 317_460


def test_cross_liquidation_price_dydx_example() -> None:
    # equity 1,000; short 1.5 ETH at 3,000 (5 %); long 1,000 STRK at 1.75 (10 %) -> 3,380.95
    h = Harness(eth_strk_genesis(1_000 * USDC))
    h.one(A2, limit(ETH_PERP, True, 300_000, 1500))
    assert h.one(A1, limit(ETH_PERP, False, 300_000, 1500)).status == "filled"
    h.one(A2, limit(STRK_PERP, False, 17_500, 1000))
    assert h.one(A1, limit(STRK_PERP, True, 17_500, 1000)).status == "filled"
    value, _ = unit_value_and_mm(h.state, h.state.accounts[A1], None)
    assert value == 1_000 * USDC
    assert liquidation_price_ticks(h.state, h.state.accounts[A1], ETH_PERP) == 338_095


def test_median3() -> None:
    for a, b, c in [(1, 2, 3), (3, 2, 1), (2, 3, 1), (2, 1, 3), (5, 5, 1), (1, 9, 9)]:
        assert median3(a, b, c) == sorted((a, b, c))[1]


def test_mark_price_follows_the_book_through_the_median() -> None:
    h = Harness()
    h.one(A1, limit(BTC_PERP, True, 6_000_000, 10))
    assert h.state.mstates[BTC_PERP].mark_price_ticks == 6_000_000  # one-sided: oracle
    h.one(A2, limit(BTC_PERP, False, 6_200_000, 10))
    ms = h.state.mstates[BTC_PERP]
    # mid 6.1M, basis 100,000 ticks; EMA moves by basis * dt / (dt + 150 s) per block.
    assert ms.basis_ema_ticks == 100_000 * 500 // (500 + 150_000)
    assert ms.mark_price_ticks == 6_000_000 + ms.basis_ema_ticks  # the middle of the three
    for _ in range(5):
        h.block([], dt_ms=60_000)
    assert 6_000_000 < h.state.mstates[BTC_PERP].mark_price_ticks <= 6_100_000


# ---- the ladder ---------------------------------------------------------------------------


def crash_genesis(n: int, insurance_usdc: int) -> tuple[Genesis, list[bytes]]:
    traders = [(1000 + i).to_bytes(32, "big") for i in range(n)]
    mm, lp = acct(200), acct(201)
    bystanders = [acct(202), acct(203)]
    balances = [(t, 0, 1_000 * USDC) for t in traders]
    balances += [(mm, 0, 10**8 * USDC), (lp, 0, 10**8 * USDC)]
    balances += [(b, 0, 5_000 * USDC) for b in bystanders]
    g = default_genesis(
        CHAIN,
        [(v, 10) for v in VALIDATORS],
        balances,
        genesis_time_ms=T0,
        parameters=Parameters(
            insurance_fund_atoms=insurance_usdc * USDC,
            liquidation_partial_notional_atoms=20_000 * USDC,
            liquidation_cooldown_ms=1_000,
        ),
    )
    return g, traders


def open_crash_positions(h: Harness, traders: list[bytes]) -> None:
    mm = acct(200)
    p = 6_000_000
    levs = (2, 5, 10, 20, 40, 50)
    h.block(
        [
            tx(t, [SetLeverage(BTC_PERP, levs[i % 6], False)], h.next_nonce())
            for i, t in enumerate(traders)
        ]
    )
    h.block(
        [
            tx(
                mm,
                [limit(BTC_PERP, False, p, 10**7), limit(BTC_PERP, True, p - 1, 10**7)],
                h.next_nonce(),
            )
        ]
    )
    txs = []
    for i, t in enumerate(traders):
        lev = levs[i % 6]
        lots = 1_000 * USDC * lev * 9 // 10 // p  # 90 % of the allowed notional
        is_buy = i % 3 != 0  # two longs for every short
        price = p if is_buy else p - 1
        txs.append(tx(t, [limit(BTC_PERP, is_buy, price, lots, tif=TIF_IOC)], h.next_nonce()))
    res = h.block(txs)
    assert all(r.actions[0].filled_lots > 0 for r in res.tx_results)
    h.block([tx(mm, [CancelAll(None)], h.next_nonce())])


def size(h: Harness, who: bytes) -> int:
    a = h.state.accounts.get(who)
    pos = a.positions.get(BTC_PERP) if a is not None else None
    return pos.size_lots if pos is not None else 0


def unhealthy_units(state: ExchangeState) -> list[bytes]:
    out = []
    for pk, a in state.accounts.items():
        if pk == VAULT:
            continue
        units: list[int | None] = [None] + [m for m, p in a.positions.items() if p.isolated]
        for mid in units:
            if unit_positions(a, mid):
                value, mm = unit_value_and_mm(state, a, mid)
                if value < mm:
                    out.append(pk)
    return out


def btc_sizes(state: ExchangeState) -> dict[bytes, int]:
    return {
        pk: a.positions[BTC_PERP].size_lots
        for pk, a in state.accounts.items()
        if BTC_PERP in a.positions
    }


def reconcile_crash_block(
    h: Harness, sizes_before: dict[bytes, int], vault_before: int, vault_pnl_before: int
) -> None:
    """Every position change and every atom the vault gained or lost in the block, from events.

    The vault gains the liquidation fees (``liquidation_fee`` for fills of liquidation orders
    and refused takeovers, ``backstop`` for takeovers), pays the bad debt
    (``insurance_payout``) and the taker fees of its own de-risk orders, and realises the PnL
    of what it closes (its record's ``realized_pnl_atoms``); no funding interval ends during
    the crash, so there is no funding dust. ADL closes each bankrupt position exactly, and a
    vault ADL closes every vault position.
    """
    assert h.last is not None
    events = [event_to_dict(e) for e in h.last.events]
    assert not [e for e in events if e["kind"] in ("funding", "funding_payment")]
    fills: dict[bytes, int] = {}
    moved: dict[bytes, int] = {}
    vault_taker_fees = 0
    for e in events:
        if e["kind"] == "fill" and e["market_id"] == BTC_PERP:
            q = e["size_lots"] if e["taker_is_buy"] else -e["size_lots"]
            fills[e["taker"]] = fills.get(e["taker"], 0) + q
            fills[e["maker"]] = fills.get(e["maker"], 0) - q
            if e["taker"] == VAULT:
                vault_taker_fees += e["taker_fee_atoms"]
        elif e["kind"] == "position_transfer":
            moved[e["from"]] = moved.get(e["from"], 0) - e["size_lots"]
            moved[e["to"]] = moved.get(e["to"], 0) + e["size_lots"]
    sizes = btc_sizes(h.state)
    for pk in sizes.keys() | sizes_before.keys():
        change = sizes.get(pk, 0) - sizes_before.get(pk, 0)
        assert change == fills.get(pk, 0) + moved.get(pk, 0), pk.hex()
    adl_lots: dict[bytes, int] = {}
    for e in events:
        if e["kind"] == "adl":
            adl_lots[e["bankrupt"]] = adl_lots.get(e["bankrupt"], 0) + e["size_lots"]
    for pk, lots in adl_lots.items():
        # the whole position left after this block's liquidation fills, nothing more
        assert lots == sizes_before[pk] + fills.get(pk, 0) and sizes[pk] == 0
    if any(e["kind"] == "vault_adl" for e in events):
        assert sizes.get(VAULT, 0) == 0
    fees = sum(e["fee_atoms"] for e in events if e["kind"] in ("liquidation_fee", "backstop"))
    paid = sum(e["amount_atoms"] for e in events if e["kind"] == "insurance_payout")
    vault_pos = h.state.accounts[VAULT].positions.get(BTC_PERP)
    realised = (vault_pos.realized_pnl_atoms if vault_pos else 0) - vault_pnl_before
    change = h.bal(VAULT, 0)[0] - vault_before
    assert change == fees - paid + realised - vault_taker_fees


def vault_realised(h: Harness) -> int:
    vault = h.state.accounts.get(VAULT)
    pos = vault.positions.get(BTC_PERP) if vault is not None else None
    return pos.realized_pnl_atoms if pos is not None else 0


def crash(h: Harness, prices: list[int]) -> list[str]:
    lp = acct(201)
    kinds: list[str] = []
    bystanders = {b: h.bal(b, 0) for b in (acct(202), acct(203))}
    for price in prices:
        txs = [
            tx(v, [OracleUpdate((OraclePrice(BTC_PERP, price),))], h.next_nonce())
            for v in VALIDATORS
        ]
        # A thin bid ladder under the new price: some liquidations fill in the book.
        txs.append(tx(lp, [limit(BTC_PERP, True, price * 99 // 100, 2_000)], h.next_nonce()))
        sizes_before, vault_before = btc_sizes(h.state), h.bal(VAULT, 0)[0]
        pnl_before = vault_realised(h)
        res = h.block(txs)
        kinds += [e[0] for e in res.events]
        audit(h.state)
        reconcile_crash_block(h, sizes_before, vault_before, pnl_before)
        assert h.state.mstates[BTC_PERP].mark_price_ticks == price
        # Every unit below maintenance was handled in this very block: it is healthy now or
        # waiting out a partial-liquidation cooldown after this block's step.
        for pk in unhealthy_units(h.state):
            assert any(e[0] == "liquidation" and e[1] == pk for e in res.events)
        if h.bal(VAULT, 0)[0] > 0:
            for pk, a in h.state.accounts.items():
                if pk != VAULT:
                    assert unit_value_and_mm(h.state, a, None)[0] >= 0, pk.hex()
        for b, before in bystanders.items():
            assert h.bal(b, 0) == before
    return kinds


def test_crash_with_insurance_fund_and_adl() -> None:
    g, traders = crash_genesis(240, insurance_usdc=2_000)
    h = Harness(g)
    open_crash_positions(h, traders)
    audit(h.state)
    kinds = crash(h, [5_880_000, 5_700_000, 5_100_000, 4_500_000, 4_200_000])  # -30 % in 5 blocks
    assert {"liquidation", "internal_order", "backstop", "adl", "position_transfer"} <= set(kinds)
    assert {"liquidation_fee", "vault_refused", "socialised_loss"} <= set(kinds)
    assert not unhealthy_units(h.state)
    # the vault took positions over, went under water at the next step down and was closed
    # (into the book, the rest ADL'd) in that block: it holds nothing and owes nothing
    assert {"vault_under_water", "vault_adl"} <= set(kinds)
    assert h.bal(VAULT, 0)[0] >= 0 and size(h, VAULT) == 0
    longs = [t for i, t in enumerate(traders) if i % 3 != 0]
    liquidated = {e for e in longs if h.state.accounts[e].positions[BTC_PERP].size_lots == 0}
    assert len(liquidated) > len(longs) // 2


def test_crash_is_deterministic_and_survives_a_rebuild() -> None:
    """A node that rebuilds its state from entries before every block (so its risk index is
    rebuilt from scratch) liquidates exactly like one that replays: same events, same digest."""
    runs = []
    for rebuild in (False, True):
        g, traders = crash_genesis(120, insurance_usdc=500)
        h = Harness(g)
        open_crash_positions(h, traders)
        trace = []
        for price in [5_880_000, 5_700_000, 5_100_000, 4_500_000]:
            if rebuild:
                h.state = ExchangeState.from_entries(g, h.state.entries())
            crash(h, [price])
            assert h.last is not None
            trace.append((h.state.digest(), h.last.events))
        runs.append(trace)
    assert runs[0] == runs[1]
    assert any(e[0] == "adl" for _, events in runs[0] for e in events)


def test_partial_liquidation_with_cooldown() -> None:
    g = make_genesis(
        parameters=Parameters(
            liquidation_partial_notional_atoms=1_000 * USDC, liquidation_cooldown_ms=10_000
        )
    )
    g = dataclasses.replace(g, balances=(*g.balances, FundedBalance(acct(7), 0, 1_000 * USDC)))
    h = Harness(g)
    a7 = acct(7)
    h.one(a7, SetLeverage(BTC_PERP, 20, False))
    h.one(A2, limit(BTC_PERP, False, 6_000_000, 3_000))
    assert h.one(a7, limit(BTC_PERP, True, 6_000_000, 3_000)).status == "filled"  # 18,000 USDC
    h.one(A3, limit(BTC_PERP, True, 5_740_000, 100_000))  # deep bids for the liquidator
    # -4.7 %: value ~152 USDC is below maintenance (1 % of 17,160) but above 2/3 of it
    h.oracle(BTC_PERP, 5_720_000)
    pos = h.state.accounts[a7].positions[BTC_PERP]
    events = [e for e in h.last.events if e[0] == "internal_order"]  # type: ignore[union-attr]
    assert events and events[0][5] == 600  # 20 % of 3,000 lots
    assert pos.size_lots == 2_400
    assert pos.liquidation_cooldown_ms == h.time_ms + 10_000
    # liquidation_fee_ppm (0.5 %) of the filled lots' notional at the mark, to the vault
    fee = -(-600 * 5_720_000 * 5_000 // 10**6)
    assert [e for e in h.last.events if e[0] == "liquidation_fee"] == [  # type: ignore[union-attr]
        ("liquidation_fee", a7, BTC_PERP, fee)
    ]
    assert h.bal(VAULT, 0) == (fee, 0)


# ---- properties --------------------------------------------------------------------------


@settings(max_examples=examples(25), deadline=None)
@given(
    moves=st.lists(st.integers(-150_000, 150_000), min_size=1, max_size=6),
    levs=st.lists(st.integers(1, 50), min_size=6, max_size=6),
    sizes=st.lists(st.integers(200, 5_000), min_size=6, max_size=6),
    insurance=st.sampled_from([0, 100, 10_000]),
)
# A bankrupt isolated long ADL'd in two parts at its bankruptcy price: the first, partial close
# released margin of the lot that stayed, leaving the isolated record in debt.
@example(
    moves=[-75449], levs=[16, 14, 1, 1, 12, 1], sizes=[201, 200, 200, 200, 200, 200], insurance=0
)
def test_random_price_paths_keep_funds_conserved(
    moves: list[int], levs: list[int], sizes: list[int], insurance: int
) -> None:
    traders = [(500 + i).to_bytes(32, "big") for i in range(6)]
    bystander = acct(9)
    g = default_genesis(
        CHAIN,
        [(v, 10) for v in VALIDATORS],
        [(t, 0, 2_000 * USDC) for t in traders] + [(bystander, 0, 777), (acct(8), 0, 10**12)],
        genesis_time_ms=T0,
        parameters=Parameters(insurance_fund_atoms=insurance * USDC),
    )
    h = Harness(g)
    h.block(
        [
            tx(t, [SetLeverage(BTC_PERP, levs[i], i % 2 == 0)], h.next_nonce())
            for i, t in enumerate(traders)
        ]
    )
    p = 6_000_000
    for i, t in enumerate(traders):
        is_buy = i % 2 == 0
        h.one(acct(8), limit(BTC_PERP, not is_buy, p, sizes[i]))
        h.one(t, limit(BTC_PERP, is_buy, p, sizes[i], tif=TIF_IOC))
        h.one(acct(8), CancelAll(None))
    audit(h.state)
    for m in moves:
        p = max(1_000_000, p * (10**6 + m) // 10**6)
        h.oracle(BTC_PERP, p)
        audit(h.state)
        assert not unhealthy_units(h.state) or any(
            e[0] == "liquidation"
            for e in h.last.events  # type: ignore[union-attr]
        )
        if h.bal(VAULT, 0)[0] > 0:
            for t in traders:
                a = h.state.accounts[t]
                assert unit_value_and_mm(h.state, a, None)[0] >= 0
                if a.positions[BTC_PERP].isolated:
                    assert unit_value_and_mm(h.state, a, BTC_PERP)[0] >= 0
        assert h.bal(bystander, 0) == (777, 0)


# ---- trigger orders ----------------------------------------------------------------------


def test_stop_loss_attached_to_a_long_fires_on_the_mark() -> None:
    h = Harness()
    h.one(A2, limit(BTC_PERP, False, 6_000_000, 100))
    h.one(A1, limit(BTC_PERP, True, 6_000_000, 100))
    usdc = h.bal(A1, 0)
    r = h.one(A1, trigger(BTC_PERP, False, KIND_STOP_MARKET, 5_900_000, 100))
    assert (r.code, r.status) == ("ok", "waiting")
    assert h.bal(A1, 0) == usdc  # holds nothing
    acc = [e for e in h.last.events if e[0] == "trigger_accepted"]  # type: ignore[union-attr]
    assert acc[0][-1] is True  # reduce-only: attached to the long
    h.one(A3, limit(BTC_PERP, True, 5_880_000, 500))
    h.oracle(BTC_PERP, 5_950_000)  # mark above the trigger: nothing
    assert r.order_id in h.state.accounts[A1].triggers
    h.oracle(BTC_PERP, 5_890_000)
    fired = [e for e in h.last.events if e[0] == "trigger_fired"]  # type: ignore[union-attr]
    assert len(fired) == 1 and fired[0][2] == r.order_id and fired[0][5] == "ok"
    assert fired[0][7] == 100
    assert h.state.accounts[A1].positions[BTC_PERP].size_lots == 0
    assert not h.state.accounts[A1].triggers
    audit(h.state)


def test_triggers_fire_in_a_deterministic_order_and_limit_kinds_rest() -> None:
    h = Harness()
    h.oracle(BTC_PERP, 6_000_000)
    ids = []
    for px in (6_100_000, 6_050_000, 6_080_000):  # stop buys: fire when the mark rises
        ids.append(
            h.one(A1, trigger(BTC_PERP, True, KIND_STOP_LIMIT, px, 10, price=px - 200_000)).order_id
        )
    tp = h.one(
        A2, trigger(BTC_PERP, False, KIND_TAKE_PROFIT_LIMIT, 6_090_000, 10, price=6_400_000)
    ).order_id
    h.oracle(BTC_PERP, 6_200_000)
    fired = [e[2] for e in h.last.events if e[0] == "trigger_fired"]  # type: ignore[union-attr]
    assert fired == [ids[1], ids[2], tp, ids[0]]  # by trigger price, then placement
    # The limit kinds became resting GTC orders at their limit prices.
    assert sorted(o.price_ticks for o in h.state.accounts[A1].orders.values()) == [
        5_850_000,
        5_880_000,
        5_900_000,
    ]
    assert [o.price_ticks for o in h.state.accounts[A2].orders.values()] == [6_400_000]


def test_take_profit_for_a_short_and_cancels() -> None:
    h = Harness()
    h.one(A2, limit(BTC_PERP, True, 6_000_000, 100))
    h.one(A1, limit(BTC_PERP, False, 6_000_000, 100))  # A1 short
    tp = h.one(A1, trigger(BTC_PERP, True, KIND_TAKE_PROFIT_MARKET, 5_800_000, 100)).order_id
    c1 = h.one(A1, trigger(BTC_PERP, True, KIND_STOP_MARKET, 6_500_000, 100, client_id=77))
    c2 = h.one(A1, trigger(BTC_PERP, True, KIND_STOP_MARKET, 6_600_000, 100))
    assert (
        h.one(A1, trigger(BTC_PERP, True, KIND_STOP_MARKET, 6_600_000, 100, client_id=77)).code
        == "duplicate_client_id"
    )
    assert h.one(A1, trigger(BTC_PERP, True, KIND_STOP_MARKET, 0, 100)).code == "tick_size"
    assert h.one(A1, CancelByClientId(BTC_PERP, 77)).order_id == c1.order_id
    assert h.one(A1, CancelOrder(BTC_PERP, c2.order_id)).code == "ok"
    assert list(h.state.accounts[A1].triggers) == [tp]
    clone = ExchangeState.from_entries(h.genesis, h.state.entries())
    assert clone.digest() == h.state.digest() and list(clone.accounts[A1].triggers) == [tp]
    h.one(A3, limit(BTC_PERP, False, 5_810_000, 500))
    h.oracle(BTC_PERP, 5_790_000)
    assert h.state.accounts[A1].positions[BTC_PERP].size_lots == 0
    assert h.one(A1, trigger(BTC_PERP, True, KIND_STOP_MARKET, 6_500_000, 10)).code == "ok"
    assert h.one(A1, CancelAll(None)).count == 1


def test_trigger_margin_is_checked_when_it_fires() -> None:
    g = make_genesis()
    g = dataclasses.replace(g, balances=(*g.balances, FundedBalance(acct(7), 0, 100 * USDC)))
    h = Harness(g)
    a7 = acct(7)
    r = h.one(a7, trigger(BTC_PERP, True, KIND_STOP_MARKET, 6_100_000, 100_000))
    assert r.code == "ok"  # 600,000 USDC notional, accepted: triggers hold no margin
    h.oracle(BTC_PERP, 6_150_000)
    fired = [e for e in h.last.events if e[0] == "trigger_fired"]  # type: ignore[union-attr]
    assert fired[0][5] == "insufficient_margin"


def test_one_pass_unit_evaluation_matches_the_reference_functions() -> None:
    from state_machine.liquidation.risk import band_for, evaluate_unit, risk_index, unit_key

    g, traders = crash_genesis(60, insurance_usdc=500)
    h = Harness(g)
    open_crash_positions(h, traders)
    crash(h, [5_880_000])
    idx = risk_index(h.state)
    checked = 0
    for t in traders:
        a = h.state.accounts[t]
        if not unit_positions(a, None):
            continue
        value, mm = unit_value_and_mm(h.state, a, None)
        key = unit_key(t, None)
        idx.drop(key)
        assert evaluate_unit(h.state, idx, key, h.time_ms) == (value < mm)
        if value >= mm:
            bands = band_for(h.state, a, None, value, mm)
            assert idx.bands.get(key) == bands
            assert (key in idx.watch) == (bands is None)
            checked += bands is not None
    assert checked >= 20


def test_funding_alone_triggers_liquidation_in_the_tick_block() -> None:
    """No price moves: a 50x long pays funding every hour until it falls below maintenance;
    the engine must liquidate it in the very block whose funding tick did it."""
    g = make_genesis()
    a7 = acct(7)
    g = dataclasses.replace(g, balances=(*g.balances, FundedBalance(a7, 0, 1_000 * USDC)))
    h = Harness(g)
    h.one(a7, SetLeverage(BTC_PERP, 50, False))
    h.one(A2, limit(BTC_PERP, False, 6_000_000, 7_000))
    assert h.one(a7, limit(BTC_PERP, True, 6_000_000, 7_000)).status == "filled"
    # Bids only, 5 % above the oracle: premium +5 % while the mark stays at the oracle.
    h.one(A3, limit(BTC_PERP, True, 6_300_000, 50_000))
    liquidated_at = None
    for block in range(200):
        h.block([], dt_ms=600_000)
        assert h.last is not None
        ticked = any(e[0] == "funding" for e in h.last.events)
        liq = any(e[0] == "liquidation" and e[1] == a7 for e in h.last.events)
        assert h.state.mstates[BTC_PERP].mark_price_ticks == 6_000_000
        # never left below maintenance at the end of a block
        assert a7 not in unhealthy_units(h.state) or liq
        if liq:
            assert ticked  # only a funding tick can have moved it
            liquidated_at = block
            break
    assert liquidated_at is not None
    audit(h.state)


def test_liquidation_cancels_orders_and_triggers_of_the_unit() -> None:
    g = make_genesis()
    a7 = acct(7)
    g = dataclasses.replace(g, balances=(*g.balances, FundedBalance(a7, 0, 1_000 * USDC)))
    h = Harness(g)
    h.one(a7, SetLeverage(BTC_PERP, 50, False))
    h.one(A2, limit(BTC_PERP, False, 6_000_000, 7_000))
    assert h.one(a7, limit(BTC_PERP, True, 6_000_000, 7_000)).status == "filled"
    h.one(a7, limit(BTC_PERP, True, 5_500_000, 10))
    h.one(a7, trigger(BTC_PERP, True, KIND_STOP_MARKET, 6_500_000, 10))
    h.oracle(BTC_PERP, 5_900_000)  # -1.7 % at 50x: under water
    kinds = [e[0] for e in h.last.events]  # type: ignore[union-attr]
    assert "liquidation" in kinds
    assert not h.state.accounts[a7].orders and not h.state.accounts[a7].triggers
    reasons = {e[-1] for e in h.last.events if e[0] in ("order_cancelled", "trigger_cancelled")}  # type: ignore[union-attr]
    assert "liquidation" in reasons
    audit(h.state)


def test_bench_risk_prints_json_last_line() -> None:
    last = run_bench("risk", "--positions", "500", "--blocks", "3")
    assert last["bench"] == "risk"
    (r,) = last["results"]
    assert r["positions"] >= 500 and r["block_ms"] > 0


@settings(max_examples=300, deadline=None)
@given(
    floors=st.lists(st.integers(1, 10**13), min_size=0, max_size=5, unique=True),
    mmr_steps=st.lists(st.integers(1, 60_000), min_size=6, max_size=6),
    size=st.integers(-(10**7), 10**7).filter(lambda x: x != 0),
    mark=st.integers(1, 10**8),
    entry=st.integers(1, 10**8),
    below=st.booleans(),
)
def test_inlined_maintenance_margin_equals_the_named_rule(
    floors: list[int], mmr_steps: list[int], size: int, mark: int, entry: int, below: bool
) -> None:
    """evaluate_unit inlines maintenance_margin_atoms (its hot path). With the unit's value set
    to the named rule's MM, or one atom below it, the inlined verdict must flip exactly there:
    any difference between the two computations would put one of the cases on the wrong side.
    """
    g0 = make_genesis()
    perp = g0.markets[BTC_PERP]
    first = min(mmr_steps[0], PPM // (2 * perp.max_leverage))
    mmrs = [first + sum(mmr_steps[1 : j + 1]) for j in range(len(floors) + 1)]
    tiers = tuple(MarginTier(f, r) for f, r in zip([0, *sorted(floors)], mmrs, strict=True))
    market = dataclasses.replace(perp, margin_tiers=tiers)
    markets = tuple(market if m.market_id == BTC_PERP else m for m in g0.markets)
    state = ExchangeState.from_genesis(dataclasses.replace(g0, markets=markets))
    who = acct(9)
    account = state.account(who)
    pos = state.position(account, state.markets[BTC_PERP])
    pos.size_lots, pos.entry_value = size, entry * size
    state.mstates[BTC_PERP].mark_price_ticks = mark
    notional = abs(size) * mark * market.tick_lot_atoms
    mm = maintenance_margin_atoms(state.markets[BTC_PERP], notional)
    state.balance(account, 0).available_atoms = mm - unrealized_pnl_atoms(pos, mark) - below
    idx = risk_index(state)
    assert evaluate_unit(state, idx, unit_key(who, None), T0) == below


def test_bench_risk_cascade_liquidates_every_victim_in_one_block() -> None:
    """The crash-cascade mode: one oracle drop makes every victim liquidatable, and the one
    block runs all of them through the ladder (book, vault, ADL: the vault's exposure cap is
    small enough here that ADL takes part once it refuses)."""
    last = run_bench(
        "risk", "--cascade", "300", "--cascade-bystanders", "300", "--insurance-usdc", "5000"
    )
    assert last["bench"] == "risk" and last["mode"] == "cascade"
    c = last["cascade"]
    assert c["victims"] == 300 and c["liquidated_units"] == 300
    assert c["cascade_block_ms"] > 0
    assert {"backstop", "adl", "internal_order"} <= set(c["events"])


@settings(max_examples=300, deadline=None)
@given(
    sizes=st.lists(st.integers(-(10**7), 10**7), min_size=1, max_size=2),
    marks=st.lists(st.integers(1, 10**8), min_size=2, max_size=2),
    entries=st.lists(st.integers(1, 10**8), min_size=2, max_size=2),
    funding_moves=st.lists(st.integers(-(10**12), 10**12), min_size=2, max_size=2),
    collateral=st.integers(-(10**12), 10**12),
)
def test_unit_value_and_mm_equals_the_named_rules(
    sizes: list[int],
    marks: list[int],
    entries: list[int],
    funding_moves: list[int],
    collateral: int,
) -> None:
    """unit_value_and_mm (positions_value_and_mm) writes out pending funding and the tier
    lookup; with funding due either way and any sizes, it must equal collateral + PnL -
    pending_funding_atoms and the sum of maintenance_margin_atoms of the cross positions."""
    state = ExchangeState.from_genesis(make_genesis())
    who = acct(9)
    account = state.account(who)
    state.balance(account, 0).available_atoms = collateral
    value, mm = collateral, 0
    for i, size in enumerate(sizes):
        mid = (BTC_PERP, ETH_PERP)[i]
        market = state.markets[mid]
        pos = state.position(account, market)
        pos.size_lots, pos.entry_value = size, entries[i] * size
        ms = state.mstates[mid]
        ms.mark_price_ticks = marks[i]
        ms.funding_index = pos.funding_index + funding_moves[i]
        if size:
            value += unrealized_pnl_atoms(pos, marks[i]) - pending_funding_atoms(state, pos)
            notional = abs(size) * marks[i] * market.tick_lot_atoms
            mm += maintenance_margin_atoms(market, notional)
    assert unit_value_and_mm(state, account, None) == (value, mm)
