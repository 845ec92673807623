"""Oracle prices: validators submit prices (``process_oracle_update``); a market's oracle is the
stake-weighted median of the fresh submissions (``update_oracle``, also run at the start of
each block so that stale submissions drop out).
"""

from __future__ import annotations

from state_machine.accounts.records import Account
from state_machine.clob.codes import INVALID_ORDER, TICK_SIZE
from state_machine.genesis import Market
from state_machine.prices.records import OracleSubmission
from state_machine.results import OK, UNKNOWN_MARKET, ActionResult
from state_machine.state import ExchangeCore
from state_machine.tx import OracleUpdate

NOT_VALIDATOR = "not_validator"


def weighted_median(prices_and_powers: list[tuple[int, int]]) -> int:
    """Lower stake-weighted median: the smallest price whose cumulative power reaches half."""
    items = sorted(prices_and_powers)
    total = sum(w for _, w in items)
    acc = 0
    for price, w in items:
        acc += w
        if 2 * acc >= total:
            return price
    return 0


def update_oracle(st: ExchangeCore, market: Market) -> None:
    """Oracle = stake-weighted median of fresh submissions; unchanged if none is fresh."""
    mid = market.market_id
    now = st.timestamp_ms
    max_age = market.oracle_max_age_ms
    power = st.validator_power
    # Submissions of validators no longer in the active set (staking) weigh nothing.
    fresh = [
        (s.price_ticks, power[v])
        for v, s in st.oracle_subs[mid].items()
        if now - s.timestamp_ms <= max_age and v in power
    ]
    if not fresh:
        return
    price = weighted_median(fresh)
    ms = st.mstates[mid]
    if price != ms.oracle_price_ticks:
        ms.oracle_price_ticks = price
        if not market.is_perp or ms.mark_price_ticks == 0:
            ms.mark_price_ticks = price  # perps: the risk engine recomputes it at block end
        ms.oracle_time_ms = now
        st.touch(ms)
        st.events.append(("oracle", mid, price))


def process_oracle_update(st: ExchangeCore, acct: Account, a: OracleUpdate) -> ActionResult:
    if acct.pubkey not in st.validator_power:
        return ActionResult(NOT_VALIDATOR, "oracle prices are accepted only from validators")
    seen: list[int] = []
    for p in a.prices:
        market = st.markets.get(p.market_id)
        if market is None:
            return ActionResult(UNKNOWN_MARKET, f"no market {p.market_id}")
        if p.price_ticks == 0 or p.price_ticks > market.max_price_ticks:
            return ActionResult(TICK_SIZE, f"price {p.price_ticks} out of range")
        if p.market_id in seen:
            return ActionResult(INVALID_ORDER, f"market {p.market_id} twice in one update")
        seen.append(p.market_id)
    now = st.timestamp_ms
    for p in a.prices:
        subs = st.oracle_subs[p.market_id]
        sub = subs.get(acct.pubkey)
        if sub is None:
            sub = OracleSubmission(p.market_id, acct.pubkey, p.price_ticks, now)
            subs[acct.pubkey] = sub
        else:
            sub.price_ticks = p.price_ticks
            sub.timestamp_ms = now
        st.touch(sub)
        update_oracle(st, st.markets[p.market_id])
    return ActionResult(OK, "ok", count=len(a.prices))
