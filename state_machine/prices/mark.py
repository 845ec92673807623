"""Mark price (perps), recomputed at the end of each block: median(oracle, oracle + EMA of
(book mid - oracle), median(best bid, best ask, last trade)); with an empty or one-sided
book, the oracle. The EMA is in block time: each block moves it by
``(basis - ema) * dt / (dt + mark_ema_ms)``.
"""

from __future__ import annotations

from state_machine.book import Book
from state_machine.prices.records import MarketState
from state_machine.state import ExchangeCore


def median3(a: int, b: int, c: int) -> int:
    if a > b:
        a, b = b, a
    if b > c:
        b = c
    return a if a > b else b


def update_mark(st: ExchangeCore, ms: MarketState, book: Book, now: int, ema_ms: int) -> int:
    """Advance the basis EMA to ``now`` and recompute the mark price."""
    oracle = ms.oracle_price_ticks
    bb = book.bids.best_price()
    ba = book.asks.best_price()
    if oracle == 0:
        return ms.mark_price_ticks
    if not bb or not ba:
        mark = oracle
    else:
        mid = (bb + ba) // 2
        dt = now - ms.mark_time_ms if ms.mark_time_ms else 0
        if dt > 0:
            ms.basis_ema_ticks += ((mid - oracle - ms.basis_ema_ticks) * dt) // (dt + ema_ms)
        last = ms.last_trade_price_ticks or mid
        mark = median3(oracle, oracle + ms.basis_ema_ticks, median3(bb, ba, last))
        if mark < 1:
            mark = 1
    ms.mark_time_ms = now
    ms.mark_price_ticks = mark
    st.touch(ms)
    return mark
