"""Firing trigger orders: at the end of each block, after a perp market's mark price update,
every waiting trigger the mark reached is placed as an ordinary order by its owner
(triggers/records.py describes the order and the events).
"""

from __future__ import annotations

from state_machine.clob.place import process_place_order
from state_machine.state import ExchangeCore
from state_machine.triggers.records import trigger_book
from state_machine.tx import KIND_LIMIT, KIND_MARKET, PlaceOrder


def fire_triggers(st: ExchangeCore, mid: int, mark: int) -> None:
    """Place every trigger order of ``mid`` that the mark reached (deterministic order)."""

    tb = trigger_book(st)
    for t in tb.fired(mid, mark):
        tb.remove(t)
        st.touch(t)
        acct = t.account
        cid = t.client_id if t.client_id not in acct.client_ids else 0
        order = PlaceOrder(
            mid,
            t.is_buy,
            KIND_LIMIT if t.is_limit else KIND_MARKET,
            t.placed_tif,
            t.price_ticks if t.is_limit else 0,
            t.size_lots,
            0,
            t.reduce_only,
            cid,
            t.stp,
        )
        res = process_place_order(st, acct, order)
        st.events.append(
            (
                "trigger_fired",
                mid,
                t.order_id,
                acct.pubkey,
                mark,
                res.code,
                res.order_id,
                res.filled_lots,
            )
        )
