"""The order checks: one small named predicate per rule, shared by place, amend and trigger.

Each ``*_error`` predicate returns None when the order passes and ``(code, message)`` when it
does not; the caller turns that into its result (and, for placements, an ``order_rejected``
event). Keeping each rule here, once, is what stops place, amend and trigger from drifting
apart: a change of the band rule or of a message is made in one place.

The amounts the checks and the engine share are named here too: an order's notional, its fee
(one formula for spot and perps, rounded up: a charge) and the spot hold it reserves.
"""

from __future__ import annotations

from state_machine.accounts.records import Account
from state_machine.book import BookSide
from state_machine.clob.codes import (
    LOT_SIZE,
    MARKET_CLOSE_ONLY,
    MARKET_DELISTED,
    MARKET_HALTED,
    MIN_NOTIONAL,
    NO_REFERENCE_PRICE,
    OPEN_INTEREST_CAP,
    POST_ONLY_WOULD_CROSS,
    PRICE_BAND,
    TICK_SIZE,
)
from state_machine.genesis import Market
from state_machine.governance.content import ACTIVE, CLOSE_ONLY, HALTED
from state_machine.governance.records import MarketControls
from state_machine.invariants import PPM, mul_ppm_ceil, mul_ppm_floor
from state_machine.perpetuals.margin import free_collateral
from state_machine.results import INSUFFICIENT_BALANCE, INSUFFICIENT_MARGIN
from state_machine.state import ExchangeCore
from state_machine.units import MarketText, atoms_text, decimal_text

Reject = tuple[str, str]


# ---- amounts ------------------------------------------------------------------------------------


def notional_atoms(market: Market, price_ticks: int, size_lots: int) -> int:
    """Quote atoms of ``size_lots`` at ``price_ticks`` (exact)."""
    return price_ticks * size_lots * market.tick_lot_atoms


# The trading fee on an amount (quote notional, or spot base received) at a rate in ppm: a
# charge, rounded up. The one fee formula is the rounding helper itself; the fills write it
# out (twice per fill), checked against it by tests/state_machine/test_check_fast_paths.py.
trade_fee_atoms = mul_ppm_ceil


def spot_hold_asset(market: Market, is_buy: bool) -> int:
    """The asset a spot order spends: quote for a buy, base for a sell."""
    return market.quote_asset_id if is_buy else market.base_asset_id


def spot_hold_atoms(market: Market, is_buy: bool, price_ticks: int, size_lots: int) -> int:
    """What a resting spot order reserves: a buy its notional, a sell its base."""
    if is_buy:
        return price_ticks * size_lots * market.tick_lot_atoms
    return size_lots * market.lot_base_atoms


def market_order_limit(market: Market, ref: int, is_buy: bool, worst_price_ticks: int) -> int:
    """A market order's limit price: the band edge around ``ref`` (rounded inward), or the
    caller's worst price when that is tighter."""
    band = market.price_band_ppm
    if is_buy:
        price = min(mul_ppm_floor(ref, PPM + band), market.max_price_ticks)
        return min(price, worst_price_ticks) if worst_price_ticks else price
    price = max(mul_ppm_ceil(ref, PPM - band), 1)
    return max(price, worst_price_ticks) if worst_price_ticks else price


# ---- predicates ---------------------------------------------------------------------------------


def lots_error(st: ExchangeCore, market: Market, size_lots: int) -> Reject | None:
    if size_lots == 0 or size_lots > market.max_order_lots:
        mt = MarketText(st.genesis, market)
        lo, hi = mt.size(1), mt.size(market.max_order_lots)
        return LOT_SIZE, f"{market.symbol}: size must be {lo} to {hi} in steps of {lo}"
    return None


def price_error(
    st: ExchangeCore, market: Market, price_ticks: int, what: str = "price"
) -> Reject | None:
    """Ticks in 1..max_price_ticks; ``what`` names the price (limit, trigger) in the message."""
    if price_ticks == 0 or price_ticks > market.max_price_ticks:
        mt = MarketText(st.genesis, market)
        lo, hi = mt.price(1), mt.price_with_unit(market.max_price_ticks)
        return TICK_SIZE, f"{market.symbol}: {what} must be {lo} to {hi}"
    return None


def band_error(st: ExchangeCore, market: Market, ref: int, price_ticks: int) -> Reject | None:
    """A limit price within ``price_band_ppm`` of the reference price (none: no band)."""
    band = market.price_band_ppm
    if ref and (price_ticks * PPM > ref * (PPM + band) or price_ticks * PPM < ref * (PPM - band)):
        mt = MarketText(st.genesis, market)
        low, high = mul_ppm_ceil(ref, PPM - band), mul_ppm_floor(ref, PPM + band)
        return PRICE_BAND, (
            f"{market.symbol}: price {mt.price(price_ticks)} is outside the band "
            f"{mt.price(low)} to {mt.price(high)} ({decimal_text(band, 10_000)} % around the "
            f"reference price {mt.price_with_unit(ref)})"
        )
    return None


def min_notional_error(
    st: ExchangeCore, market: Market, price_ticks: int, size_lots: int, reduce_only: bool
) -> Reject | None:
    """Orders below the market's minimum notional are refused, except reduce-only ones (a
    position must always be closable)."""
    notional_atoms = price_ticks * size_lots * market.tick_lot_atoms
    if not reduce_only and notional_atoms < market.min_notional_atoms:
        mt = MarketText(st.genesis, market)
        return MIN_NOTIONAL, (
            f"{market.symbol}: order value {mt.quote(notional_atoms)} is below the minimum "
            f"{mt.quote(market.min_notional_atoms)}"
        )
    return None


