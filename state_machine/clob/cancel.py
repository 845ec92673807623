"""Cancelling orders: by id, by client id, or all of an account's (one market or every market);
waiting trigger orders are open orders too and are cancelled the same way.
"""

from __future__ import annotations

from state_machine.accounts.records import Account
from state_machine.clob.checks import no_open_order
from state_machine.clob.codes import R_USER, ST_CANCELLED, UNKNOWN_ORDER
from state_machine.clob.matching import cancel_resting
from state_machine.results import OK, UNKNOWN_MARKET, ActionResult
from state_machine.state import ExchangeCore
from state_machine.triggers.records import account_triggers, cancel_trigger
from state_machine.tx import CancelAll, CancelByClientId, CancelOrder


def process_cancel_order(st: ExchangeCore, acct: Account, a: CancelOrder) -> ActionResult:
    order = acct.orders.get(a.order_id)
    if order is None:
        trig = acct.triggers.get(a.order_id)
        if trig is not None and trig.market_id == a.market_id:
            cancel_trigger(st, trig, R_USER)
            return ActionResult(OK, ST_CANCELLED, trig.order_id, 0, ST_CANCELLED)
    if order is None or order.market_id != a.market_id:
        return ActionResult(UNKNOWN_ORDER, no_open_order(st, a.order_id, a.market_id))
    cancel_resting(st, order, R_USER)
    return ActionResult(OK, ST_CANCELLED, order.order_id, order.filled_lots, ST_CANCELLED)


def process_cancel_by_client_id(
    st: ExchangeCore, acct: Account, a: CancelByClientId
) -> ActionResult:
    order = acct.client_ids.get(a.client_id) if a.client_id else None
    if order is None and a.client_id:
        for trig in acct.triggers.values():
            if trig.client_id == a.client_id and trig.market_id == a.market_id:
                cancel_trigger(st, trig, R_USER)
                return ActionResult(OK, ST_CANCELLED, trig.order_id, 0, ST_CANCELLED)
    if order is None or order.market_id != a.market_id:
        return ActionResult(UNKNOWN_ORDER, f"no open order with client id {a.client_id}")
    cancel_resting(st, order, R_USER)
    return ActionResult(OK, ST_CANCELLED, order.order_id, order.filled_lots, ST_CANCELLED)


def process_cancel_all(st: ExchangeCore, acct: Account, a: CancelAll) -> ActionResult:
    mid = a.market_id
    if mid is not None and mid not in st.markets:
        return ActionResult(UNKNOWN_MARKET, f"no market {mid}")
    victims = [o for o in acct.orders.values() if mid is None or o.market_id == mid]
    for o in victims:
        cancel_resting(st, o, R_USER)
    trigs = account_triggers(acct, mid)
    for t in trigs:
        cancel_trigger(st, t, R_USER)
    return ActionResult(OK, ST_CANCELLED, count=len(victims) + len(trigs))
