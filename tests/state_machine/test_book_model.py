"""Stateful property test: the engine against a naive reference order book.

The reference keeps resting orders in one plain list and finds the best maker by scanning it
(lowest ask / highest bid, then lowest sequence number), with spot balances, holds and fees
computed the obvious way. Hypothesis drives random adds (GTC, IOC, FOK, post-only, every
self-trade mode, a poor account that runs out of funds), cancels and amends on the BTC/USDC
market, one transaction per block, and after every step compares result codes, fills, the
whole book in priority order, every balance and the fee pools.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from state_machine.audit import audit
from state_machine.genesis import FundedBalance
from state_machine.tx import TIF_ALO, TIF_FOK, TIF_GTC, TIF_IOC, AmendOrder, CancelOrder
from tests.state_machine.helpers import BTC_SPOT, Harness, acct, limit, make_genesis

P = 6_000_000
LOT_BASE = 10**4
TAKER_PPM, MAKER_PPM = 450, 150
MIN_NOTIONAL = 10 * 10**6
ACCOUNTS = [acct(1), acct(2), acct(3), acct(5)]  # acct(5) is poor
POOR = acct(5)


def fee(amount: int, ppm: int) -> int:
    return -(-amount * ppm // 10**6)


@dataclass
class RefOrder:
    oid: int
    seq: int
    who: bytes
    is_buy: bool
    price: int
    size: int
    tif: int
    stp: int
    hold: int = 0
    filled: int = 0  # over the order's life (amends keep it)


class RefExchange:
    """Deliberately simple: lists and linear scans, no indexes."""

    def __init__(self, balances: dict[tuple[bytes, int], int]) -> None:
        self.orders: list[RefOrder] = []
        self.avail = dict(balances)
        self.held: dict[tuple[bytes, int], int] = dict.fromkeys(balances, 0)
        self.fees = {0: 0, 1: 0}
        self.seq = 0
        self.fills: list[tuple[int, int, int, int]] = []

    def _best_maker(self, is_buy: bool, limit_price: int) -> RefOrder | None:
        best = None
        for o in self.orders:
            if o.is_buy == is_buy:
                continue
            if (o.price > limit_price) if is_buy else (o.price < limit_price):
                continue
            if best is None:
                best = o
                continue
            better = o.price < best.price if is_buy else o.price > best.price
            if better or (o.price == best.price and o.seq < best.seq):
                best = o
        return best

    def _hold_asset(self, is_buy: bool) -> int:
        return 0 if is_buy else 1

    def _release(self, o: RefOrder) -> None:
        k = (o.who, self._hold_asset(o.is_buy))
        self.held[k] -= o.hold
        self.avail[k] += o.hold
        o.hold = 0

    def _settle(self, taker: RefOrder, maker: RefOrder, qty: int) -> None:
        price = maker.price
        quote = price * qty
        base = qty * LOT_BASE
        buyer, seller = (taker, maker) if taker.is_buy else (maker, taker)
        bfee = fee(base, TAKER_PPM if buyer is taker else MAKER_PPM)
        sfee = fee(quote, TAKER_PPM if seller is taker else MAKER_PPM)
        self.held[(buyer.who, 0)] -= quote
        buyer.hold -= quote
        self.avail[(buyer.who, 1)] += base - bfee
        self.held[(seller.who, 1)] -= base
        seller.hold -= base
        self.avail[(seller.who, 0)] += quote - sfee
        self.fees[1] += bfee
        self.fees[0] += sfee
        self.fills.append((maker.oid, taker.oid, price, qty))

    def _fok_ok(self, who: bytes, is_buy: bool, price: int, size: int, stp: int) -> bool:
        skipped: list[int] = []
        need = size
        while need > 0:
            cands = [o for o in self.orders if o.oid not in skipped]
            saved = self.orders
            self.orders = cands
            m = self._best_maker(is_buy, price)
            self.orders = saved
            if m is None:
                return False
            if m.who == who and stp != 0:
                return False
            if m.who != who:
                need -= m.size
            skipped.append(m.oid)
        return True

    def _run(self, o: RefOrder) -> tuple[str, int, str]:
        """Match, then rest or cancel; returns (code, filled, status)."""
        filled = 0
        stop = ""
        while o.size > 0:
            m = self._best_maker(o.is_buy, o.price)
            if m is None:
                break
            if m.who == o.who:
                if o.stp == 1:
                    stop = "self_trade"
                    break
                self.orders.remove(m)
                self._release(m)
                if o.stp == 2:
                    stop = "self_trade"
                    break
                continue
            q = min(o.size, m.size)
            self._settle(o, m, q)
            o.size -= q
            m.size -= q
            m.filled += q
            o.filled += q
            filled += q
            if m.size == 0:
                self.orders.remove(m)
        if o.size == 0:
            self._release(o)
            return "ok", filled, "filled"
        if not stop and o.tif in (TIF_GTC, TIF_ALO):
            need = o.price * o.size if o.is_buy else o.size * LOT_BASE
            excess = o.hold - need
            k = (o.who, self._hold_asset(o.is_buy))
            self.held[k] -= excess
            self.avail[k] += excess
            o.hold = need
            self.orders.append(o)
            return "ok", filled, "partially_filled" if filled else "resting"
        self._release(o)
        if filled:
            return "ok", filled, "cancelled"
        return (stop or "no_liquidity"), 0, "cancelled"

    def place(self, who: bytes, is_buy: bool, price: int, size: int, tif: int, stp: int) -> Any:
        if price * size < MIN_NOTIONAL:
            return "min_notional", 0, ""
        if tif == TIF_ALO and self._best_maker(is_buy, price) is not None:
            return "post_only_would_cross", 0, ""
        if tif == TIF_FOK and not self._fok_ok(who, is_buy, price, size, stp):
            return "fok_not_filled", 0, ""
        hold = price * size if is_buy else size * LOT_BASE
        k = (who, self._hold_asset(is_buy))
        if self.avail[k] < hold:
            return "insufficient_balance", 0, ""
        self.seq += 1
        o = RefOrder(self.seq, self.seq, who, is_buy, price, size, tif, stp, hold)
        self.avail[k] -= hold
        self.held[k] += hold
        return self._run(o)

    def find(self, who: bytes, oid: int) -> RefOrder | None:
        for o in self.orders:
            if o.oid == oid and o.who == who:
                return o
        return None

    def cancel(self, who: bytes, oid: int) -> Any:
        o = self.find(who, oid)
        if o is None:
            return "unknown_order", 0, ""
        self.orders.remove(o)
        self._release(o)
        return "ok", o.filled, "cancelled"

    def amend(self, who: bytes, oid: int, price: int, size: int) -> Any:
        o = self.find(who, oid)
        if o is None:
            return "unknown_order", 0, ""
        if price * size < MIN_NOTIONAL:
            return "min_notional", 0, ""
        k = (who, self._hold_asset(o.is_buy))
        need = price * size if o.is_buy else size * LOT_BASE
        if price == o.price and size <= o.size:
            self.held[k] -= o.hold - need
            self.avail[k] += o.hold - need
            o.hold = need
            o.size = size
            return "ok", 0, "resting"
        if o.tif == TIF_ALO and self._best_maker(o.is_buy, price) is not None:
            return "post_only_would_cross", 0, ""
        if self.avail[k] + o.hold < need:
            return "insufficient_balance", 0, ""
        self.orders.remove(o)
        self._release(o)
        self.seq += 1
        new = RefOrder(oid, self.seq, who, o.is_buy, price, size, o.tif, o.stp, need, o.filled)
        self.avail[k] -= need
        self.held[k] += need
        return self._run(new)


class EngineVsReference(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        g = make_genesis(3)
        g = type(g)(
            **{
                **{f: getattr(g, f) for f, _ in g.WIRE},
                "balances": (
                    *g.balances,
                    FundedBalance(POOR, 0, 100 * 10**6),
                    FundedBalance(POOR, 1, 5 * LOT_BASE),
                ),
            }
        )
        self.h = Harness(g)
        balances = {}
        for who in ACCOUNTS:
            for asset in (0, 1):
                balances[(who, asset)] = self.h.bal(who, asset)[0]
        self.ref = RefExchange(balances)

    def _compare(self, got: Any, want: tuple[str, int, str]) -> None:
        code, filled, status = want
        assert got.code == code, (got, want)
        if code == "ok":
            assert (got.filled_lots, got.status) == (filled, status), (got, want)
        assert self.h.last is not None
        fills = [(e[6], e[5], e[2], e[3]) for e in self.h.last.events if e[0] == "fill"]
        assert fills == self.ref.fills, (fills, self.ref.fills)
        self.ref.fills = []

    @rule(
        who=st.sampled_from(ACCOUNTS),
        is_buy=st.booleans(),
        off=st.integers(-6, 6),
        size=st.integers(1, 40),
        tif=st.sampled_from([TIF_GTC, TIF_GTC, TIF_IOC, TIF_FOK, TIF_ALO]),
        stp=st.sampled_from([0, 0, 1, 2]),
    )
    def place(self, who: bytes, is_buy: bool, off: int, size: int, tif: int, stp: int) -> None:
        price = P + off
        got = self.h.one(who, limit(BTC_SPOT, is_buy, price, size, tif=tif, stp=stp))
        self._compare(got, self.ref.place(who, is_buy, price, size, tif, stp))

    @rule(who=st.sampled_from(ACCOUNTS), pick=st.integers(0, 50))
    def cancel(self, who: bytes, pick: int) -> None:
        mine = [o.oid for o in self.ref.orders if o.who == who]
        oid = mine[pick % len(mine)] if mine and pick < 45 else 10**6 + pick
        got = self.h.one(who, CancelOrder(BTC_SPOT, oid))
        self._compare(got, self.ref.cancel(who, oid))

    @rule(
        who=st.sampled_from(ACCOUNTS),
        pick=st.integers(0, 50),
        off=st.integers(-6, 6),
        dsize=st.integers(-5, 5),
    )
    def amend(self, who: bytes, pick: int, off: int, dsize: int) -> None:
        mine = [o for o in self.ref.orders if o.who == who]
        if not mine:
            return
        o = mine[pick % len(mine)]
        price = o.price if pick % 3 == 0 else P + off
        size = max(1, o.size + dsize)
        got = self.h.one(who, AmendOrder(BTC_SPOT, o.oid, price, size))
        self._compare(got, self.ref.amend(who, o.oid, price, size))

    @invariant()
    def same_book_and_balances(self) -> None:
        book = self.h.state.books[BTC_SPOT]
        for side, is_buy in ((book.bids, True), (book.asks, False)):
            engine = [(o.order_id, o.price_ticks, o.size_lots) for o in side.iter_orders()]
            ref = sorted(
                (o for o in self.ref.orders if o.is_buy == is_buy),
                key=lambda o: (-o.price if is_buy else o.price, o.seq),
            )
            assert engine == [(o.oid, o.price, o.size) for o in ref]
        for who in ACCOUNTS:
            for asset in (0, 1):
                got = self.h.bal(who, asset)
                want = (self.ref.avail[(who, asset)], self.ref.held[(who, asset)])
                assert got == want, (who.hex()[:4], asset, got, want)
        assert self.h.state.fee_pools[0].amount_atoms == self.ref.fees[0]
        assert self.h.state.fee_pools[1].amount_atoms == self.ref.fees[1]
        audit(self.h.state)


EngineVsReference.TestCase.settings = settings(
    max_examples=150, stateful_step_count=50, deadline=None
)
TestEngineVsReference = EngineVsReference.TestCase
