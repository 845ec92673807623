"""Circuit breakers: per market, at each block end, after the marks.

Each configured breaker looks at one condition (content.BreakerConfig):

* ``oracle_stale``: no submission of a current validator for longer than ``oracle_stale_ms``
  (the median keeps its last price when none is fresh, so only the submissions' times tell);
* ``mark_move``: the mark moved more than ``move_ppm`` from the first mark of the current
  window of ``move_window_ms`` (windows restart when they run out);
* ``band_cross``: the best bid above, or the best ask below, the price band around the oracle
  for ``band_cross_ms`` in a row (the book and the oracle disagree: one of them is wrong).

A tripped breaker sets the market to its ``action`` (close-only or halted) unless governance
set the market's state, which only governance lifts. A breaker-set state returns to active by
rule: after ``cooldown_ms``, with a fresh oracle and no breaker condition left.
"""

from __future__ import annotations

from state_machine.governance.content import ACTIVE, BREAKERS_OFF, DELISTED, BreakerConfig
from state_machine.governance.markets import set_market_state
from state_machine.governance.records import (
    CAUSE_BAND_CROSS,
    CAUSE_GOVERNANCE,
    CAUSE_MARK_MOVE,
    CAUSE_ORACLE_STALE,
    MarketControls,
)
from state_machine.invariants import PPM
from state_machine.state import ExchangeCore


def latest_submission_ms(st: ExchangeCore, mid: int) -> int:
    """Time of the newest price submission by a validator of the current set (0: none)."""
    power = st.validator_power
    return max((s.timestamp_ms for v, s in st.oracle_subs[mid].items() if v in power), default=0)


def oracle_stale(st: ExchangeCore, mid: int, max_age_ms: int, now: int) -> bool:
    return now - latest_submission_ms(st, mid) > max_age_ms


def mark_moved(st: ExchangeCore, c: MarketControls, cfg: BreakerConfig, now: int) -> bool:
    """Advance the move window (restarting it when it ran out) and say if the mark left it."""
    mark = st.mstates[c.market_id].mark_price_ticks
    if c.ref_mark == 0 or now - c.ref_time_ms > cfg.move_window_ms:
        c.ref_mark, c.ref_time_ms = mark, now
        st.touch(c)
        return False
    return abs(mark - c.ref_mark) * PPM > cfg.move_ppm * c.ref_mark


def band_crossed(st: ExchangeCore, c: MarketControls, cfg: BreakerConfig, now: int) -> bool:
    """Track since when the book's best prices are outside the band around the oracle; True
    once that has lasted ``band_cross_ms``."""
    mid = c.market_id
    book = st.books[mid]
    oracle = st.mstates[mid].oracle_price_ticks
    band = book.market.price_band_ppm
    bid = book.bids.best_price()
    ask = book.asks.best_price()
    crossed = bool(oracle) and (
        bool(bid and bid * PPM > oracle * (PPM + band))
        or bool(ask and ask * PPM < oracle * (PPM - band))
    )
    if not crossed:
        if c.cross_since_ms:
            c.cross_since_ms = 0
            st.touch(c)
        return False
    if not c.cross_since_ms:
        c.cross_since_ms = now
        st.touch(c)
    return now - c.cross_since_ms >= cfg.band_cross_ms


def tripped_cause(st: ExchangeCore, c: MarketControls, now: int) -> str:
    """The first breaker whose condition holds now ("" for none). Every configured breaker
    is evaluated (each keeps its own memory up to date)."""
    cfg = c.breakers
    causes = []
    if cfg.oracle_stale_ms and oracle_stale(st, c.market_id, cfg.oracle_stale_ms, now):
        causes.append(CAUSE_ORACLE_STALE)
    if cfg.move_ppm and cfg.move_window_ms and mark_moved(st, c, cfg, now):
        causes.append(CAUSE_MARK_MOVE)
    if cfg.band_cross_ms and band_crossed(st, c, cfg, now):
        causes.append(CAUSE_BAND_CROSS)
    return causes[0] if causes else ""


def run_breakers(st: ExchangeCore, now: int) -> None:
    """Every market with breakers, by id: trip or resume by rule."""
    for mid in sorted(st.gov.controls):
        c = st.gov.controls[mid]
        if c.breakers == BREAKERS_OFF or c.state == DELISTED:
            continue
        cause = tripped_cause(st, c, now)
        if c.cause == CAUSE_GOVERNANCE:
            continue  # a state set by governance is lifted by governance only
        if cause and c.state == ACTIVE:
            set_market_state(st, mid, c.breakers.action, cause, f"breaker {cause}")
        elif c.state != ACTIVE and _may_resume(st, c, cause, now):
            set_market_state(st, mid, ACTIVE, c.cause, "breaker cool-down over, oracle fresh")


def _may_resume(st: ExchangeCore, c: MarketControls, cause: str, now: int) -> bool:
    cfg = c.breakers
    max_age = cfg.oracle_stale_ms or st.markets[c.market_id].oracle_max_age_ms
    return (
        not cause
        and now - c.since_ms >= cfg.cooldown_ms
        and not oracle_stale(st, c.market_id, max_age, now)
    )
