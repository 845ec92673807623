"""The order tools' place in the block (state_machine/exchange.py calls these):

* actions: ``PlaceOrderExtended`` (an order with a good-til time and/or an attached TP/SL pair),
  ``PlaceTwap``, ``CancelTwap``, ``SetPositionTpsl``, ``CancelTpsl``;
* begin block: orders and triggers at their good-til time are cancelled (goodtil.py);
* end block, first: the TWAP slices due (twap.py), then the records follow what the block's
  transactions and slices did; last (after triggers and liquidations): they follow again.

"Follow" reads the block's events from a given index (so its cost is the block's events,
only when some group or good-til record exists): pending TP/SL groups whose parent filled arm,
those whose parent went unfilled are dropped; armed groups of every (account, market) that
traded, was liquidated or had a trigger change are brought in line with their position
(tpsl.py); good-til records of orders no longer open are dropped.
"""

from __future__ import annotations

from typing import Any

from state_machine.accounts.records import Account
from state_machine.algo.goodtil import (
    drop_closed_good_til,
    expire_good_til,
    good_til_error,
    record_good_til,
)
from state_machine.algo.records import (
    P_ACCOUNT_TOOLS,
    P_GOOD_TIL,
    P_TPSL,
    P_TWAP,
    AlgoState,
    GoodTil,
    TpslGroup,
    Twap,
)
from state_machine.algo.tpsl import (
    follow_position,
    new_group,
    process_cancel_tpsl,
    process_set_position_tpsl,
    settle_pending,
    tpsl_prices_error,
)
from state_machine.algo.twap import process_cancel_twap, process_place_twap, run_twaps
from state_machine.clob.checks import Reject
from state_machine.clob.codes import INVALID_ORDER
from state_machine.clob.place import process_place_order
from state_machine.invariants import check
from state_machine.results import EVENT_FIELDS, ActionResult
from state_machine.state import ExchangeCore
from state_machine.tx import (
    KIND_LIMIT,
    KIND_MARKET,
    CancelTpsl,
    CancelTwap,
    PlaceOrderExtended,
    PlaceTwap,
    SetPositionTpsl,
)


def extended_order_error(st: ExchangeCore, a: PlaceOrderExtended) -> Reject | None:
    """The checks of the extensions, before the order's own (nothing changes on a refusal)."""
    o = a.order
    market = st.markets.get(o.market_id)
    if market is None:
        return None  # the placement refuses it with its own code
    if a.good_til_ms:
        err = good_til_error(st.timestamp_ms, o, a.good_til_ms)
        if err is not None:
            return err
    if not (a.tp_trigger_ticks or a.sl_trigger_ticks):
        return None
    if o.kind not in (KIND_LIMIT, KIND_MARKET) or o.reduce_only:
        return INVALID_ORDER, "TP/SL attaches to a limit or market order that is not reduce-only"
    ref = o.price_ticks if o.kind == KIND_LIMIT else st.mstates[o.market_id].mark_price_ticks
    return tpsl_prices_error(st, market, o.is_buy, ref, a.tp_trigger_ticks, a.sl_trigger_ticks)


def process_place_order_extended(
    st: ExchangeCore, acct: Account, a: PlaceOrderExtended
) -> ActionResult:
    """Place the order through the normal path, then keep its good-til time and/or a pending
    TP/SL group that arms when it fills."""
    o = a.order
    err = extended_order_error(st, a)
    if err is not None:
        st.events.append(("order_rejected", o.market_id, acct.pubkey, o.client_id, err[0], err[1]))
        return ActionResult(err[0], err[1])
    res = process_place_order(st, acct, o)
    if not res.ok:
        return res
    if a.good_til_ms:
        record_good_til(st, acct, o.market_id, res.order_id, a.good_til_ms)
    oid = res.order_id
    is_open = oid in acct.orders
    if (a.tp_trigger_ticks or a.sl_trigger_ticks) and (is_open or res.filled_lots):
        # Pending until the end of the block, when a fill arms it (hook: follow_events).
        g = new_group(st, acct, o.market_id, o.is_buy, res.order_id, a.tp_trigger_ticks,
                      a.sl_trigger_ticks)  # fmt: skip
        st.algo.add_group(g)
    return res


ALGO_DISPATCH: dict[type, Any] = {
    PlaceOrderExtended: process_place_order_extended,
    PlaceTwap: process_place_twap,
    CancelTwap: process_cancel_twap,
    SetPositionTpsl: process_set_position_tpsl,
    CancelTpsl: process_cancel_tpsl,
}
# Execution classes (exchange.py): cancels with the cancels, the rest with the orders
# (a post-only PlaceOrderExtended goes with the post-only orders: exchange.py looks inside).
ALGO_ACTION_CLASS: dict[type, int] = {
    PlaceOrderExtended: 3,
    PlaceTwap: 3,
    CancelTwap: 1,
    SetPositionTpsl: 3,
    CancelTpsl: 1,
}


# ---- the block ------------------------------------------------------------------------------


