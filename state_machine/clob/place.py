"""Placing orders: ``process_place_order`` checks a new order (clob/checks.py predicates, in a
fixed order: the first failure is the result and nothing changes), then accepts it: id, spot
hold, an ``order_accepted`` event, and either rests it at once (nothing to match) or hands it
to the matching engine (clob/matching.py). Trigger kinds are checked here and wait off the
book (triggers/records.py). ``place_internal_order`` is the engine's own reduce-only IOC
order (liquidations, the vault).
"""

from __future__ import annotations

from bisect import insort
from typing import Any

from state_machine.accounts.records import Account, Balance
from state_machine.book import Book, Level, Order
from state_machine.clob.checks import (
    Reject,
    balance_error,
    band_error,
    limit_rules_pass,
    lots_error,
    margin_error,
    market_order_limit,
    market_state_error,
    min_notional_error,
    open_interest_error,
    post_only_error,
    price_error,
    spot_hold_asset,
    spot_hold_atoms,
)
from state_machine.clob.codes import (
    DUPLICATE_CLIENT_ID,
    FOK_NOT_FILLED,
    INVALID_ORDER,
    NO_REFERENCE_PRICE,
    REDUCE_ONLY_WOULD_INCREASE,
    ST_RESTING,
    ST_WAITING,
    TOO_MANY_ORDERS,
)
from state_machine.clob.matching import execute_order, fok_fillable
from state_machine.governance.records import MarketControls
from state_machine.perpetuals.records import Position
from state_machine.results import NOT_PERP, OK, UNKNOWN_MARKET, ActionResult
from state_machine.state import ExchangeCore
from state_machine.triggers.records import open_order_count, place_trigger
from state_machine.tx import (
    KIND_LIMIT,
    KIND_MARKET,
    KIND_STOP_LIMIT,
    KIND_TAKE_PROFIT_LIMIT,
    TIF_ALO,
    TIF_FOK,
    TIF_GTC,
    TIF_IOC,
    TRIGGER_KINDS,
    PlaceOrder,
)


def place_internal_order(
    st: ExchangeCore,
    acct: Account,
    market_id: int,
    is_buy: bool,
    size_lots: int,
    why: str,
    worst_price_ticks: int = 0,
) -> int:
    """A reduce-only IOC market order the engine sends for an account, filling no worse than
    ``worst_price_ticks`` if given (and the band edge); returns lots filled."""
    order = PlaceOrder(
        market_id, is_buy, KIND_MARKET, TIF_IOC, worst_price_ticks, size_lots, 0, True, 0, 0
    )
    res = process_place_order(st, acct, order)
    st.events.append(("internal_order", why, acct.pubkey, market_id, res.code, res.filled_lots))
    return res.filled_lots


def client_id_open(acct: Account, cid: int) -> bool:
    """True if a resting order or a waiting trigger of the account holds client id ``cid``."""
    if not cid:
        return False
    if cid in acct.client_ids:
        return True
    return bool(acct.triggers) and any(t.client_id == cid for t in acct.triggers.values())


def _reject(
    st: ExchangeCore, acct: Account, mid: int, cid: int, code: str, msg: str
) -> ActionResult:
    st.events.append(("order_rejected", mid, acct.pubkey, cid, code, msg))
    return ActionResult(code, msg)


def process_place_order(st: ExchangeCore, acct: Account, a: PlaceOrder) -> ActionResult:
    """Check a new order (nothing changes if it is refused), then accept it: reserve its spot
    hold, match it and rest or cancel the remainder. Trigger kinds wait off the book."""
    mid = a.market_id
    book = st.books.get(mid)
    if book is None:
        return _reject(st, acct, mid, a.client_id, UNKNOWN_MARKET, f"no market {mid}")
    ms = book.mstate
    controls = st.gov.controls.get(mid)
    if controls is not None:  # a market governance or a breaker has touched
        err = governed_order_error(controls, acct, book, a.is_buy, a.size_lots, a.reduce_only)
        if err is not None:
            return _reject(st, acct, mid, a.client_id, err[0], err[1])
    price = a.price_ticks
    tif = a.tif
    if a.kind == KIND_LIMIT and limit_rules_pass(
        book.market, ms.oracle_price_ticks or ms.last_trade_price_ticks, price, a.size_lots,
        a.reduce_only,
    ):  # fmt: skip
        # Most actions: a limit order that passes the four order rules (one expression, proved
        # equal to the predicates); only the account's checks remain.
        err, size, pos, bal, hold = check_order_account(st, acct, book, a, price, price, tif, True)
    else:
        err = lots_error(st, book.market, a.size_lots)
        if err is None and a.kind in TRIGGER_KINDS:
            return process_place_trigger(st, acct, a)
        if err is None:
            err, price, size, tif, pos, bal, hold = check_place_order(st, acct, book, a)
    if err is not None:
        return _reject(st, acct, mid, a.client_id, err[0], err[1])
    return accept_order(st, acct, book, a, price, size, tif, pos, bal, hold)


