"""Applying governance changes to the exchange: governed market and exchange parameters,
listings, delistings and market states.

Every change is checked twice with the same function, :func:`change_problem`: when it is
proposed (a bad proposal is refused with ``invalid_proposal`` and changes nothing) and again at
its execution height, since the state may have moved on (then the proposal ends ``failed``
with the reason, and nothing changes).

Replacing a market's parameters swaps the ``Market`` object everywhere the engine holds it
(the market table, its book, its market state, every position in it) and drops the derived
risk index, which is rebuilt from the new tiers at the next block end. Lot and tick values
(``lot_base_atoms``, ``tick_lot_atoms``) give every stored size and price its meaning, so they
change only while the market has no order, trigger or position.
"""

from __future__ import annotations

from state_machine.accounts.fees import set_fee_tiers
from state_machine.accounts.policy import fee_tiers_error
from state_machine.algo.twap import finish_twap
from state_machine.book import Book, Order
from state_machine.clob.codes import R_USER
from state_machine.clob.matching import cancel_resting
from state_machine.genesis import (
    Asset,
    Market,
    Parameters,
    asset_problem,
    market_problem,
    parameters_problem,
)
from state_machine.governance.chainparams import apply_chain_change, chain_change_problem
from state_machine.governance.content import (
    ACTIVE,
    DELISTED,
    HALTED,
    STATE_NAMES,
    ChangeMarket,
    ChangeParameters,
    Content,
    DelistPerp,
    ListAsset,
    ListMarket,
    SetBlockLimits,
    SetEpochLength,
    SetFeeTiers,
    SetMarketControls,
    SetMarketState,
    SetStakingParams,
)
from state_machine.governance.epochlength import epoch_length_problem, set_epoch_length
from state_machine.governance.records import (
    GovernedMarket,
    GovernedParameters,
    ListedAsset,
    MarketControls,
)
from state_machine.governance.settlement import settle_market
from state_machine.invariants import check
from state_machine.liquidation.index import RiskIndex
from state_machine.prices.records import MarketState
from state_machine.state import P_ASSET, P_FEES, ExchangeCore, Pool
from state_machine.triggers.records import Trigger, cancel_trigger, trigger_book

# ---- lookups ------------------------------------------------------------------------------------


def all_assets(st: ExchangeCore) -> dict[int, Asset]:
    """Genesis assets and the listed ones."""
    assets = {a.asset_id: a for a in st.genesis.assets}
    assets.update((aid, rec.asset) for aid, rec in st.gov.assets.items())
    return assets


def market_state(st: ExchangeCore, market_id: int) -> int:
    controls = st.gov.controls.get(market_id)
    return ACTIVE if controls is None else controls.state


def controls_of(st: ExchangeCore, market_id: int) -> MarketControls:
    controls = st.gov.controls.get(market_id)
    if controls is None:
        controls = MarketControls(market_id)
        st.gov.controls[market_id] = controls
    return controls


def market_in_use(st: ExchangeCore, market_id: int) -> bool:
    """True while the market has a resting order, a waiting trigger or an open position."""
    book = st.books[market_id]
    if book.bids.best_price() or book.asks.best_price():
        return True
    tb = trigger_book(st)
    if tb.up.get(market_id) or tb.down.get(market_id):
        return True
    return any(
        market_id in a.positions and a.positions[market_id].size_lots for a in st.accounts.values()
    )


# ---- validation ---------------------------------------------------------------------------------


def change_problem(st: ExchangeCore, c: Content) -> str | None:
    """Why ``c`` cannot be applied to ``st`` now, or None."""
    if isinstance(c, SetStakingParams | SetBlockLimits):
        return chain_change_problem(st, c)
    if isinstance(c, SetEpochLength):
        return epoch_length_problem(st, c)
    if isinstance(c, ListAsset):
        return list_asset_problem(st, c.asset)
    if isinstance(c, ListMarket):
        return list_market_problem(st, c.market)
    if isinstance(c, ChangeParameters):
        return change_parameters_problem(st, c.parameters)
    if isinstance(c, SetFeeTiers):
        err = fee_tiers_error(c.tiers, [m.taker_fee_ppm for m in st.markets.values()])
        return None if err is None else "fee_tiers" + err
    mid = c.market_id if not isinstance(c, ChangeMarket) else c.market.market_id
    market = st.markets.get(mid)
    if market is None:
        return f"no market {mid}"
    if market_state(st, mid) == DELISTED:
        return f"market {mid} is delisted"
    if isinstance(c, ChangeMarket):
        return change_market_problem(st, market, c.market)
    if isinstance(c, DelistPerp):
        if not market.is_perp:
            return f"market {mid} is not a perpetual"
        if c.final_price_ticks > market.max_price_ticks:
            return f"final price above max_price_ticks {market.max_price_ticks}"
    if isinstance(c, SetMarketControls) and c.oi_cap_lots and not market.is_perp:
        return "an open-interest cap needs a perpetual market"
    return None


