"""Consistency of the order tools' records with each other and with the orders they name
(run by state_machine/audit.py, so at start-up, every ``audit_every_blocks`` and in the tests
after every block)."""

from __future__ import annotations

from typing import Any

from state_machine.invariants import check
from state_machine.state import ExchangeCore


def check_algo_indexes(st: ExchangeCore) -> None:
    algo = st.algo
    check(
        sorted(algo.twap_due) == sorted((t.next_slice_ms, i) for i, t in algo.twaps.items()),
        "TWAP schedule differs from the TWAPs",
    )
    for tw in algo.twaps.values():
        check(tw.filled_lots < tw.size_lots, f"TWAP {tw.twap_id} filled but running")
        check(tw.slices_done < tw.slices_total, f"TWAP {tw.twap_id} past its last slice")
    by_id = st.triggers.by_id
    for rec in algo.good_til.values():
        open_ = rec.order_id in st.orders or rec.order_id in by_id
        check(open_, f"good-til record of order {rec.order_id}, which is not open")
    check(
        sorted(algo.good_til_due) == sorted((r.good_til_ms, i) for i, r in algo.good_til.items()),
        "good-til schedule differs from the records",
    )
    for g in algo.groups.values():
        if not g.armed:
            check(algo.pending.get(g.parent_order_id) is g, f"pending index of {g.group_id}")
            check(g.parent_order_id in st.orders, f"group {g.group_id} waits on a closed order")
            continue
        check(algo.armed.get((g.account.pubkey, g.market_id)) is g, f"armed index {g.group_id}")
        for tid in g.member_ids():
            t = by_id.get(tid)
            check(t is not None and t.account is g.account, f"member {tid} of {g.group_id}")
            check(algo.group_of_trigger.get(tid) is g, f"trigger index of {tid}")
    check(len(algo.pending) + len(algo.armed) == len(algo.groups), "group indexes")
    check_account_tools(st)


def check_account_tools(st: ExchangeCore) -> None:
    """Each account's 0x4b record lists exactly its TWAPs, groups and good-til records."""
    algo = st.algo
    want: dict[bytes, tuple[set[Any], set[Any], set[Any]]] = {}

    def of(owner: bytes) -> tuple[set[Any], set[Any], set[Any]]:
        return want.setdefault(owner, (set(), set(), set()))

    for tw in algo.twaps.values():
        of(tw.account.pubkey)[0].add((tw.market_id, tw.twap_id))
    for g in algo.groups.values():
        of(g.account.pubkey)[1].add((g.market_id, g.group_id))
    for r in algo.good_til.values():
        of(r.account.pubkey)[2].add((r.market_id, r.order_id))
    for owner, rec in algo.accounts.items():
        got = (rec.twaps, rec.groups, rec.good_til)
        check(got == want.pop(owner, (set(), set(), set())), f"tools of {owner.hex()[:8]}")
    check(not want, "order-tool records of an account without its 0x4b record")
