"""Good-til-time orders: an order (or waiting trigger) placed with ``good_til_ms`` is cancelled
at the beginning of the first block whose time is at or after it, before that block's
transactions run (so it never trades at or after its time). This is on top of the transaction's
own ``expires_at_ms``, which only bounds when the placement may be included.

A record exists only while its order is open: one that does not rest or wait gets none, and
the record of an order filled or cancelled otherwise is dropped at the end of that block
(hook.py follows the block's events).
"""

from __future__ import annotations

from state_machine.accounts.records import Account
from state_machine.algo.codes import INVALID_GOOD_TIL, R_GOOD_TIL
from state_machine.algo.records import GoodTil
from state_machine.clob.checks import Reject
from state_machine.clob.matching import cancel_resting
from state_machine.state import ExchangeCore
from state_machine.triggers.records import cancel_trigger, trigger_book
from state_machine.tx import KIND_MARKET, TIF_FOK, TIF_IOC, TRIGGER_KINDS, PlaceOrder

# The furthest a good-til time may lie ahead: it bounds how long a forgotten order stays.
MAX_GOOD_TIL_MS = 90 * 24 * 3600 * 1000


def good_til_error(now_ms: int, order: PlaceOrder, good_til_ms: int) -> Reject | None:
    """A good-til time lies after the block and at most MAX_GOOD_TIL_MS ahead, on an order
    that can rest or wait (a trigger order, or a limit order that is not IOC or FOK)."""
    waits = order.kind in TRIGGER_KINDS  # a trigger waits whatever its tif when it fires
    if not waits and (order.kind == KIND_MARKET or order.tif in (TIF_IOC, TIF_FOK)):
        return INVALID_GOOD_TIL, "a good-til time applies to orders that rest or wait"
    if good_til_ms <= now_ms:
        return INVALID_GOOD_TIL, f"good-til time {good_til_ms} is not after block time {now_ms}"
    if good_til_ms - now_ms > MAX_GOOD_TIL_MS:
        return INVALID_GOOD_TIL, f"good-til time more than {MAX_GOOD_TIL_MS} ms ahead"
    return None


def record_good_til(st: ExchangeCore, acct: Account, mid: int, oid: int, good_til_ms: int) -> None:
    """Remember the time of a placed order if it is open (resting or waiting)."""
    if oid in acct.orders or oid in acct.triggers:
        rec = GoodTil(oid, mid, acct, good_til_ms)
        st.algo.add_good_til(rec)
        st.touch(rec)


def expire_good_til(st: ExchangeCore) -> None:
    """Begin block: cancel every order and trigger whose good-til time has come."""
    for rec in st.algo.take_due_good_til(st.timestamp_ms):
        st.touch(rec)
        order = st.orders.get(rec.order_id)
        if order is not None:
            cancel_resting(st, order, R_GOOD_TIL)
            continue
        t = trigger_book(st).by_id.get(rec.order_id)
        if t is not None:
            cancel_trigger(st, t, R_GOOD_TIL)


def drop_closed_good_til(st: ExchangeCore, order_ids: list[int]) -> None:
    """End block: forget the good-til times of orders that are no longer open."""
    algo = st.algo
    by_id = trigger_book(st).by_id
    for oid in order_ids:
        rec = algo.good_til.get(oid)
        if rec is not None and oid not in st.orders and oid not in by_id:
            algo.remove_good_til(rec)
            st.touch(rec)