def list_asset_problem(st: ExchangeCore, asset: Asset) -> str | None:
    assets = all_assets(st)
    # Consecutive ids let an account proof show which assets exist (state_machine/proofkeys.py).
    next_id = max(assets) + 1 if assets else 0
    if asset.asset_id != next_id:
        return f"asset.asset_id: a new asset takes the next id, {next_id}"
    return asset_problem(asset, assets)


def list_market_problem(st: ExchangeCore, market: Market) -> str | None:
    # Consecutive ids let an account proof show which markets exist (state_machine/proofkeys.py).
    next_id = max(st.markets) + 1 if st.markets else 0
    if market.market_id != next_id:
        return f"market.market_id: a new market takes the next id, {next_id}"
    symbols = {m.symbol for m in st.markets.values()}
    return market_problem(market, all_assets(st), set(st.markets), symbols)


def change_market_problem(st: ExchangeCore, old: Market, new: Market) -> str | None:
    for name in ("symbol", "kind", "base_asset_id", "quote_asset_id"):
        if getattr(old, name) != getattr(new, name):
            return f"market.{name} cannot change"
    units_change = (old.lot_base_atoms, old.tick_lot_atoms, old.max_price_ticks) != (
        new.lot_base_atoms,
        new.tick_lot_atoms,
        new.max_price_ticks,
    )
    if units_change and market_in_use(st, old.market_id):
        return "lot, tick value and max price change only in a market without orders or positions"
    others = {mid for mid in st.markets if mid != old.market_id}
    symbols = {m.symbol for mid, m in st.markets.items() if mid != old.market_id}
    return market_problem(new, all_assets(st), others, symbols)


def change_parameters_problem(st: ExchangeCore, params: Parameters) -> str | None:
    if params.insurance_fund_atoms != st.genesis.parameters.insurance_fund_atoms:
        return "parameters.insurance_fund_atoms is the genesis mint and cannot change"
    return parameters_problem(params)


# ---- application --------------------------------------------------------------------------------


def apply_change(st: ExchangeCore, c: Content) -> None:
    """Apply a change :func:`change_problem` accepted."""
    if isinstance(c, SetStakingParams | SetBlockLimits):
        apply_chain_change(st, c)
        return
    if isinstance(c, ChangeMarket):
        replace_market(st, c.market)
    elif isinstance(c, SetMarketControls):
        set_market_controls(st, c)
    elif isinstance(c, SetMarketState):
        set_market_state(st, c.market_id, c.state, "governance", c.reason)
    elif isinstance(c, ListAsset):
        list_asset(st, c.asset)
    elif isinstance(c, ListMarket):
        install_market(st, c.market)
    elif isinstance(c, DelistPerp):
        delist_perp(st, c.market_id, c.final_price_ticks)
    elif isinstance(c, SetEpochLength):
        set_epoch_length(st, c)
    elif isinstance(c, SetFeeTiers):
        refused = set_fee_tiers(st, c.tiers)
        check(refused is None, f"fee tiers refused after change_problem accepted them: {refused}")
    else:
        set_parameters(st, c.parameters)


def replace_market(st: ExchangeCore, market: Market) -> None:
    """Swap the market's parameters everywhere; positions above the new maximum leverage are
    brought down to it (their initial margin follows)."""
    mid = market.market_id
    st.markets[mid] = market
    st.books[mid].market = market
    ms = st.mstates[mid]
    ms.market = market
    st.touch(ms)
    for acct in st.accounts.values():
        pos = acct.positions.get(mid)
        if pos is None:
            continue
        pos.market = market
        if market.is_perp and pos.leverage > market.max_leverage:
            pos.leverage = market.max_leverage
        st.touch(pos)
    st.risk = RiskIndex()  # bands depend on the tiers: rebuilt at the next block end
    _store_market(st, market)
    st.events.append(("market_changed", mid))


