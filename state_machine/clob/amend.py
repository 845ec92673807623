"""Amending a resting order's price and/or remaining size.

A size decrease at the same price keeps time priority (``shrink_order``); a price change or a
size increase loses it (``requeue_order``: a new sequence number, matched again like a new
order of the same time in force). The new price and size pass the same predicates as a new
order (clob/checks.py).
"""

from __future__ import annotations

from state_machine.accounts.records import Account
from state_machine.book import Order
from state_machine.clob.checks import (
    Reject,
    balance_error,
    band_error,
    lots_error,
    margin_error,
    market_state_error,
    min_notional_error,
    no_open_order,
    open_interest_error,
    post_only_error,
    price_error,
    spot_hold_asset,
    spot_hold_atoms,
)
from state_machine.clob.codes import ST_RESTING, UNKNOWN_ORDER
from state_machine.clob.matching import _release_hold, _unindex, execute_order
from state_machine.genesis import MARKET_PERP, Market
from state_machine.invariants import check
from state_machine.results import OK, ActionResult
from state_machine.state import ExchangeCore
from state_machine.tx import TIF_ALO, AmendOrder


def process_amend_order(st: ExchangeCore, acct: Account, a: AmendOrder) -> ActionResult:
    """Change a resting order's price and/or remaining size.

    A size decrease at the same price keeps time priority; a price change or size increase
    loses it (the order gets a new sequence number and is matched again like a new order of the
    same time in force; a post-only order that would cross is rejected and left unchanged).
    """
    order = acct.orders.get(a.order_id)
    if order is None or order.market_id != a.market_id:
        return ActionResult(UNKNOWN_ORDER, no_open_order(st, a.order_id, a.market_id))
    market = st.markets[order.market_id]
    price = a.price_ticks
    size = a.size_lots
    ms = st.mstates[market.market_id]
    err = lots_error(st, market, size)
    if err is None:
        err = price_error(st, market, price)
    if err is None:
        err = band_error(st, market, ms.oracle_price_ticks or ms.last_trade_price_ticks, price)
    if err is None:
        err = min_notional_error(st, market, price, size, order.reduce_only)
    if err is not None:
        return ActionResult(err[0], err[1])
    if price == order.price_ticks and size <= order.size_lots:
        return shrink_order(st, acct, market, order, size)  # like a partial cancel: any state
    controls = st.gov.controls.get(market.market_id)
    if controls is not None:
        err = market_state_error(controls, order.reduce_only)
        if err is None and market.is_perp and not order.reduce_only and size > order.size_lots:
            err = open_interest_error(
                controls, ms.open_interest_lots, 0, order.is_buy, size - order.size_lots
            )
        if err is not None:
            return ActionResult(err[0], err[1])
    err = check_amend_requeue(st, acct, market, order, price, size)
    if err is not None:
        return ActionResult(err[0], err[1])
    return requeue_order(st, acct, market, order, price, size)


def shrink_order(
    st: ExchangeCore, acct: Account, market: Market, order: Order, size: int
) -> ActionResult:
    """Shrink in place at the same price: time priority kept, the excess reservation freed."""
    delta = order.size_lots - size
    price = order.price_ticks
    if delta:
        order.size_lots = size
        order.orig_lots -= delta
        check(order.level is not None, "amended order not resting")
        assert order.level is not None
        order.level.total_lots -= delta
        if market.kind == MARKET_PERP:
            if not order.reduce_only:
                pos = acct.positions[order.market_id]
                if order.is_buy:
                    pos.buy_lots -= delta
                else:
                    pos.sell_lots -= delta
        else:
            need = spot_hold_atoms(market, order.is_buy, price, size)
            excess = order.hold_atoms - need
            bal = acct.balances[spot_hold_asset(market, order.is_buy)]
            bal.held_atoms -= excess
            bal.available_atoms += excess
            order.hold_atoms = need
            st.touch(bal)
        st.touch(order)
    oid = order.order_id
    st.events.append(("order_amended", order.market_id, oid, acct.pubkey, price, size, order.seq))
    return ActionResult(OK, ST_RESTING, oid, 0, ST_RESTING)


def check_amend_requeue(
    st: ExchangeCore, acct: Account, market: Market, order: Order, price: int, size: int
) -> Reject | None:
    """The checks of an amend that loses priority: post-only, then margin or balance.

    The margin check prices the fee at the taker rate whatever the order's time in force
    (stricter than a new post-only order, which is checked at the maker rate).
    """
    is_buy = order.is_buy
    if order.tif == TIF_ALO:
        book = st.books[order.market_id]
        err = post_only_error(st, market, book.asks if is_buy else book.bids, is_buy, price)
        if err is not None:
            return err
    if market.kind == MARKET_PERP:
        if order.reduce_only:
            return None
        added = size - order.size_lots
        return margin_error(st, acct, market, is_buy, price, size, added, market.taker_fee_ppm)
    need = spot_hold_atoms(market, is_buy, price, size)
    bal = acct.balances[spot_hold_asset(market, is_buy)]
    return balance_error(st, bal.asset_id, bal.available_atoms + order.hold_atoms, need)


def requeue_order(
    st: ExchangeCore, acct: Account, market: Market, prev: Order, price: int, size: int
) -> ActionResult:
    """Lose priority: take the order off the book (releasing its reservations), then re-enter
    it with the same id and a new sequence number, matched like a new order."""
    book = st.books[prev.market_id]
    is_buy = prev.is_buy
    old = prev.size_lots
    book.side(is_buy).remove(prev)
    _unindex(st, prev)
    _release_hold(st, market, prev)
    perp = market.kind == MARKET_PERP
    if perp and not prev.reduce_only:
        pos = acct.positions[prev.market_id]
        if is_buy:
            pos.buy_lots -= old
        else:
            pos.sell_lots -= old
    seq = st.next_seq
    st.next_seq = seq + 1
    # A fresh object: the old one may still sit dead in its level's deque (lazy removal) and
    # must never come back to life there.
    oid = prev.order_id
    order = Order(
        oid, seq, prev.market_id, acct, is_buy, price, size, prev.client_id, prev.tif,
        prev.reduce_only, prev.stp, st.timestamp_ms, prev.kind,
    )  # fmt: skip
    order.orig_lots = prev.orig_lots + size - old
    order.filled_lots = prev.filled_lots
    order.stored = prev.stored
    if not perp:
        bal = acct.balances[spot_hold_asset(market, is_buy)]
        need = spot_hold_atoms(market, is_buy, price, size)
        bal.available_atoms -= need
        bal.held_atoms += need
        order.hold_atoms = need
        st.touch(bal)
    st.touch(order)
    st.events.append(("order_amended", order.market_id, oid, acct.pubkey, price, size, seq))
    return execute_order(st, market, book, order)