def limit_rules_pass(
    market: Market, ref: int, price_ticks: int, size_lots: int, reduce_only: bool
) -> bool:
    """True only if ``lots_error``, ``price_error``, ``band_error`` (around ``ref``) and
    ``min_notional_error`` all pass: the four rules of a limit order in one expression.

    The placement fast path asks this once instead of calling the four predicates (a new
    limit order runs them for most actions); when it is False the predicates run as usual, so
    they alone choose the code and message. tests/state_machine/test_check_fast_paths.py
    proves it equal to the predicates' conjunction. Sizes and prices here are unsigned (the
    transaction codec), where the two are equal.
    """
    band = market.price_band_ppm
    return (
        0 < size_lots <= market.max_order_lots
        and 0 < price_ticks <= market.max_price_ticks
        and (not ref or ref * (PPM - band) <= price_ticks * PPM <= ref * (PPM + band))
        and (
            reduce_only
            or price_ticks * size_lots * market.tick_lot_atoms >= market.min_notional_atoms
        )
    )


def post_only_error(
    st: ExchangeCore, market: Market, opp: BookSide, is_buy: bool, price_ticks: int
) -> Reject | None:
    """A post-only order must not cross the opposite best price."""
    best = opp.best_price()
    if best and (price_ticks >= best if is_buy else price_ticks <= best):
        mt = MarketText(st.genesis, market)
        side, other = ("buy", "ask") if is_buy else ("sell", "bid")
        return POST_ONLY_WOULD_CROSS, (
            f"{market.symbol}: post-only {side} at {mt.price(price_ticks)} would cross the best "
            f"{other} {mt.price(best)}"
        )
    return None


def margin_error(
    st: ExchangeCore,
    acct: Account,
    market: Market,
    is_buy: bool,
    price_ticks: int,
    size_lots: int,
    added_lots: int,
    fee_ppm: int,
) -> Reject | None:
    """Perps: free collateral, with ``added_lots`` more open on the order's side, must cover
    the order's adverse distance from the mark and its fee at ``fee_ppm``."""
    mid = market.market_id
    mark = st.mstates[mid].mark_price_ticks
    if mark == 0:
        return NO_REFERENCE_PRICE, "no oracle price"
    tla = market.tick_lot_atoms
    adverse = (price_ticks - mark if is_buy else mark - price_ticks) * size_lots * tla
    if adverse < 0:
        adverse = 0
    fee = trade_fee_atoms(price_ticks * size_lots * tla, fee_ppm)
    if is_buy:
        fc = free_collateral(st, acct, mid, added_lots, 0)
    else:
        fc = free_collateral(st, acct, mid, 0, added_lots)
    if fc - adverse - fee < 0:
        return margin_refusal(st, acct, market, fc - adverse - fee)
    return None


def margin_refusal(st: ExchangeCore, acct: Account, market: Market, short_atoms: int) -> Reject:
    """The refusal of an order whose margin, adverse distance and fee exceed free collateral
    by ``-short_atoms``: how much the order needs and how much is free, in USDC."""
    free_atoms = max(0, free_collateral(st, acct))
    required_atoms = free_atoms - short_atoms
    mt = MarketText(st.genesis, market)
    return INSUFFICIENT_MARGIN, (
        f"{market.symbol}: the order needs {mt.quote(required_atoms)} of free collateral "
        f"(initial margin, distance from the mark and fee); {mt.quote(free_atoms)} is free"
    )


def market_state_error(controls: MarketControls, reduce_only: bool) -> Reject | None:
    """The one market-state rule for every order (placements, amends, fired triggers, the
    engine's own orders): active accepts all; close-only only reduce-only orders; halted and
    delisted none (cancels are separate actions and always run). ``controls`` is the
    market's governance record (markets without one are active)."""
    state = controls.state
    if state == ACTIVE or (state == CLOSE_ONLY and reduce_only):
        return None
    if state == CLOSE_ONLY:
        return MARKET_CLOSE_ONLY, "the market is close-only: reduce-only orders and cancels"
    if state == HALTED:
        return MARKET_HALTED, f"the market is halted ({controls.reason}): cancels only"
    return MARKET_DELISTED, "the market is delisted"


def open_interest_error(
    controls: MarketControls, oi_lots: int, pos_lots: int, is_buy: bool, size_lots: int
) -> Reject | None:
    """With a cap, an order whose fill could raise open interest past it is refused: the
    lots beyond what closes the account's own position could each add one lot of open
    interest (when the counterparty opens too)."""
    cap = controls.oi_cap_lots
    if not cap:
        return None
    closing = min(size_lots, -pos_lots if is_buy else pos_lots) if pos_lots else 0
    added = size_lots - max(closing, 0)
    if added and oi_lots + added > cap:
        return OPEN_INTEREST_CAP, f"open interest {oi_lots} + {added} lots would pass the cap {cap}"
    return None


def balance_error(
    st: ExchangeCore, asset_id: int, available_atoms: int, need_atoms: int
) -> Reject | None:
    """Spot: the balance the order may spend covers its hold."""
    if available_atoms < need_atoms:
        need = atoms_text(st.genesis, asset_id, need_atoms)
        available = atoms_text(st.genesis, asset_id, available_atoms)
        return INSUFFICIENT_BALANCE, f"the order needs {need}; {available} available"
    return None


def no_open_order(st: ExchangeCore, order_id: int, market_id: int) -> str:
    """The message of ``unknown_order``, naming the market by its symbol when it exists."""
    market = st.markets.get(market_id)
    where = f"market {market_id}" if market is None else market.symbol
    return f"no open order {order_id} in {where}"
