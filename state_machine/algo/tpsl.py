"""Grouped take-profit / stop-loss: a pair of reduce-only trigger orders on one position, where
one firing (or being cancelled) cancels the other, and whose size follows the position.

Two ways to make one:

* ``SetPositionTpsl`` on an open position: the pair waits at once ("armed"), and replaces the
  position's previous pair;
* ``PlaceOrderExtended`` with ``tp_trigger_ticks`` / ``sl_trigger_ticks``: the group waits for
  its parent order ("pending") and arms at the end of the block in which the parent first
  fills (replacing the position's previous pair); a parent gone without a fill drops it.

The members are ordinary trigger orders (triggers/records.py): they are open orders (listed,
counted against the open-order limit, cancelled by cancel-all) and fire through the normal
placement path as reduce-only market orders. At most one armed group exists per position.

At the end of every block (hook.py) each group whose account traded, was liquidated or had a
trigger fire or go in that market is brought in line with its position: a member gone cancels
the other (``oco``), a position closed or flipped cancels both (``position_closed``), and
otherwise both members are resized to the position (at most the market's largest order), so
a fill closes the whole position whatever it grew or shrank to. Sides: on a long, the
take-profit is a sell above the mark and the stop-loss a sell below; on a short the reverse.
"""

from __future__ import annotations

from state_machine.accounts.records import Account
from state_machine.algo.codes import (
    NO_POSITION,
    R_OCO,
    R_PARENT_CANCELLED,
    R_POSITION_CLOSED,
    R_REPLACED,
    R_USER,
    ST_ARMED,
    TPSL_WRONG_SIDE,
    UNKNOWN_TPSL,
)
from state_machine.algo.records import TpslGroup
from state_machine.clob.checks import Reject, price_error
from state_machine.clob.codes import (
    INVALID_ORDER,
    NO_REFERENCE_PRICE,
    ST_CANCELLED,
    TOO_MANY_ORDERS,
)
from state_machine.genesis import Market
from state_machine.results import NOT_PERP, OK, UNKNOWN_MARKET, ActionResult
from state_machine.state import ExchangeCore
from state_machine.triggers.records import (
    cancel_trigger,
    open_order_count,
    place_trigger,
    trigger_book,
)
from state_machine.tx import (
    KIND_STOP_MARKET,
    KIND_TAKE_PROFIT_MARKET,
    TIF_IOC,
    CancelTpsl,
    PlaceOrder,
    SetPositionTpsl,
)


def tpsl_prices_error(
    st: ExchangeCore, market: Market, is_long: bool, ref_ticks: int, tp_ticks: int, sl_ticks: int
) -> Reject | None:
    """At least one price, each valid, on its side of ``ref_ticks`` (long: take-profit above,
    stop-loss below; short: the reverse)."""
    if not market.is_perp:
        return NOT_PERP, "take-profit / stop-loss is for perpetuals"
    if not tp_ticks and not sl_ticks:
        return INVALID_ORDER, "give a take-profit or a stop-loss price"
    for ticks, what in ((tp_ticks, "take-profit price"), (sl_ticks, "stop-loss price")):
        err = price_error(st, market, ticks, what) if ticks else None
        if err is not None:
            return err
    if ref_ticks == 0:
        return NO_REFERENCE_PRICE, "no mark price"
    tp_wrong = tp_ticks and (tp_ticks <= ref_ticks if is_long else tp_ticks >= ref_ticks)
    sl_wrong = sl_ticks and (sl_ticks >= ref_ticks if is_long else sl_ticks <= ref_ticks)
    if tp_wrong or sl_wrong:
        side = "long" if is_long else "short"
        return TPSL_WRONG_SIDE, f"on a {side}, take-profit and stop-loss straddle {ref_ticks}"
    return None


def new_group(
    st: ExchangeCore, acct: Account, mid: int, is_long: bool, parent: int, tp: int, sl: int
) -> TpslGroup:
    gid = st.next_seq
    st.next_seq = gid + 1
    g = TpslGroup(gid, mid, acct, [is_long, parent, tp, sl, 0, 0])
    st.touch(g)
    st.events.append(("tpsl_accepted", mid, gid, acct.pubkey, parent, tp, sl))
    return g


def position_size(acct: Account, mid: int) -> int:
    pos = acct.positions.get(mid)
    return pos.size_lots if pos is not None else 0