def governed_order_error(
    controls: MarketControls, acct: Account, book: Book, is_buy: bool, size: int, reduce_only: bool
) -> Reject | None:
    """The market's state, then (perps) its open-interest cap."""
    err = market_state_error(controls, reduce_only)
    if err is None and book.perp and not reduce_only:
        pos = acct.positions.get(book.market_id)
        pos_lots = 0 if pos is None else pos.size_lots
        err = open_interest_error(controls, book.mstate.open_interest_lots, pos_lots, is_buy, size)
    return err


def order_limit_price(
    st: ExchangeCore, book: Book, a: PlaceOrder
) -> tuple[Reject | None, int, int, int]:
    """(error, limit price, price the notional is taken at, effective time in force)."""
    market = book.market
    ms = book.mstate
    ref = ms.oracle_price_ticks or ms.last_trade_price_ticks
    tif = a.tif
    if a.kind == KIND_MARKET:
        if tif == TIF_ALO:
            return (INVALID_ORDER, "a market order cannot be post-only"), 0, 0, tif
        if tif != TIF_FOK:
            tif = TIF_IOC
        if ref == 0:
            return (NO_REFERENCE_PRICE, "no oracle or last trade"), 0, 0, tif
        return None, market_order_limit(market, ref, a.is_buy, a.price_ticks), ref, tif
    price = a.price_ticks
    err = price_error(st, market, price)
    if err is None:
        err = band_error(st, market, ref, price)
    return err, price, price, tif


def check_place_order(
    st: ExchangeCore, acct: Account, book: Book, a: PlaceOrder
) -> tuple[Reject | None, int, int, int, Position | None, Balance | None, int]:
    """Every check of a new (non-trigger) order after its size, in a fixed order (the first
    failure is the result): (error, limit price, size, time in force, perp position, spot
    balance, hold)."""
    err, price, notional_price, tif = order_limit_price(st, book, a)
    if err is not None:
        return err, price, a.size_lots, tif, None, None, 0
    err, size, pos, bal, hold = check_order_account(
        st, acct, book, a, price, notional_price, tif, False
    )
    return err, price, size, tif, pos, bal, hold


def check_order_account(
    st: ExchangeCore,
    acct: Account,
    book: Book,
    a: PlaceOrder,
    price: int,
    notional_price: int,
    tif: int,
    notional_passed: bool,
) -> tuple[Reject | None, int, Position | None, Balance | None, int]:
    """The checks after the order's price, in order: client id, open order limit, reduce-only,
    minimum notional (unless ``notional_passed``: the caller has proved it), post-only or
    fill-or-kill, then margin or balance. (error, size, perp position, spot balance, hold)."""
    size = a.size_lots
    cid = a.client_id
    if cid and client_id_open(acct, cid):
        return (DUPLICATE_CLIENT_ID, f"client id {cid} is open"), size, None, None, 0
    if tif in (TIF_GTC, TIF_ALO) and open_order_count(acct) >= st.max_open_orders:
        return (TOO_MANY_ORDERS, "open order limit reached"), size, None, None, 0
    err: Reject | None = None
    if book.perp or a.reduce_only:
        err, size, pos = reduce_only_size(st, acct, book, a)
    else:
        pos = None  # spot, not reduce-only: nothing to look at
    market = book.market
    if err is None and not notional_passed:
        err = min_notional_error(st, market, notional_price, size, a.reduce_only)
    if err is None:
        opp = book.asks if a.is_buy else book.bids
        if tif == TIF_ALO:
            err = post_only_error(st, market, opp, a.is_buy, price)
        elif tif == TIF_FOK and not fok_fillable(
            st, market, opp, acct, a.is_buy, price, size, a.stp
        ):
            err = (FOK_NOT_FILLED, "fill-or-kill cannot fill entirely")
    if err is not None or book.perp:
        if err is None and not a.reduce_only:
            fee_ppm = market.maker_fee_ppm if tif == TIF_ALO else market.taker_fee_ppm
            err = margin_error(st, acct, market, a.is_buy, price, size, size, fee_ppm)
        return err, size, pos, None, 0
    hold = spot_hold_atoms(market, a.is_buy, price, size)
    bal = acct.balances.get(spot_hold_asset(market, a.is_buy))
    if bal is None:
        bal = st.balance(acct, spot_hold_asset(market, a.is_buy))
    if bal.available_atoms < hold:  # balance_error's own test, so the common pass costs no call
        err = balance_error(st, bal.asset_id, bal.available_atoms, hold)
    return err, size, pos, bal, hold


