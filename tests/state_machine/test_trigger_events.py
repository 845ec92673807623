"""Waiting trigger orders are open orders: listed and counted with the resting ones, and every
change of one (accepted, cancelled by each path, fired) is an event of the block, in an order
that does not depend on whether the state was replayed or rebuilt from its entries."""

from __future__ import annotations

import dataclasses

from state_machine.exchange import ExchangeState
from state_machine.genesis import FundedBalance
from state_machine.queries import account_summary, open_orders
from state_machine.results import event_to_dict
from state_machine.tx import (
    KIND_STOP_LIMIT,
    KIND_STOP_MARKET,
    KIND_TAKE_PROFIT_LIMIT,
    KIND_TAKE_PROFIT_MARKET,
    CancelAll,
    CancelByClientId,
    CancelOrder,
    SetLeverage,
)
from tests.state_machine.helpers import (
    BTC_PERP,
    ETH_PERP,
    USDC,
    Harness,
    acct,
    limit,
    make_genesis,
    trigger,
)

A1, A2 = acct(1), acct(2)


def test_placing_a_trigger_emits_every_field_of_the_waiting_order() -> None:
    h = Harness()
    h.one(A2, limit(BTC_PERP, False, 6_000_000, 100))
    h.one(A1, limit(BTC_PERP, True, 6_000_000, 100))  # A1 long 100 lots
    stop = h.one(A1, trigger(BTC_PERP, False, KIND_STOP_MARKET, 5_900_000, 40, price=5_000_000))
    (accepted,) = h.events("trigger_accepted")
    assert accepted == {
        "kind": "trigger_accepted",
        "market_id": BTC_PERP,
        "order_id": stop.order_id,
        "account": A1,
        "is_buy": False,
        "order_kind": KIND_STOP_MARKET,
        "trigger_price_ticks": 5_900_000,
        "price_ticks": 0,  # a market kind has no limit price, whatever the action carried
        "size_lots": 40,
        "client_id": 0,
        "reduce_only": True,  # attached to the long
    }
    take = h.one(
        A1,
        trigger(
            BTC_PERP, True, KIND_TAKE_PROFIT_LIMIT, 5_500_000, 30, price=5_510_000, client_id=9
        ),
    )
    (accepted,) = h.events("trigger_accepted")
    assert (accepted["order_id"], accepted["trigger_price_ticks"]) == (take.order_id, 5_500_000)
    assert (accepted["price_ticks"], accepted["client_id"]) == (5_510_000, 9)
    assert accepted["reduce_only"] is False  # a buy under a long is not attached


def test_waiting_triggers_are_listed_and_counted_as_open_orders() -> None:
    h = Harness()
    h.one(A1, SetLeverage(BTC_PERP, 5, False))
    rest = h.one(A1, limit(BTC_PERP, True, 5_900_000, 10))
    assert rest.status == "resting"
    stop = h.one(A1, trigger(BTC_PERP, True, KIND_STOP_LIMIT, 6_500_000, 20, price=6_600_000))
    tp = h.one(A1, trigger(ETH_PERP, False, KIND_TAKE_PROFIT_MARKET, 400_000, 30, client_id=5))
    listed = open_orders(h.state, A1)
    assert [(o["order_id"], o["status"]) for o in listed] == [
        (rest.order_id, "resting"),
        (stop.order_id, "waiting"),
        (tp.order_id, "waiting"),
    ]
    assert listed[1]["kind"] == KIND_STOP_LIMIT and listed[1]["trigger_price_ticks"] == 6_500_000
    assert listed[1]["price_ticks"] == 6_600_000 and listed[1]["size_lots"] == 20
    assert listed[2]["client_id"] == 5 and listed[2]["price_ticks"] == 0
    assert [o["order_id"] for o in open_orders(h.state, A1, ETH_PERP)] == [tp.order_id]
    summary = account_summary(h.state, A1)
    assert (summary["open_orders"], summary["waiting_triggers"]) == (3, 2)
    # Cancel-all counts the same orders the listing shows.
    assert h.one(A1, CancelAll(None)).count == 3
    assert open_orders(h.state, A1) == []
    assert account_summary(h.state, A1)["open_orders"] == 0


def test_each_user_cancel_path_emits_one_trigger_cancelled() -> None:
    h = Harness()
    ids = [
        h.one(A1, trigger(BTC_PERP, True, KIND_STOP_MARKET, px, 10, client_id=cid)).order_id
        for px, cid in ((6_500_000, 0), (6_600_000, 44), (6_700_000, 0), (6_800_000, 0))
    ]
    h.one(A1, CancelOrder(BTC_PERP, ids[0]))
    assert h.events("trigger_cancelled") == [
        {
            "kind": "trigger_cancelled",
            "market_id": BTC_PERP,
            "order_id": ids[0],
            "account": A1,
            "reason": "user",
        }
    ]
    h.one(A1, CancelByClientId(BTC_PERP, 44))
    assert [e["order_id"] for e in h.events("trigger_cancelled")] == [ids[1]]
    assert h.one(A1, CancelAll(BTC_PERP)).count == 2
    cancelled = h.events("trigger_cancelled")
    assert [(e["order_id"], e["reason"]) for e in cancelled] == [(ids[2], "user"), (ids[3], "user")]
    # Gone: a second cancel finds nothing and emits nothing.
    assert h.one(A1, CancelOrder(BTC_PERP, ids[0])).code == "unknown_order"
    assert h.events("trigger_cancelled") == []


