"""The order tools end to end in the state machine: good-til-time orders, grouped TP/SL on a
position and attached to an order, TWAP orders. Every block is audited (conservation and every
index, the order tools' included); every refusal has its code and leaves the state root as it
was; a state rebuilt from its entries behaves the same; randomised TWAP slices are the same on
two executions of the same blocks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from state_machine.audit import audit
from state_machine.exchange import BlockContext, ExchangeState, apply_block
from state_machine.queries import open_orders
from state_machine.results import BlockResult
from state_machine.tx import (
    KIND_MARKET,
    KIND_STOP_MARKET,
    TIF_IOC,
    Action,
    CancelAll,
    CancelOrder,
    CancelTpsl,
    CancelTwap,
    PlaceOrder,
    PlaceOrderExtended,
    PlaceTwap,
    SetPositionTpsl,
    Transaction,
)
from tests.state_machine.helpers import (
    BTC_PERP,
    BTC_SPOT,
    Harness,
    acct,
    limit,
    trigger,
)

A1, A2, A3 = acct(1), acct(2), acct(3)
MINUTE_MS = 60_000


class Audited(Harness):
    """A harness that audits the whole state after every block."""

    def block(self, txs: Sequence[Transaction], dt_ms: int = 500) -> BlockResult:
        res = super().block(txs, dt_ms)
        audit(self.state)
        return res

    def refused(self, signer: bytes, action: Action, code: str) -> None:
        """The action is refused with ``code`` and the block changes nothing but the clock,
        the nonce and the meta record (compared on a block with no transaction)."""
        twin = ExchangeState.from_entries(self.genesis, self.state.entries())
        res = self.one(signer, action)
        assert res.code == code, res
        ctx = BlockContext(self.height, self.time_ms, b"")
        apply_block(twin, ctx, [])
        mine = {k: v for k, v in self.state.entries() if k[0] != 0x06}
        assert mine == {k: v for k, v in twin.entries() if k[0] != 0x06}


def long_a1(h: Harness, lots: int = 100) -> None:
    h.one(A2, limit(BTC_PERP, False, 6_000_000, lots))
    assert h.one(A1, limit(BTC_PERP, True, 6_000_000, lots)).filled_lots == lots


def position(h: Harness, who: bytes, mid: int = BTC_PERP) -> int:
    pos = h.state.accounts[who].positions.get(mid)
    return pos.size_lots if pos is not None else 0


def kinds(h: Harness) -> list[str]:
    assert h.last is not None
    return [e[0] for e in h.last.events]


# ---- good-til-time ----------------------------------------------------------------------------


def test_a_good_til_order_is_cancelled_at_the_first_block_at_or_after_its_time() -> None:
    h = Audited()
    until = h.time_ms + 500 + 2_000
    res = h.one(A1, PlaceOrderExtended(limit(BTC_PERP, True, 5_900_000, 10), until))
    assert res.code == "ok" and res.status == "resting"
    assert [o["order_id"] for o in open_orders(h.state, A1)] == [res.order_id]
    h.block([], dt_ms=1_000)
    assert res.order_id in h.state.orders  # block time until - 1000: still open
    h.block([], dt_ms=1_000)  # block time == until: cancelled before the block's transactions
    (cancelled,) = h.events("order_cancelled")
    assert (cancelled["order_id"], cancelled["reason"]) == (res.order_id, "good_til")
    assert open_orders(h.state, A1) == [] and not h.state.algo.good_til


def test_a_good_til_waiting_trigger_is_cancelled_too() -> None:
    h = Audited()
    until = h.time_ms + 500 + 1_000
    # A stop-market placed IOC (how it will be placed when it fires) still waits: allowed.
    stop = PlaceOrder(BTC_PERP, True, KIND_STOP_MARKET, TIF_IOC, 0, 10, 6_500_000)
    t = h.one(A1, PlaceOrderExtended(stop, until))
    assert t.status == "waiting"
    h.block([], dt_ms=1_000)
    (cancelled,) = h.events("trigger_cancelled")
    assert (cancelled["order_id"], cancelled["reason"]) == (t.order_id, "good_til")


def test_the_good_til_record_goes_with_an_order_filled_or_cancelled_before_its_time() -> None:
    h = Audited()
    far = h.time_ms + 3_600_000
    a = h.one(A1, PlaceOrderExtended(limit(BTC_PERP, True, 5_900_000, 10), far))
    b = h.one(A1, PlaceOrderExtended(limit(BTC_PERP, True, 5_900_000, 10), far))
    assert sorted(h.state.algo.good_til) == [a.order_id, b.order_id]
    h.one(A1, CancelOrder(BTC_PERP, a.order_id))
    assert sorted(h.state.algo.good_til) == [b.order_id]
    h.one(A2, limit(BTC_PERP, False, 5_900_000, 10))  # fills b entirely
    assert h.state.algo.good_til == {}
    # An order that does not rest gets no record at all.
    h.one(A2, limit(BTC_PERP, False, 5_950_000, 10))
    c = h.one(A1, PlaceOrderExtended(limit(BTC_PERP, True, 5_950_000, 10), far))
    assert c.status == "filled" and h.state.algo.good_til == {}


@pytest.mark.parametrize(
    ("good_til_offset_ms", "order", "code"),
    [
        (0, limit(BTC_PERP, True, 5_900_000, 10), "invalid_good_til"),  # at the block time
        (91 * 24 * 3_600_000, limit(BTC_PERP, True, 5_900_000, 10), "invalid_good_til"),
        (60_000, limit(BTC_PERP, True, 5_900_000, 10, tif=TIF_IOC), "invalid_good_til"),
        (60_000, limit(BTC_PERP, True, 0, 10, kind=KIND_MARKET), "invalid_good_til"),
        (60_000, limit(BTC_PERP, True, 5_900_000, 0), "lot_size"),  # the order's own check
        (60_000, limit(9, True, 5_900_000, 10), "unknown_market"),
    ],
)
def test_good_til_refusals(good_til_offset_ms: int, order: Any, code: str) -> None:
    h = Audited()
    h.block([])
    until = h.time_ms + 500 + good_til_offset_ms
    h.refused(A1, PlaceOrderExtended(order, until), code)


# ---- TP/SL on a position ----------------------------------------------------------------------


def test_position_take_profit_fires_and_cancels_the_stop_loss() -> None:
    h = Audited()
    long_a1(h)
    res = h.one(A1, SetPositionTpsl(BTC_PERP, 6_200_000, 5_800_000))
    assert (res.code, res.status) == ("ok", "armed")
    g = h.state.algo.groups[res.order_id]
    assert [o["status"] for o in open_orders(h.state, A1)] == ["waiting", "waiting"]
    (armed,) = h.events("tpsl_armed")
    assert armed["size_lots"] == 100
    h.one(A3, limit(BTC_PERP, True, 6_200_000, 100))  # someone to sell to
    h.oracle(BTC_PERP, 6_200_000)
    fired = h.events("trigger_fired")
    assert [(f["trigger_id"], f["code"], f["filled_lots"]) for f in fired] == [
        (g.tp_order_id, "ok", 100)
    ]
    (gone,) = h.events("tpsl_cancelled")
    assert gone["reason"] == "oco"
    cancelled = h.events("trigger_cancelled")
    assert [(c["order_id"], c["reason"]) for c in cancelled] == [(g.sl_order_id, "oco")]
    assert position(h, A1) == 0 and open_orders(h.state, A1) == [] and not h.state.algo.groups


def test_position_tpsl_sizes_follow_the_position() -> None:
    h = Audited()
    long_a1(h, 100)
    gid = h.one(A1, SetPositionTpsl(BTC_PERP, 6_200_000, 5_800_000)).order_id
    g = h.state.algo.groups[gid]
    long_a1(h, 50)  # the position grows to 150
    (resized,) = h.events("tpsl_resized")
    assert resized["size_lots"] == 150
    tb = h.state.triggers
    assert tb.by_id[g.tp_order_id].size_lots == tb.by_id[g.sl_order_id].size_lots == 150
    h.one(A3, limit(BTC_PERP, True, 6_000_000, 150))
    h.one(A1, limit(BTC_PERP, False, 6_000_000, 150))  # closed by hand
    assert kinds(h).count("trigger_cancelled") == 2
    assert h.events("tpsl_cancelled")[0]["reason"] == "position_closed"
    assert open_orders(h.state, A1) == []


def test_cancelling_one_member_cancels_the_other_and_cancel_all_takes_both() -> None:
    h = Audited()
    long_a1(h)
    g = h.state.algo.groups[h.one(A1, SetPositionTpsl(BTC_PERP, 6_200_000, 5_800_000)).order_id]
    h.one(A1, CancelOrder(BTC_PERP, g.sl_order_id))
    assert [c["order_id"] for c in h.events("trigger_cancelled")] == [
        g.sl_order_id,
        g.tp_order_id,
    ]
    assert not h.state.algo.groups
    gid = h.one(A1, SetPositionTpsl(BTC_PERP, 6_200_000, 0)).order_id
    assert len(open_orders(h.state, A1)) == 1
    assert h.one(A1, CancelAll(None)).count == 1
    assert gid not in h.state.algo.groups and open_orders(h.state, A1) == []


def test_a_new_position_pair_replaces_the_old_and_cancel_tpsl_removes_it() -> None:
    h = Audited()
    long_a1(h)
    first = h.one(A1, SetPositionTpsl(BTC_PERP, 6_200_000, 5_800_000)).order_id
    second = h.one(A1, SetPositionTpsl(BTC_PERP, 6_300_000, 0)).order_id
    assert h.events("tpsl_cancelled")[0]["reason"] == "replaced"
    assert list(h.state.algo.groups) == [second] and first != second
    h.refused(A2, CancelTpsl(BTC_PERP, second), "unknown_tpsl")  # not A2's
    assert h.one(A1, CancelTpsl(BTC_PERP, second)).code == "ok"
    assert open_orders(h.state, A1) == [] and not h.state.algo.groups


@pytest.mark.parametrize(
    ("tp", "sl", "market", "code"),
    [
        (6_200_000, 6_100_000, BTC_PERP, "tpsl_wrong_side"),  # stop-loss above a long's mark
        (5_900_000, 5_800_000, BTC_PERP, "tpsl_wrong_side"),  # take-profit below
        (0, 0, BTC_PERP, "invalid_order"),
        (10**12, 0, BTC_PERP, "tick_size"),
        (6_200_000, 0, BTC_SPOT, "not_perp"),
        (6_200_000, 0, 9, "unknown_market"),
    ],
)
def test_position_tpsl_refusals(tp: int, sl: int, market: int, code: str) -> None:
    h = Audited()
    long_a1(h)
    h.refused(A1, SetPositionTpsl(market, tp, sl), code)


def test_position_tpsl_without_a_position_is_refused() -> None:
    h = Audited()
    h.block([])
    h.refused(A3, SetPositionTpsl(BTC_PERP, 6_200_000, 5_800_000), "no_position")


# ---- TP/SL attached to an order ---------------------------------------------------------------


def test_attached_tpsl_arms_when_the_order_fills_and_the_stop_closes_the_position() -> None:
    h = Audited()
    ext = PlaceOrderExtended(limit(BTC_PERP, True, 6_000_000, 40), 0, 6_300_000, 5_700_000)
    res = h.one(A1, ext)
    assert res.status == "resting"
    (pending,) = h.state.algo.groups.values()
    assert not pending.armed and pending.parent_order_id == res.order_id
    h.one(A2, limit(BTC_PERP, False, 6_000_000, 25))  # a partial fill arms it
    (armed,) = h.events("tpsl_armed")
    assert armed["size_lots"] == 25
    h.one(A2, limit(BTC_PERP, False, 6_000_000, 15))  # the rest fills: the pair follows
    assert h.events("tpsl_resized")[0]["size_lots"] == 40
    h.one(A3, limit(BTC_PERP, True, 5_700_000, 40))
    h.oracle(BTC_PERP, 5_700_000)
    (fired,) = h.events("trigger_fired")
    assert fired["filled_lots"] == 40 and position(h, A1) == 0
    assert h.events("tpsl_cancelled")[0]["reason"] == "oco"
    assert open_orders(h.state, A1) == [] and not h.state.algo.groups


def test_attached_tpsl_goes_with_a_parent_cancelled_unfilled() -> None:
    h = Audited()
    ext = PlaceOrderExtended(limit(BTC_PERP, True, 5_900_000, 40), 0, 6_300_000, 5_700_000)
    res = h.one(A1, ext)
    h.one(A1, CancelOrder(BTC_PERP, res.order_id))
    assert h.events("tpsl_cancelled")[0]["reason"] == "parent_cancelled"
    assert not h.state.algo.groups


def test_attached_tpsl_on_an_ioc_that_fills_arms_in_the_same_block() -> None:
    h = Audited()
    h.one(A2, limit(BTC_PERP, False, 6_000_000, 30))
    order = limit(BTC_PERP, True, 0, 30, tif=TIF_IOC, kind=KIND_MARKET)
    res = h.one(A1, PlaceOrderExtended(order, 0, 6_300_000, 0))
    assert res.filled_lots == 30
    (armed,) = h.events("tpsl_armed")
    assert armed["sl_order_id"] == 0 and armed["size_lots"] == 30


@pytest.mark.parametrize(
    ("order", "tp", "sl", "code"),
    [
        (limit(BTC_PERP, True, 6_000_000, 10), 5_900_000, 0, "tpsl_wrong_side"),
        (limit(BTC_PERP, False, 6_000_000, 10), 6_100_000, 0, "tpsl_wrong_side"),
        (limit(BTC_PERP, True, 6_000_000, 10, reduce_only=True), 6_100_000, 0, "invalid_order"),
        (trigger(BTC_PERP, True, KIND_STOP_MARKET, 6_500_000, 10), 6_600_000, 0, "invalid_order"),
        (limit(BTC_SPOT, True, 6_000_000, 10), 6_100_000, 0, "not_perp"),
    ],
)
def test_attached_tpsl_refusals(order: Any, tp: int, sl: int, code: str) -> None:
    h = Audited()
    h.block([])
    h.refused(A1, PlaceOrderExtended(order, 0, tp, sl), code)


# ---- TWAP -------------------------------------------------------------------------------------


def book_of_asks(h: Harness, lots: int) -> None:
    h.one(A2, limit(BTC_PERP, False, 6_000_000, lots))


def run_twap_blocks(h: Harness, blocks: int, dt_ms: int = 10_000) -> list[dict[str, Any]]:
    slices: list[dict[str, Any]] = []
    for _ in range(blocks):
        h.block([], dt_ms=dt_ms)
        slices.extend(h.events("twap_slice"))
    return slices


def test_a_twap_places_one_slice_every_30_seconds_until_filled() -> None:
    h = Audited()
    book_of_asks(h, 1_000)
    res = h.one(A1, PlaceTwap(BTC_PERP, True, 100, 2 * MINUTE_MS))  # 4 slices of 25
    assert (res.code, res.status) == ("ok", "running")
    first = h.events("twap_slice")
    assert [(s["slice"], s["size_lots"], s["filled_lots"]) for s in first] == [(1, 25, 25)]
    slices = run_twap_blocks(h, 10)  # 100 s in blocks of 10 s
    assert [(s["slice"], s["size_lots"]) for s in slices] == [(2, 25), (3, 25), (4, 25)]
    assert position(h, A1) == 100 and not h.state.algo.twaps
    times = []
    # One slice per 30 s of block time: the slices came at 30, 60 and 90 s after the first.
    h2 = Audited()
    book_of_asks(h2, 1_000)
    h2.one(A1, PlaceTwap(BTC_PERP, True, 100, 2 * MINUTE_MS))
    start = h2.time_ms
    for _ in range(10):
        h2.block([], dt_ms=10_000)
        if h2.events("twap_slice"):
            times.append(h2.time_ms - start)
    assert times == [30_000, 60_000, 90_000]


def test_a_slice_that_cannot_fill_carries_its_size_to_the_next() -> None:
    h = Audited()
    h.one(A1, PlaceTwap(BTC_PERP, True, 90, 90_000))  # 3 slices; no asks yet
    (s1,) = h.events("twap_slice")
    assert (s1["size_lots"], s1["filled_lots"], s1["code"]) == (30, 0, "no_liquidity")
    book_of_asks(h, 1_000)
    finished = []
    slices = []
    for _ in range(6):
        h.block([], dt_ms=10_000)
        slices.extend(h.events("twap_slice"))
        finished.extend(h.events("twap_finished"))
    assert [(s["size_lots"], s["filled_lots"]) for s in slices] == [(45, 45), (45, 45)]
    assert [(f["reason"], f["filled_lots"]) for f in finished] == [("completed", 90)]


def test_slippage_bounds_every_slice() -> None:
    h = Audited()
    h.one(A2, limit(BTC_PERP, False, 6_010_000, 100))  # 0.17 % above the 6,000,000 reference
    h.one(A1, PlaceTwap(BTC_PERP, True, 40, MINUTE_MS, max_slippage_ppm=1_000))
    (s1,) = h.events("twap_slice")
    assert s1["filled_lots"] == 0  # the ask is beyond 0.1 %
    h.one(A1, PlaceTwap(BTC_PERP, True, 40, MINUTE_MS, max_slippage_ppm=2_000))
    (s2,) = h.events("twap_slice")
    assert s2["filled_lots"] == 20


def test_a_cancelled_twap_places_no_more_slices() -> None:
    h = Audited()
    book_of_asks(h, 1_000)
    tid = h.one(A1, PlaceTwap(BTC_PERP, True, 100, 5 * MINUTE_MS)).order_id
    res = h.one(A1, CancelTwap(BTC_PERP, tid))
    assert (res.code, res.filled_lots) == ("ok", 10)
    assert h.events("twap_finished")[0]["reason"] == "user"
    assert run_twap_blocks(h, 6) == [] and position(h, A1) == 10
    h.refused(A1, CancelTwap(BTC_PERP, tid), "unknown_twap")


def test_a_reduce_only_twap_stops_when_the_position_is_closed() -> None:
    h = Audited()
    long_a1(h, 40)
    h.one(A3, limit(BTC_PERP, True, 6_000_000, 1_000))
    h.one(A1, PlaceTwap(BTC_PERP, False, 100, 5 * MINUTE_MS, reduce_only=True))
    (s1,) = h.events("twap_slice")
    assert s1["filled_lots"] == 10
    finished = []
    for _ in range(12):
        h.block([], dt_ms=10_000)
        finished.extend(h.events("twap_finished"))
    assert position(h, A1) == 0 and not h.state.algo.twaps
    assert [(f["reason"], f["filled_lots"]) for f in finished] == [("position_closed", 40)]


@pytest.mark.parametrize(
    ("action", "code"),
    [
        (PlaceTwap(BTC_PERP, True, 100, 30_000), "invalid_twap"),  # shorter than a minute
        (PlaceTwap(BTC_PERP, True, 100, 25 * 3_600_000), "invalid_twap"),
        (PlaceTwap(BTC_PERP, True, 100, MINUTE_MS, max_slippage_ppm=0), "invalid_twap"),
        (PlaceTwap(BTC_PERP, True, 0, MINUTE_MS), "lot_size"),
        (
            PlaceTwap(BTC_PERP, False, 100, MINUTE_MS, reduce_only=True),
            "reduce_only_would_increase",
        ),
        (PlaceTwap(BTC_SPOT, False, 100, MINUTE_MS, reduce_only=True), "invalid_order"),
        (PlaceTwap(BTC_PERP, True, 2, MINUTE_MS), "min_notional"),
        (PlaceTwap(9, True, 100, MINUTE_MS), "unknown_market"),
        (CancelTwap(BTC_PERP, 12345), "unknown_twap"),
    ],
)
def test_twap_refusals(action: Action, code: str) -> None:
    h = Audited()
    h.block([])
    h.refused(A3, action, code)


def test_the_twap_limit_per_account() -> None:
    h = Audited()
    for _ in range(8):
        assert h.one(A1, PlaceTwap(BTC_PERP, True, 100, 10 * MINUTE_MS)).code == "ok"
    h.refused(A1, PlaceTwap(BTC_PERP, True, 100, 10 * MINUTE_MS), "too_many_twaps")


def randomised_run(rebuild_at: int | None = None) -> tuple[bytes, list[int]]:
    h = Audited()
    book_of_asks(h, 5_000)
    h.one(A1, PlaceTwap(BTC_PERP, True, 1_000, 10 * MINUTE_MS, randomize=True))
    sizes = [s["size_lots"] for s in h.events("twap_slice")]
    for i in range(30):
        if i == rebuild_at:
            h.state = ExchangeState.from_entries(h.genesis, h.state.entries())
        h.block([], dt_ms=25_000)
        sizes.extend(s["size_lots"] for s in h.events("twap_slice"))
    return h.state.digest(), sizes


def test_randomised_slices_are_deterministic_and_survive_a_rebuild() -> None:
    digest, sizes = randomised_run()
    assert (digest, sizes) == randomised_run()
    assert (digest, sizes) == randomised_run(rebuild_at=7)
    assert sum(sizes) == 1_000 and len(sizes) == 20
    assert len(set(sizes[:-1])) > 3  # not the even 50 each
    assert all(35 <= s <= 65 for s in sizes[:-1])


def test_every_record_survives_a_rebuild_from_entries() -> None:
    h = Audited()
    long_a1(h)
    h.one(A1, SetPositionTpsl(BTC_PERP, 6_200_000, 5_800_000))
    h.one(A3, PlaceOrderExtended(limit(BTC_PERP, True, 5_900_000, 10), h.time_ms + 5_000,
                                 6_300_000, 5_500_000))  # fmt: skip
    h.one(A3, PlaceTwap(BTC_PERP, False, 100, 5 * MINUTE_MS, randomize=True))
    clone = ExchangeState.from_entries(h.genesis, h.state.entries())
    audit(clone)
    assert clone.digest() == h.state.digest()
    for dt in (5_000, 30_000, 30_000, 30_000):
        ctx = BlockContext(h.height + 1, h.time_ms + dt, b"")
        h.height, h.time_ms = ctx.height, ctx.timestamp_ms
        r0 = apply_block(h.state, ctx, [])
        r1 = apply_block(clone, ctx, [])
        assert r0.events == r1.events and r0.writes == r1.writes
        assert clone.digest() == h.state.digest()