def algo_begin_block(st: ExchangeCore) -> None:
    if st.algo.good_til_due:
        expire_good_til(st)


def algo_end_block_first(st: ExchangeCore) -> int:
    """TWAP slices, then follow the events so far; returns where the last pass starts."""
    if st.algo.twap_due:
        run_twaps(st)
    follow_events(st, 0)
    return len(st.events)


def algo_end_block_last(st: ExchangeCore, start: int) -> None:
    follow_events(st, start)


# The events that can close an order or a trigger or change a position: the only ones the
# records follow (most of a block's events, order_accepted and order_rested, are not).
FOLLOWED_KINDS = (
    "fill",
    "order_cancelled",
    "trigger_cancelled",
    "trigger_fired",
    "liquidation",
    "backstop",
    "position_transfer",
    "adl",
    "vault_adl",
)
# Per followed kind, the index (in the event tuple) of its market id, of its account fields
# and of its order / trigger id fields, derived from the event catalogue.
ACCOUNT_FIELDS = ("account", "taker", "maker", "from", "to", "bankrupt", "counterparty")
ORDER_ID_FIELDS = ("order_id", "taker_order_id", "maker_order_id", "trigger_id")


def _event_index() -> dict[str, tuple[int, tuple[int, ...], tuple[int, ...]]]:
    out = {}
    for kind in FOLLOWED_KINDS:
        names = EVENT_FIELDS[kind]
        out[kind] = (
            names.index("market_id") + 1,
            tuple(i + 1 for i, n in enumerate(names) if n in ACCOUNT_FIELDS),
            tuple(i + 1 for i, n in enumerate(names) if n in ORDER_ID_FIELDS),
        )
    return out


EVENT_INDEX = _event_index()


def scan_events(
    events: list[tuple[Any, ...]], algo: AlgoState
) -> tuple[set[int], set[int], set[tuple[bytes, int]]]:
    """(watched order ids named, of those the ones that filled, (account, market) pairs of
    armed groups touched): only ids and pairs some record watches are collected."""
    ids: set[int] = set()
    filled: set[int] = set()
    pairs: set[tuple[bytes, int]] = set()
    good_til, pending, armed = algo.good_til, algo.pending, algo.armed
    index = EVENT_INDEX
    for ev in events:
        where = index.get(ev[0])
        if where is None:
            continue
        mi, accts, oids = where
        if armed:
            for i in accts:
                key = (ev[i], ev[mi])
                if key in armed:
                    pairs.add(key)
        for i in oids:
            oid = ev[i]
            if oid in good_til or oid in pending:
                ids.add(oid)
                if ev[0] == "fill":
                    filled.add(oid)
    return ids, filled, pairs


def follow_events(st: ExchangeCore, start: int) -> None:
    """Bring the records in line with the block's events from ``start`` (see the docstring)."""
    algo = st.algo
    if not algo.watching:
        return
    ids, filled, pairs = scan_events(st.events[start:], algo)
    for oid in sorted(ids & algo.pending.keys()):
        settle_pending(st, oid, oid in filled)
    for key in sorted(pairs):
        g = algo.armed.get(key)
        if g is not None:
            follow_position(st, g)
    drop_closed_good_til(st, sorted(ids & algo.good_til.keys()))


# ---- rebuilding from entries ------------------------------------------------------------------


def _ids(key: bytes) -> tuple[int, int]:
    return int.from_bytes(key[1:5], "big"), int.from_bytes(key[5:13], "big")


def _load_twap(st: ExchangeCore, key: bytes, v: list[Any]) -> None:
    mid, tid = _ids(key)
    st.algo.add_twap(Twap(tid, mid, st.account(v[0]), v[1:]))


def _load_group(st: ExchangeCore, key: bytes, v: list[Any]) -> None:
    mid, gid = _ids(key)
    st.algo.add_group(TpslGroup(gid, mid, st.account(v[0]), v[1:]))


def _load_good_til(st: ExchangeCore, key: bytes, v: list[Any]) -> None:
    mid, oid = _ids(key)
    st.algo.add_good_til(GoodTil(oid, mid, st.account(v[0]), v[1]))


def _load_account_tools(st: ExchangeCore, key: bytes, v: list[Any]) -> None:
    st.algo.loaded_tools.append((key[1:33], v))  # derived: checked by algo_after_load


ALGO_LOADERS = {
    P_TWAP: _load_twap,
    P_TPSL: _load_group,
    P_GOOD_TIL: _load_good_til,
    P_ACCOUNT_TOOLS: _load_account_tools,
}


def algo_after_load(st: ExchangeCore) -> None:
    """After from_entries: the stored 0x4b records must equal the ones derived from the other
    records, and nothing loaded is dirty."""
    algo = st.algo
    for owner, value in algo.loaded_tools:
        rec = algo.accounts.get(owner)
        check(rec is not None and rec.state_obj() == value, "account tools record differs")
    check(len(algo.loaded_tools) == len(algo.accounts), "account tools record missing")
    algo.loaded_tools = []
    for rec in algo.accounts.values():
        rec.dirty = False
