"""Funding (perps), sampled at the end of each block: premium = (max(impact bid - oracle, 0) -
max(oracle - impact ask, 0)) / oracle, where an impact price is the average fill price of
``impact_notional_atoms`` (a side too thin for it contributes 0). At the end of an interval
the average premium P gives the 8-hour rate ``F = P + clamp(interest - P, -clamp, +clamp)``;
the interval pays ``F * interval / 8 h``, capped at ``funding_cap_ppm_per_hour`` per hour, on
notional at the oracle price: the market's index grows by rate x oracle, and each position
settles lazily (perpetuals/margin.py).
"""

from __future__ import annotations

from state_machine.book import Book, BookSide
from state_machine.genesis import Market
from state_machine.invariants import div_ceil
from state_machine.perpetuals.margin import RATE_SCALE
from state_machine.prices.records import MarketState
from state_machine.state import ExchangeCore

HOUR_MS = 3_600_000


EIGHT_HOURS_MS = 8 * HOUR_MS


def funding_rate_8h_ppb(premium_ppb: int, interest_ppb: int, clamp_ppb: int) -> int:
    """F = P + clamp(interest - P, -clamp, +clamp) (an 8-hour rate, ppb)."""
    d = interest_ppb - premium_ppb
    if d > clamp_ppb:
        d = clamp_ppb
    elif d < -clamp_ppb:
        d = -clamp_ppb
    return premium_ppb + d


def impact_terms(side: BookSide, notional_atoms: int, tla: int) -> tuple[int, int] | None:
    """(cost in tick-lots, lots) to trade ``notional_atoms`` against a side, or None if thin."""
    need = notional_atoms
    cost = 0
    lots = 0
    sign = 1 if side.is_bid else -1
    for k in reversed(side.keys):
        lv = side.levels[sign * k]
        price = lv.price_ticks
        level_notional = price * lv.total_lots * tla
        if level_notional >= need:
            q = div_ceil(need, price * tla)  # lots to cover the rest, rounded up
            return cost + price * q, lots + q
        cost += price * lv.total_lots
        lots += lv.total_lots
        need -= level_notional
    return None


def premium_ppb(book: Book, oracle: int, market: Market) -> int:
    """max(impact bid - oracle, 0) - max(oracle - impact ask, 0), over the oracle, in ppb."""
    if oracle == 0 or market.impact_notional_atoms == 0:
        return 0
    tla = market.tick_lot_atoms
    up = down = 0
    bid = impact_terms(book.bids, market.impact_notional_atoms, tla)
    if bid is not None:
        cost, lots = bid
        if cost > oracle * lots:
            up = (cost - oracle * lots) * RATE_SCALE // (lots * oracle)
    ask = impact_terms(book.asks, market.impact_notional_atoms, tla)
    if ask is not None:
        cost, lots = ask
        if oracle * lots > cost:
            down = (oracle * lots - cost) * RATE_SCALE // (lots * oracle)
    return up - down


def interval_rate_ppb(f8_ppb: int, interval_ms: int, cap_ppm_per_hour: int) -> int:
    """The rate one interval pays: F/8 per hour scaled to the interval, capped."""
    rate = f8_ppb * interval_ms // EIGHT_HOURS_MS
    cap = cap_ppm_per_hour * 1000 * interval_ms // HOUR_MS
    return max(-cap, min(cap, rate))


def process_funding(st: ExchangeCore, ms: MarketState, book: Book, now: int) -> None:
    params = st.parameters
    interval = params.funding_interval_ms
    if ms.next_funding_ms == 0:
        g0 = st.genesis.genesis_time_ms
        ms.next_funding_ms = g0 + ((now - g0) // interval + 1) * interval
    ms.premium_sum_ppb += premium_ppb(book, ms.oracle_price_ticks, ms.market)
    ms.premium_samples += 1
    st.touch(ms)
    if now < ms.next_funding_ms:
        return
    avg = ms.premium_sum_ppb // ms.premium_samples
    f8 = funding_rate_8h_ppb(
        avg, params.funding_interest_ppm_8h * 1000, params.funding_clamp_ppm * 1000
    )
    rate = interval_rate_ppb(f8, interval, params.funding_cap_ppm_per_hour)
    ms.funding_index += rate * ms.oracle_price_ticks
    ms.funding_rate_ppb = rate
    ms.premium_sum_ppb = 0
    ms.premium_samples = 0
    while ms.next_funding_ms <= now:
        ms.next_funding_ms += interval
    st.events.append(("funding", ms.market.market_id, rate, f8, avg, ms.funding_index))