def test_cancel_all_events_are_the_same_on_a_rebuilt_state() -> None:
    """A rebuilt state holds an account's triggers in key order (market, id), a replayed one in
    placement order: the events of cancel-all must not depend on it."""
    h = Harness()
    h.one(A1, trigger(ETH_PERP, True, KIND_STOP_MARKET, 400_000, 30))
    h.one(A1, trigger(BTC_PERP, True, KIND_STOP_MARKET, 6_500_000, 10))
    h.one(A1, trigger(ETH_PERP, False, KIND_TAKE_PROFIT_MARKET, 400_000, 30))
    clone = Harness(h.genesis)
    clone.state = ExchangeState.from_entries(h.genesis, h.state.entries())
    clone.height, clone.time_ms, clone.nonce = h.height, h.time_ms, h.nonce
    assert list(clone.state.accounts[A1].triggers) != list(h.state.accounts[A1].triggers)
    assert open_orders(clone.state, A1) == open_orders(h.state, A1)
    h.one(A1, CancelAll(None))
    clone.one(A1, CancelAll(None))
    assert h.last is not None and clone.last is not None
    assert clone.last.events == h.last.events
    assert [e["order_id"] for e in h.events("trigger_cancelled")] == [1, 2, 3]


def test_a_fired_trigger_leaves_the_listing_and_reports_what_it_placed() -> None:
    h = Harness()
    h.one(A2, limit(BTC_PERP, False, 6_000_000, 100))
    t = h.one(A1, trigger(BTC_PERP, True, KIND_STOP_MARKET, 6_000_000, 10))
    # The mark (6,000,000) is at the trigger already: it fires at the end of its own block.
    (fired,) = h.events("trigger_fired")
    assert fired["trigger_id"] == t.order_id and fired["code"] == "ok"
    assert fired["filled_lots"] == 10 and fired["order_id"] > t.order_id
    assert open_orders(h.state, A1) == [] and not h.state.accounts[A1].triggers


def test_liquidation_cancels_the_waiting_trigger_with_its_reason() -> None:
    a7 = acct(7)
    g = make_genesis()
    g = dataclasses.replace(g, balances=(*g.balances, FundedBalance(a7, 0, 1_000 * USDC)))
    h = Harness(g)
    h.one(a7, SetLeverage(BTC_PERP, 50, False))
    h.one(A2, limit(BTC_PERP, False, 6_000_000, 7_000))
    h.one(a7, limit(BTC_PERP, True, 6_000_000, 7_000))
    t = h.one(a7, trigger(BTC_PERP, True, KIND_STOP_MARKET, 6_500_000, 10))
    h.oracle(BTC_PERP, 5_900_000)
    assert h.last is not None
    kinds = [e[0] for e in h.last.events]
    cancelled = h.events("trigger_cancelled")
    assert [(e["order_id"], e["reason"]) for e in cancelled] == [(t.order_id, "liquidation")]
    # Cancelled as part of the liquidation, after its event.
    assert kinds.index("liquidation") < kinds.index("trigger_cancelled")
    assert open_orders(h.state, a7) == []
    assert event_to_dict(h.last.events[kinds.index("trigger_cancelled")])["account"] == a7


def test_a_reduce_only_trigger_whose_position_is_gone_is_refused_when_it_fires() -> None:
    """Nothing cancels it when the position closes: it waits, and its firing reports the code."""
    h = Harness()
    h.one(A2, limit(BTC_PERP, False, 6_000_000, 100))
    h.one(A1, limit(BTC_PERP, True, 6_000_000, 100))  # A1 long
    stop = h.one(A1, trigger(BTC_PERP, False, KIND_STOP_MARKET, 5_900_000, 100))
    h.one(A2, limit(BTC_PERP, True, 6_000_000, 100))
    h.one(A1, limit(BTC_PERP, False, 6_000_000, 100))  # A1 flat again
    assert [o["status"] for o in open_orders(h.state, A1)] == ["waiting"]
    h.oracle(BTC_PERP, 5_890_000)
    (fired,) = h.events("trigger_fired")
    assert (fired["trigger_id"], fired["code"]) == (stop.order_id, "reduce_only_would_increase")
    assert open_orders(h.state, A1) == []


def test_a_waiting_trigger_holds_its_client_id_and_its_place_under_the_limit() -> None:
    g = make_genesis()
    g = dataclasses.replace(
        g, parameters=dataclasses.replace(g.parameters, max_open_orders_per_account=2)
    )
    h = Harness(g)
    assert (
        h.one(A1, trigger(BTC_PERP, True, KIND_STOP_MARKET, 6_500_000, 10, client_id=5)).code
        == "ok"
    )
    # A resting order may not take the client id a waiting trigger holds ...
    assert (
        h.one(A1, limit(BTC_PERP, True, 5_900_000, 10, client_id=5)).code == "duplicate_client_id"
    )
    assert h.one(A1, trigger(BTC_PERP, True, KIND_STOP_MARKET, 6_600_000, 10)).code == "ok"
    # ... nor a place beyond the open-order limit, which the triggers fill here.
    assert h.one(A1, limit(BTC_PERP, True, 5_900_000, 10)).code == "too_many_orders"
    assert account_summary(h.state, A1)["open_orders"] == 2
    h.one(A1, CancelByClientId(BTC_PERP, 5))
    assert h.one(A1, limit(BTC_PERP, True, 5_900_000, 10, client_id=5)).status == "resting"