def reduce_only_size(
    st: ExchangeCore, acct: Account, book: Book, a: PlaceOrder
) -> tuple[Reject | None, int, Position | None]:
    """Perps: the account's position record (created if none) and the order's size, a
    reduce-only order cut to the position it reduces. Spot: reduce-only is refused."""
    size = a.size_lots
    if not book.perp:
        if a.reduce_only:
            return (INVALID_ORDER, "reduce-only applies to perpetuals"), size, None
        return None, size, None
    mid = a.market_id
    pos = acct.positions.get(mid)
    if pos is None:
        pos = st.position(acct, book.market)
    if a.reduce_only:
        s = pos.size_lots
        if s == 0 or (s > 0) == a.is_buy:
            why = "reduce-only order would open or increase a position"
            return (REDUCE_ONLY_WOULD_INCREASE, why), size, pos
        if size > abs(s):
            size = abs(s)  # a reduce-only order is never larger than the position
    return None, size, pos


def accept_order(
    st: ExchangeCore,
    acct: Account,
    book: Book,
    a: PlaceOrder,
    price: int,
    size: int,
    tif: int,
    pos: Position | None,
    bal: Balance | None,
    hold: int,
) -> ActionResult:
    """A checked order gets its id and hold, then rests at once or goes to matching."""
    mid = a.market_id
    is_buy = a.is_buy
    cid = a.client_id
    reduce_only = a.reduce_only
    seq = st.next_seq
    st.next_seq = seq + 1
    # The id and price as objects, made once: in the compiled build each use of an int in a
    # dict key or an event tuple would otherwise make a new int object (both are above 256).
    seq_obj: Any = seq
    price_obj: Any = price
    order = Order(
        seq, seq, mid, acct, is_buy, price, size, cid, tif, reduce_only, a.stp,
        st.timestamp_ms, a.kind,
    )  # fmt: skip
    if bal is not None:
        bal.available_atoms -= hold
        bal.held_atoms += hold
        order.hold_atoms = hold
        if not bal.dirty:
            bal.dirty = True
            st.dirty.append(bal)
    events = st.events
    events.append(
        ("order_accepted", mid, seq_obj, acct.pubkey, is_buy, price_obj, size, tif, cid,
         reduce_only)
    )  # fmt: skip
    keys = (book.asks if is_buy else book.bids).keys
    if tif in (TIF_GTC, TIF_ALO) and (
        not keys or ((-keys[-1] > price) if is_buy else (keys[-1] < price))
    ):
        # Fast path, the common case for makers: nothing to match, rest at once. Same effect
        # as execute_order -> rest_order, inlined because it runs for most actions.
        side = book.bids if is_buy else book.asks
        level = side.levels.get(price_obj)
        if level is None:
            level = Level(price)
            side.levels[price_obj] = level
            insort(side.keys, price if is_buy else -price)
        level.orders.append(order)
        level.total_lots += size
        level.live_count += 1
        order.level = level
        order.live = True
        st.orders[seq_obj] = order
        acct.orders[seq_obj] = order
        if cid:
            acct.client_ids[cid] = order
        if pos is not None and not reduce_only:
            if is_buy:
                pos.buy_lots += size
            else:
                pos.sell_lots += size
        order.dirty = True
        st.dirty.append(order)
        events.append(("order_rested", mid, seq_obj, acct.pubkey, price_obj, size))
        return ActionResult(OK, ST_RESTING, seq, 0, ST_RESTING)
    return execute_order(st, book.market, book, order)


def process_place_trigger(st: ExchangeCore, acct: Account, a: PlaceOrder) -> ActionResult:
    """Validate and store a stop / take-profit order (triggers/records.py); it holds no margin."""
    mid = a.market_id
    cid = a.client_id
    market = st.markets[mid]
    err: Reject | None = None
    if not market.is_perp:
        err = (NOT_PERP, "trigger orders are for perpetuals")
    if err is None:
        err = price_error(st, market, a.trigger_price_ticks, "trigger price")
    if err is None and a.kind in (KIND_STOP_LIMIT, KIND_TAKE_PROFIT_LIMIT):
        err = price_error(st, market, a.price_ticks, "limit price")
    if err is None and client_id_open(acct, cid):
        err = (DUPLICATE_CLIENT_ID, f"client id {cid} is open")
    if err is None and open_order_count(acct) >= st.max_open_orders:
        err = (TOO_MANY_ORDERS, "open order limit reached")
    if err is None:
        err = min_notional_error(st, market, a.trigger_price_ticks, a.size_lots, a.reduce_only)
    if err is not None:
        return _reject(st, acct, mid, cid, err[0], err[1])
    t = place_trigger(st, acct, a, a.size_lots)
    return ActionResult(OK, ST_WAITING, t.order_id, 0, ST_WAITING)