def _store_market(st: ExchangeCore, market: Market) -> None:
    record = st.gov.markets.get(market.market_id)
    if record is None:
        record = GovernedMarket(market)
        st.gov.markets[market.market_id] = record
    record.market = market
    st.touch(record)


def install_market(st: ExchangeCore, market: Market, emit: bool = True) -> None:
    """Add a market's table entries (a listing, or a listed market on rebuild)."""
    mid = market.market_id
    check(mid not in st.markets, f"market {mid} exists")
    st.markets[mid] = market
    ms = MarketState(market)
    st.mstates[mid] = ms
    st.books[mid] = Book(market, ms)
    st.oracle_subs[mid] = {}
    if emit:
        st.touch(ms)
        _store_market(st, market)
        st.events.append(
            ("market_listed", mid, market.symbol, "perp" if market.is_perp else "spot")
        )


def install_asset(st: ExchangeCore, asset: Asset) -> None:
    aid = asset.asset_id
    st.fee_pools[aid] = Pool(P_FEES, aid)
    st.asset_totals[aid] = Pool(P_ASSET, aid)


def list_asset(st: ExchangeCore, asset: Asset) -> None:
    install_asset(st, asset)
    record = ListedAsset(asset)
    st.gov.assets[asset.asset_id] = record
    st.touch(record)
    st.events.append(("asset_listed", asset.asset_id, asset.symbol))


def set_parameters(st: ExchangeCore, params: Parameters) -> None:
    st.parameters = params
    st.max_open_orders = params.max_open_orders_per_account
    record = st.gov.parameters
    if record is None:
        record = GovernedParameters(params)
        st.gov.parameters = record
    record.parameters = params
    st.touch(record)
    st.events.append(("parameters_changed",))


def set_market_controls(st: ExchangeCore, c: SetMarketControls) -> None:
    controls = controls_of(st, c.market_id)
    controls.oi_cap_lots = c.oi_cap_lots
    if controls.breakers != c.breakers:
        controls.breakers = c.breakers
        controls.ref_mark = controls.ref_time_ms = controls.cross_since_ms = 0
    st.touch(controls)
    st.events.append(("market_controls", c.market_id, c.oi_cap_lots))


def set_market_state(st: ExchangeCore, mid: int, state: int, cause: str, reason: str) -> None:
    """Set a market's trading state; leaving ``halted`` restarts its funding interval (no
    funding accrues for the halted time)."""
    controls = controls_of(st, mid)
    old = controls.state
    controls.state = state
    controls.cause = cause if state != ACTIVE else ""
    controls.reason = reason
    controls.since_ms = st.timestamp_ms
    st.touch(controls)
    if old == HALTED and state != HALTED:
        ms = st.mstates[mid]
        ms.next_funding_ms = 0
        ms.premium_sum_ppb = 0
        ms.premium_samples = 0
        st.touch(ms)
    st.events.append(("market_state", mid, STATE_NAMES[state], cause, reason))


def delist_perp(st: ExchangeCore, mid: int, final_price_ticks: int) -> None:
    """Cancel the market's orders, triggers and TWAPs, settle every position against the opposite
    ones at the final price (no fee; the longs' and shorts' lots match exactly because
    positions net to zero), cover the units it left below zero (governance/settlement.py),
    then close the market for good."""
    market = st.markets[mid]
    ms = st.mstates[mid]
    price = final_price_ticks or ms.mark_price_ticks
    for order in sorted((o for o in st.orders.values() if o.market_id == mid), key=_oid):
        cancel_resting(st, order, R_USER)
    for trig in sorted(
        (t for t in trigger_book(st).by_id.values() if t.market_id == mid), key=_oid
    ):
        cancel_trigger(st, trig, R_USER)
    for tid in sorted(i for i, tw in st.algo.twaps.items() if tw.market_id == mid):
        tw = st.algo.twaps[tid]  # a TWAP would only send refused slices from now on
        st.algo.unschedule_twap(tw)
        finish_twap(st, tw, R_USER)
    holders = sorted(
        (a for a in st.accounts.values() if mid in a.positions and a.positions[mid].size_lots),
        key=lambda a: a.pubkey,
    )
    settle_market(st, market, price, holders)
    ms.open_interest_lots = 0
    st.touch(ms)
    set_market_state(st, mid, DELISTED, "governance", "delisted")
    st.events.append(("market_delisted", mid, price, len(holders)))


def _oid(x: Order | Trigger) -> int:
    return x.order_id
