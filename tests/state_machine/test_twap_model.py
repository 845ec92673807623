"""TWAPs against a reference model (Hypothesis stateful test).

The model restates the documented schedule on its own: ``min(duration / 30 s, size)`` slices,
the first in the accepting block, then one in each block at or after every further 30 s of
block time; each slice the remaining size over the slices left (rounded up), the last the
rest, at most the market's largest order; done when filled or after the last slice. A maker
keeps deep quotes on both sides at the reference price, so every slice fills entirely and the
engine's progress must equal the model's after every block: slices placed, lots filled, the
next slice time, the TWAPs still running and their order. Cancels and randomised TWAPs (whose
slices the model checks only for their bounds) are mixed in; the whole state is audited after
every block.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from state_machine.audit import audit
from state_machine.tx import CancelAll, CancelTwap, PlaceTwap
from tests.conftest import examples
from tests.state_machine.helpers import BTC_PERP, Harness, acct, limit

SLICE_MS = 30_000
MAKER = acct(1)
TAKERS = (acct(2), acct(3))
PRICE = 6_000_000  # the genesis reference price of BTC-PERP


@dataclass
class RefTwap:
    twap_id: int
    owner: bytes
    size: int
    total: int
    randomize: bool
    next_ms: int
    done: int = 0
    filled: int = 0


def ref_slice(t: RefTwap, max_lots: int) -> int:
    remaining = t.size - t.filled
    left = t.total - t.done
    lots = remaining if left <= 1 else -(-remaining // left)
    return min(lots, max_lots)


class TwapModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.h = Harness()
        self.max_lots = self.h.state.markets[BTC_PERP].max_order_lots
        self.ref: dict[int, RefTwap] = {}
        self.quote()

    def quote(self) -> None:
        """Fresh deep quotes from the maker on both sides at the reference price."""
        self.h.do(
            MAKER,
            CancelAll(BTC_PERP),
            limit(BTC_PERP, True, PRICE - 100, 10_000),
            limit(BTC_PERP, False, PRICE + 100, 10_000),
        )
        self.step_ref(self.h.last)

    def step_ref(self, result: object) -> None:
        """Advance the model over the block just applied (one slice per due TWAP)."""
        now = self.h.time_ms
        due = sorted((t.next_ms, i) for i, t in self.ref.items() if t.next_ms <= now)
        slices = self.h.events("twap_slice")
        for _, i in due:
            t = self.ref[i]
            (got,) = [s for s in slices if s["twap_id"] == i]
            want = ref_slice(t, self.max_lots)
            if t.randomize and t.total - t.done > 1:
                even = want
                assert 1 <= got["size_lots"] <= t.size - t.filled
                assert got["size_lots"] <= max(even * 12 // 10, 1) + 1
                want = got["size_lots"]
            assert (got["size_lots"], got["filled_lots"], got["code"]) == (want, want, "ok")
            t.done += 1
            t.filled += want
            if t.filled >= t.size or t.done >= t.total:
                del self.ref[i]
            else:
                t.next_ms += SLICE_MS
        assert len(slices) == len(due)

    @rule(
        taker=st.sampled_from(TAKERS),
        is_buy=st.booleans(),
        size=st.integers(1, 400),
        duration_s=st.integers(60, 600),
        randomize=st.booleans(),
    )
    def place(
        self, taker: bytes, is_buy: bool, size: int, duration_s: int, randomize: bool
    ) -> None:
        if sum(1 for t in self.ref.values() if t.owner == taker) >= 8:
            return
        duration = duration_s * 1000
        res = self.h.one(
            taker, PlaceTwap(BTC_PERP, is_buy, size, duration, randomize, False, 10_000)
        )
        if res.code == "min_notional":
            self.step_ref(self.h.last)
            return
        assert res.code == "ok", res
        total = max(1, min(duration // SLICE_MS, size))
        # Placed in this block: its first slice is due at once (run with the block's others).
        self.ref[res.order_id] = RefTwap(res.order_id, taker, size, total, randomize, 0)
        self.ref[res.order_id].next_ms = self.h.time_ms
        self.step_ref(self.h.last)

    @rule(dt_ms=st.integers(500, 70_000))
    def advance(self, dt_ms: int) -> None:
        self.h.block([], dt_ms=dt_ms)
        self.step_ref(self.h.last)
        self.quote()

    @rule(pick=st.integers(0, 10**6))
    def cancel(self, pick: int) -> None:
        if not self.ref:
            return
        tid = sorted(self.ref)[pick % len(self.ref)]
        t = self.ref.pop(tid)
        res = self.h.one(t.owner, CancelTwap(BTC_PERP, tid))
        assert (res.code, res.filled_lots) == ("ok", t.filled)
        self.step_ref(self.h.last)

    @invariant()
    def same_progress(self) -> None:
        engine = self.h.state.algo.twaps
        assert sorted(engine) == sorted(self.ref)
        for i, t in self.ref.items():
            e = engine[i]
            assert (e.slices_done, e.filled_lots, e.next_slice_ms) == (t.done, t.filled, t.next_ms)
        audit(self.h.state)


TwapModel.TestCase.settings = settings(
    max_examples=examples(40), stateful_step_count=30, deadline=None
)
TestTwapModel = TwapModel.TestCase