def process_set_position_tpsl(st: ExchangeCore, acct: Account, a: SetPositionTpsl) -> ActionResult:
    """Arm a TP/SL pair on the account's open position, replacing its previous pair."""
    mid = a.market_id
    market = st.markets.get(mid)
    if market is None:
        return ActionResult(UNKNOWN_MARKET, f"no market {mid}")
    size = position_size(acct, mid)
    if size == 0 and market.is_perp:
        return ActionResult(NO_POSITION, f"no position in market {mid}")
    mark = st.mstates[mid].mark_price_ticks
    err = tpsl_prices_error(st, market, size > 0, mark, a.tp_trigger_ticks, a.sl_trigger_ticks)
    old = st.algo.armed.get((acct.pubkey, mid))
    freed = len(old.member_ids()) if old is not None else 0
    added = (1 if a.tp_trigger_ticks else 0) + (1 if a.sl_trigger_ticks else 0)
    if err is None and open_order_count(acct) - freed + added > st.max_open_orders:
        err = (TOO_MANY_ORDERS, "open order limit reached")
    if err is not None:
        return ActionResult(err[0], err[1])
    g = new_group(st, acct, mid, size > 0, 0, a.tp_trigger_ticks, a.sl_trigger_ticks)
    arm_group(st, g, size)
    return ActionResult(OK, ST_ARMED, g.group_id, 0, ST_ARMED)


def arm_group(st: ExchangeCore, g: TpslGroup, position_lots: int) -> None:
    """Place the group's triggers for the position (replacing its previous pair) and index it."""
    algo = st.algo
    old = algo.armed.get((g.account.pubkey, g.market_id))
    if old is not None:
        cancel_group(st, old, R_REPLACED)
    size = min(abs(position_lots), st.markets[g.market_id].max_order_lots)
    close_buy = not g.is_long
    for kind, ticks in ((KIND_TAKE_PROFIT_MARKET, g.tp_trigger_ticks),
                        (KIND_STOP_MARKET, g.sl_trigger_ticks)):  # fmt: skip
        if not ticks:
            continue
        order = PlaceOrder(g.market_id, close_buy, kind, TIF_IOC, 0, size, ticks, True, 0, 0)
        t = place_trigger(st, g.account, order, size)
        if kind == KIND_TAKE_PROFIT_MARKET:
            g.tp_order_id = t.order_id
        else:
            g.sl_order_id = t.order_id
    algo.add_group(g)
    st.touch(g)
    st.events.append(
        ("tpsl_armed", g.market_id, g.group_id, g.account.pubkey, g.tp_order_id, g.sl_order_id,
         size)
    )  # fmt: skip


def cancel_group(st: ExchangeCore, g: TpslGroup, reason: str) -> None:
    """Cancel the group's waiting members and forget it."""
    by_id = trigger_book(st).by_id
    for tid in g.member_ids():
        t = by_id.get(tid)
        if t is not None:
            cancel_trigger(st, t, reason)
    st.algo.remove_group(g)
    st.touch(g)
    st.events.append(("tpsl_cancelled", g.market_id, g.group_id, g.account.pubkey, reason))


def process_cancel_tpsl(st: ExchangeCore, acct: Account, a: CancelTpsl) -> ActionResult:
    g = st.algo.groups.get(a.group_id)
    if g is None or g.account is not acct or g.market_id != a.market_id:
        return ActionResult(UNKNOWN_TPSL, f"no TP/SL group {a.group_id} in market {a.market_id}")
    cancel_group(st, g, R_USER)
    return ActionResult(OK, ST_CANCELLED, g.group_id, 0, ST_CANCELLED)


def settle_pending(st: ExchangeCore, parent_id: int, filled: bool) -> None:
    """End block, for a pending group whose parent order filled or went: arm it on a fill (if
    the position is on the parent's side), drop it if the parent is gone unfilled."""
    g = st.algo.pending.get(parent_id)
    if g is None:
        return
    if not filled:
        if parent_id not in st.orders and parent_id not in g.account.triggers:
            cancel_group(st, g, R_PARENT_CANCELLED)
        return
    size = position_size(g.account, g.market_id)
    if size == 0 or (size > 0) != g.is_long:
        cancel_group(st, g, R_POSITION_CLOSED)  # e.g. the parent only reduced a position
        return
    st.algo.detach_pending(g)  # arm_group indexes it again, as armed
    arm_group(st, g, size)


def follow_position(st: ExchangeCore, g: TpslGroup) -> None:
    """End block: one member gone cancels the other; a closed or flipped position cancels both;
    else both members take the position's size."""
    by_id = trigger_book(st).by_id
    members = [by_id.get(tid) for tid in g.member_ids()]
    if any(t is None for t in members):
        cancel_group(st, g, R_OCO)
        return
    size = position_size(g.account, g.market_id)
    if size == 0 or (size > 0) != g.is_long:
        cancel_group(st, g, R_POSITION_CLOSED)
        return
    lots = min(abs(size), st.markets[g.market_id].max_order_lots)
    resized = False
    for t in members:
        if t is not None and t.size_lots != lots:
            t.size_lots = lots
            st.touch(t)
            resized = True
    if resized:
        st.events.append(("tpsl_resized", g.market_id, g.group_id, g.account.pubkey, lots))
