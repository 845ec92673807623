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


def lots_error(market: Market, size_lots: int) -> Reject | None:
    if size_lots == 0 or size_lots > market.max_order_lots:
        return LOT_SIZE, f"size must be 1..{market.max_order_lots} lots"
    return None


def price_error(market: Market, price_ticks: int, what: str = "price") -> Reject | None:
    """Ticks in 1..max_price_ticks; ``what`` names the price (limit, trigger) in the message."""
    if price_ticks == 0 or price_ticks > market.max_price_ticks:
        return TICK_SIZE, f"{what} must be 1..{market.max_price_ticks} ticks"
    return None


def band_error(market: Market, ref: int, price_ticks: int) -> Reject | None:
    """A limit price within ``price_band_ppm`` of the reference price (none: no band)."""
    band = market.price_band_ppm
    if ref and (price_ticks * PPM > ref * (PPM + band) or price_ticks * PPM < ref * (PPM - band)):
        return PRICE_BAND, f"price {price_ticks} is more than {band} ppm from reference {ref}"
    return None


def min_notional_error(
    market: Market, price_ticks: int, size_lots: int, reduce_only: bool
) -> Reject | None:
    """Orders below the market's minimum notional are refused, except reduce-only ones (a
    position must always be closable)."""
    if not reduce_only and (
        price_ticks * size_lots * market.tick_lot_atoms < market.min_notional_atoms
    ):
        return MIN_NOTIONAL, f"notional below {market.min_notional_atoms} atoms"
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


def post_only_error(opp: BookSide, is_buy: bool, price_ticks: int) -> Reject | None:
    """A post-only order must not cross the opposite best price."""
    best = opp.best_price()
    if best and (price_ticks >= best if is_buy else price_ticks <= best):
        return POST_ONLY_WOULD_CROSS, f"post-only order at {price_ticks} would cross {best}"
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
        return INSUFFICIENT_MARGIN, f"free collateral {fc} atoms does not cover the order"
    return None


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


def balance_error(available_atoms: int, need_atoms: int) -> Reject | None:
    """Spot: the balance the order may spend covers its hold."""
    if available_atoms < need_atoms:
        return INSUFFICIENT_BALANCE, f"needs {need_atoms} atoms, {available_atoms} available"
    return None
