"""Stateful property tests: the engine against a naive reference exchange.

The reference keeps resting orders in one plain list and finds the best maker by scanning it
(lowest ask / highest bid, then lowest sequence number). It restates the documented rules
(docs/ARCHITECTURE.md, "Exchange state machine") the obvious way: the price band around the
oracle, client ids unique among open orders, reduce-only clipped to the position and capped by
it when filling, post-only, fill-or-kill as a dry run of the match on a copy, self-trade
prevention, amends that keep time priority only for a size decrease at the same price, and the
in-block order (non-order actions, cancels, post-only placements, everything else).

Hypothesis seeds a book, then drives random limit orders (GTC, IOC, FOK, post-only, every
self-trade mode, client ids, reduce-only), market orders (optionally tightened), cancels by id
and by client id, amends, alone or in blocks of several transactions with several actions each
(mixing the classes, sometimes with every validator moving the oracle: those updates run
first). The price band is narrowed to +-12 ticks around the oracle so that it matters.

* ``EngineVsReference``, spot BTC/USDC: the reference also keeps balances, holds and fees (a
  poor account runs out of funds); after every step it compares every balance and fee pool.
* ``PerpEngineVsReference``, BTC-PERP: the reference keeps each account's position as the
  signed sum of its fills; accounts are funded so that the initial-margin check never binds
  (an ``insufficient_margin`` shows up as a code mismatch). After every step it compares every
  position, the open order lots the margin rule counts, each account's USDC against its fill
  cash flows and fees, and the fee pool.

Both compare, after every block, each action's result (code, order id, filled lots, status),
the fills and cancellations in order, the whole book in priority order and its levels, and run
``audit()`` (conservation).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from state_machine.audit import audit
from state_machine.genesis import FundedBalance
from state_machine.queries import book_levels
from state_machine.tx import (
    KIND_LIMIT,
    KIND_MARKET,
    STP_CANCEL_BOTH,
    STP_CANCEL_TAKER,
    TIF_ALO,
    TIF_FOK,
    TIF_GTC,
    TIF_IOC,
    Action,
    AmendOrder,
    CancelByClientId,
    CancelOrder,
    OraclePrice,
    OracleUpdate,
    PlaceOrder,
)
from tests.conftest import examples
from tests.state_machine.helpers import (
    BTC_PERP,
    BTC_SPOT,
    VALIDATORS,
    Harness,
    acct,
    make_genesis,
    tx,
)

P = 6_000_000
PPM = 10**6
BAND_PPM = 2  # the band is P * 2 // 10**6 = 12 ticks either side of the oracle
LOT_BASE = 10**4  # BTC atoms per lot; one tick on one lot is one USDC atom
TAKER_PPM, MAKER_PPM = 450, 150
MIN_NOTIONAL = 10 * 10**6
POOR = acct(5)

Want = tuple[str, int, int, str]  # code, order id, filled lots, status
Spec = tuple[Any, ...]


def fee(amount: int, ppm: int) -> int:
    return -(-amount * ppm // 10**6)


def reject(code: str) -> Want:
    return code, 0, 0, ""


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
    cid: int = 0
    ro: bool = False
    hold: int = 0
    filled: int = 0  # over the order's life (amends keep it)


class RefExchange:
    """Deliberately simple: lists and linear scans, no indexes."""

    def __init__(
        self, perp: bool, balances: dict[tuple[bytes, int], int], oracle: int, next_seq: int
    ) -> None:
        self.perp = perp
        self.orders: list[RefOrder] = []
        self.avail = dict(balances)  # spot only
        self.held: dict[tuple[bytes, int], int] = dict.fromkeys(balances, 0)
        self.fees = {0: 0, 1: 0}
        self.pos: dict[bytes, int] = {}  # perp: signed lots, the sum of the account's fills
        self.cash: dict[bytes, int] = {}  # perp: USDC received minus paid for fills and fees
        self.oracle = oracle
        self.seq = next_seq - 1
        self.trace: list[tuple[Any, ...]] = []  # fills and cancellations, in order

    def band(self) -> tuple[int, int]:
        half = self.oracle * BAND_PPM // PPM
        return self.oracle - half, self.oracle + half

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

    def find(self, who: bytes, oid: int = 0, cid: int = 0) -> RefOrder | None:
        for o in self.orders:
            if o.who == who and ((oid and o.oid == oid) or (cid and o.cid == cid)):
                return o
        return None

    # spot holds: a buy holds its notional in USDC (asset 0), a sell its base (asset 1)

    def _need(self, is_buy: bool, price: int, size: int) -> int:
        if self.perp:
            return 0
        return price * size if is_buy else size * LOT_BASE

    def _hold(self, o: RefOrder, amount: int) -> None:
        d = amount - o.hold
        if d:
            k = (o.who, 0 if o.is_buy else 1)
            self.avail[k] -= d
            self.held[k] += d
            o.hold = amount

    def _free(self, who: bytes, is_buy: bool) -> int:
        return self.avail[(who, 0 if is_buy else 1)]

    def _settle(self, taker: RefOrder, maker: RefOrder, qty: int) -> None:
        price = maker.price
        quote = price * qty
        buyer, seller = (taker, maker) if taker.is_buy else (maker, taker)
        if self.perp:
            for o, sign in ((buyer, 1), (seller, -1)):
                f = fee(quote, TAKER_PPM if o is taker else MAKER_PPM)
                self.pos[o.who] = self.pos.get(o.who, 0) + sign * qty
                self.cash[o.who] = self.cash.get(o.who, 0) - sign * quote - f
                self.fees[0] += f
        else:
            base = qty * LOT_BASE
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
        self.trace.append(("fill", maker.oid, taker.oid, price, qty))

    def _ro_cap(self, o: RefOrder) -> int:
        """Lots a reduce-only order may fill now: the account's opposite position."""
        s = self.pos.get(o.who, 0)
        return max(-s, 0) if o.is_buy else max(s, 0)

    def _drop(self, o: RefOrder, reason: str) -> None:
        self.orders.remove(o)
        self._hold(o, 0)
        self.trace.append(("cancelled", o.oid, o.size, reason))

    def _run(self, o: RefOrder) -> Want:
        """Match, then rest or cancel the remainder."""
        filled = 0
        stop = ""
        while o.size > 0:
            m = self._best_maker(o.is_buy, o.price)
            if m is None:
                break
            if m.who == o.who:
                if o.stp == STP_CANCEL_TAKER:
                    stop = "self_trade"
                    break
                self._drop(m, "self_trade")
                if o.stp == STP_CANCEL_BOTH:
                    stop = "self_trade"
                    break
                continue
            q = min(o.size, m.size)
            if m.ro:
                if self._ro_cap(m) == 0:
                    self._drop(m, "reduce_only")
                    continue
                q = min(q, self._ro_cap(m))
            if o.ro:
                if self._ro_cap(o) == 0:
                    stop = "reduce_only"
                    break
                q = min(q, self._ro_cap(o))
            self._settle(o, m, q)
            for x in (o, m):
                x.size -= q
                x.filled += q
            filled += q
            if m.size == 0:
                self.orders.remove(m)
        if o.size == 0:
            self._hold(o, 0)
            return "ok", o.oid, filled, "filled"
        if not stop and o.tif in (TIF_GTC, TIF_ALO):
            self._hold(o, self._need(o.is_buy, o.price, o.size))
            self.orders.append(o)
            return "ok", o.oid, filled, "partially_filled" if filled else "resting"
        self._hold(o, 0)
        self.trace.append(("cancelled", o.oid, o.size, stop or "ioc"))
        if filled:
            return "ok", o.oid, filled, "cancelled"
        codes = {"": "no_liquidity", "reduce_only": "reduce_only_would_increase"}
        return codes.get(stop, stop), o.oid, 0, "cancelled"

    def _fok_fills(self, o: RefOrder) -> bool:
        """Fill-or-kill: would the order, matched as an IOC on a copy of everything, fill?"""
        sim = copy.deepcopy(self)
        trial = dataclasses.replace(o, tif=TIF_IOC)
        sim._run(trial)
        return trial.size == 0

    def place(
        self,
        who: bytes,
        is_buy: bool,
        kind: int,
        tif: int,
        price: int,
        size: int,
        stp: int,
        cid: int = 0,
        ro: bool = False,
    ) -> Want:
        lo, hi = self.band()
        if kind == KIND_MARKET:
            tif = TIF_FOK if tif == TIF_FOK else TIF_IOC
            worst = hi if is_buy else lo
            price = (min(worst, price) if is_buy else max(worst, price)) if price else worst
            notional_price = self.oracle
        elif not lo <= price <= hi:
            return reject("price_band")
        else:
            notional_price = price
        if cid and self.find(who, cid=cid) is not None:
            return reject("duplicate_client_id")
        if ro:
            if not self.perp:
                return reject("invalid_order")
            s = self.pos.get(who, 0)
            if s == 0 or (s > 0) == is_buy:
                return reject("reduce_only_would_increase")
            size = min(size, abs(s))
        elif notional_price * size < MIN_NOTIONAL:
            return reject("min_notional")
        if tif == TIF_ALO and self._best_maker(is_buy, price) is not None:
            return reject("post_only_would_cross")
        o = RefOrder(self.seq + 1, self.seq + 1, who, is_buy, price, size, tif, stp, cid, ro)
        if tif == TIF_FOK and not self._fok_fills(o):
            return reject("fok_not_filled")
        need = self._need(is_buy, price, size)
        if need and self._free(who, is_buy) < need:
            return reject("insufficient_balance")
        self.seq += 1
        self._hold(o, need)
        return self._run(o)

    def cancel(self, who: bytes, oid: int = 0, cid: int = 0) -> Want:
        o = self.find(who, oid, cid)
        if o is None:
            return reject("unknown_order")
        self._drop(o, "user")
        return "ok", o.oid, o.filled, "cancelled"

    def amend(self, who: bytes, oid: int, price: int, size: int) -> Want:
        o = self.find(who, oid)
        if o is None:
            return reject("unknown_order")
        lo, hi = self.band()
        if not lo <= price <= hi:
            return reject("price_band")
        if not o.ro and price * size < MIN_NOTIONAL:
            return reject("min_notional")
        need = self._need(o.is_buy, price, size)
        if price == o.price and size <= o.size:
            o.size = size
            self._hold(o, need)
            return "ok", oid, 0, "resting"
        if o.tif == TIF_ALO and self._best_maker(o.is_buy, price) is not None:
            return reject("post_only_would_cross")
        if need and self._free(who, o.is_buy) + o.hold < need:
            return reject("insufficient_balance")
        self.orders.remove(o)
        self._hold(o, 0)
        self.seq += 1
        new = dataclasses.replace(o, seq=self.seq, price=price, size=size)
        self._hold(new, need)
        return self._run(new)


def action_class(a: Action) -> int:
    """DESIGN section 4: non-order actions, cancels, post-only placements, everything else."""
    if isinstance(a, OracleUpdate):
        return 0
    if isinstance(a, (CancelOrder, CancelByClientId)):
        return 1
    return 2 if isinstance(a, PlaceOrder) and a.tif == TIF_ALO else 3


def engine_trace(events: list[Any], market: int) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for e in events:
        if e[0] == "fill" and e[1] == market:
            out.append(("fill", e[6], e[5], e[2], e[3]))
        elif e[0] == "order_cancelled" and e[1] == market:
            out.append(("cancelled", e[2], e[4], e[5]))
    return out


# Action specs: drawn by hypothesis, turned into an engine action and a reference call when a
# step runs (amends and cancels pick among the account's open orders at that moment). Prices
# are P -+ a distance from the touch: mostly passive, sometimes crossing or outside the band.
WHO = st.integers(0, 3)
AWAY = st.one_of(st.integers(-2, 8), st.integers(-16, 16))
SIZE = st.integers(1, 40)
STP = st.sampled_from([0, 0, 1, 2])
CID = st.sampled_from([0, 0, 0, 1, 2, 3])
# "close": reduce-only on the side that reduces the account's position, if it has one.
RO = st.sampled_from([False, False, False, False, True, "close", "close"])
LIMIT_ORDERS = st.tuples(
    st.just("limit"),
    st.booleans(),
    AWAY,
    SIZE,
    st.sampled_from([TIF_GTC, TIF_GTC, TIF_GTC, TIF_IOC, TIF_FOK, TIF_ALO]),
    STP,
    CID,
    RO,
)
MARKET_ORDERS = st.tuples(
    st.just("market"),
    st.booleans(),
    st.none() | AWAY,  # an optional tighter worst price
    st.integers(1, 20),
    st.sampled_from([TIF_IOC, TIF_IOC, TIF_FOK]),
    STP,
    CID,
    RO,
)
CANCELS = st.tuples(st.just("cancel"), st.integers(0, 50), st.booleans())
AMENDS = st.tuples(st.just("amend"), st.integers(0, 50), AWAY, st.integers(-5, 5))
ANY_ACTION = st.sampled_from([LIMIT_ORDERS] * 4 + [MARKET_ORDERS, CANCELS, AMENDS]).flatmap(
    lambda s: s
)
# A first block of passive orders, so that there is a book to trade against.
RESTING = st.tuples(
    st.just("limit"),
    st.booleans(),
    st.integers(0, 8),
    SIZE,
    st.sampled_from([TIF_GTC, TIF_ALO]),
    st.just(0),
    st.just(0),
    st.just(False),
)


class BookModel(RuleBasedStateMachine):
    MARKET: ClassVar[int]
    PERP: ClassVar[bool]
    ACCOUNTS: ClassVar[tuple[bytes, ...]]
    EXTRA_BALANCES: ClassVar[tuple[FundedBalance, ...]] = ()

    def __init__(self) -> None:
        super().__init__()
        g = make_genesis(3)
        markets = tuple(
            dataclasses.replace(m, price_band_ppm=BAND_PPM) if m.market_id == self.MARKET else m
            for m in g.markets
        )
        self.h = Harness(
            dataclasses.replace(g, markets=markets, balances=g.balances + self.EXTRA_BALANCES)
        )
        self.setup_accounts()
        self.usdc0 = {who: self.h.bal(who, 0)[0] for who in self.ACCOUNTS}
        balances = {}
        if not self.PERP:
            balances = {(w, a): self.h.bal(w, a)[0] for w in self.ACCOUNTS for a in (0, 1)}
        self.ref = RefExchange(self.PERP, balances, P, self.h.state.next_seq)
        self._block([], oracle=0)  # the validators set the oracle: the band is defined

    def _build(self, who: bytes, spec: Spec) -> tuple[Action, Callable[[], Want]]:
        ref, m = self.ref, self.MARKET
        kind = spec[0]
        if kind in ("limit", "market"):
            _, is_buy, away, size, tif, stp, cid, ro = spec
            if ro == "close":  # on the side that reduces the position (spot: a plain order)
                ro = self.PERP
                is_buy = ref.pos.get(who, 0) < 0 if ro else is_buy
            k = KIND_LIMIT if kind == "limit" else KIND_MARKET
            price = 0 if away is None else (P - away if is_buy else P + away)
            a = PlaceOrder(m, is_buy, k, tif, price, size, 0, ro, cid, stp)
            return a, lambda: ref.place(who, is_buy, k, tif, price, size, stp, cid, ro)
        mine = [o for o in ref.orders if o.who == who]
        pick = spec[1]
        if kind == "cancel" and spec[2]:
            cid = pick % 4  # 0 (none) and client ids that may not be open
            return CancelByClientId(m, cid), lambda: ref.cancel(who, cid=cid)
        o = mine[pick % len(mine)] if mine and pick < 45 else None
        oid = o.oid if o is not None else 10**6 + pick
        if kind == "cancel":
            return CancelOrder(m, oid), lambda: ref.cancel(who, oid)
        _, _, away, dsize = spec
        if o is not None and pick % 3 == 0:
            price = o.price
        else:
            price = P - away if o is None or o.is_buy else P + away
        size = max(1, (o.size if o is not None else 5) + dsize)
        return AmendOrder(m, oid, price, size), lambda: ref.amend(who, oid, price, size)

    def setup_accounts(self) -> None:
        """Blocks run before the model starts (sub-accounts and agents in a subclass)."""

    def envelope(self, who: bytes) -> tuple[bytes, list[Action]]:
        """The signer of a transaction acting for ``who`` and the actions before the model's
        (a subclass signs for sub-accounts and through agents with ActAs)."""
        return who, []

    def _block(self, txs: list[tuple[int, list[Spec]]], oracle: int | None = None) -> None:
        """One block: the transactions, then (if given) every validator moving the oracle."""
        built: list[tuple[bytes, list[tuple[Action, Callable[[], Want]]]]] = [
            (self.ACCOUNTS[w % len(self.ACCOUNTS)], []) for w, _ in txs
        ]
        for (who, acts), (_, specs) in zip(built, txs, strict=True):
            acts.extend(self._build(who, s) for s in specs)
        envelopes = [self.envelope(who) for who, _ in built]
        wire = [
            tx(signer, [*pre, *(a for a, _ in acts)], self.h.next_nonce())
            for (signer, pre), (_, acts) in zip(envelopes, built, strict=True)
        ]
        if oracle is not None:
            update = OracleUpdate((OraclePrice(self.MARKET, P + oracle),))
            wire += [tx(v, [update], self.h.next_nonce()) for v in VALIDATORS]
            self.ref.oracle = P + oracle  # class (a): before any order in the block
        res = self.h.block(wire)
        steps = sorted(
            (
                (action_class(a), ti, ai, run)
                for ti, (_, acts) in enumerate(built)
                for ai, (a, run) in enumerate(acts)
            ),
            key=lambda s: s[0],
        )
        want = {(ti, ai): run() for _, ti, ai, run in steps}
        for (ti, ai), w in want.items():
            r = res.tx_results[ti].actions[ai + len(envelopes[ti][1])]
            assert (r.code, r.order_id, r.filled_lots, r.status) == w, (ti, ai, r, w)
        for tr in res.tx_results[len(built) :]:
            assert tr.actions[0].code == "ok", tr.actions[0]
        trace = engine_trace(res.events, self.MARKET)
        assert trace == self.ref.trace, (trace, self.ref.trace)
        self.ref.trace = []

    def _owner(self, who: int, pick: int) -> int:
        """Mostly the owner of an open order, so that cancels and amends find one."""
        orders = self.ref.orders
        if orders and pick < 40:
            return self.ACCOUNTS.index(orders[pick % len(orders)].who)
        return who

    @initialize(
        orders=st.lists(st.tuples(WHO, st.lists(RESTING, min_size=1, max_size=5)), max_size=6)
    )
    def seed_book(self, orders: list[tuple[int, list[Spec]]]) -> None:
        self._block(orders)

    @rule(who=WHO, spec=ANY_ACTION)
    def act(self, who: int, spec: Spec) -> None:
        if spec[0] in ("cancel", "amend"):
            who = self._owner(who, spec[1])
        self._block([(who, [spec])])

    @rule(
        txs=st.lists(
            st.tuples(WHO, st.lists(ANY_ACTION, min_size=1, max_size=4)), min_size=1, max_size=3
        ),
        oracle=st.none() | st.integers(-6, 6),
    )
    def batch(self, txs: list[tuple[int, list[Spec]]], oracle: int | None) -> None:
        self._block(txs, oracle)

    @invariant()
    def same_book(self) -> None:
        book = self.h.state.books[self.MARKET]
        levels = book_levels(self.h.state, self.MARKET, depth=1000)
        assert levels is not None
        for side, is_buy in ((book.bids, True), (book.asks, False)):
            engine = [
                (
                    o.order_id,
                    o.account.pubkey,
                    o.price_ticks,
                    o.size_lots,
                    o.client_id,
                    o.reduce_only,
                )
                for o in side.iter_orders()
            ]
            ref = sorted(
                (o for o in self.ref.orders if o.is_buy == is_buy),
                key=lambda o: (-o.price if is_buy else o.price, o.seq),
            )
            assert engine == [(o.oid, o.who, o.price, o.size, o.cid, o.ro) for o in ref]
            agg: dict[int, list[int]] = {}
            for o in ref:
                agg.setdefault(o.price, [o.price, 0, 0])
                agg[o.price][1] += o.size
                agg[o.price][2] += 1
            assert levels["bids" if is_buy else "asks"] == list(agg.values())
        audit(self.h.state)


class EngineVsReference(BookModel):
    MARKET = BTC_SPOT
    PERP = False
    ACCOUNTS = (acct(1), acct(2), acct(3), POOR)
    EXTRA_BALANCES = (FundedBalance(POOR, 0, 100 * 10**6), FundedBalance(POOR, 1, 5 * LOT_BASE))

    @invariant()
    def same_balances(self) -> None:
        for who in self.ACCOUNTS:
            for asset in (0, 1):
                got = self.h.bal(who, asset)
                want = (self.ref.avail[(who, asset)], self.ref.held[(who, asset)])
                assert got == want, (who.hex()[:4], asset, got, want)
        assert self.h.state.fee_pools[0].amount_atoms == self.ref.fees[0]
        assert self.h.state.fee_pools[1].amount_atoms == self.ref.fees[1]


class PerpEngineVsReference(BookModel):
    MARKET = BTC_PERP
    PERP = True
    ACCOUNTS = (acct(1), acct(2), acct(3))

    @invariant()
    def same_positions(self) -> None:
        for who in self.ACCOUNTS:
            a = self.h.state.accounts.get(who)
            pos = a.positions.get(self.MARKET) if a is not None else None
            size, entry, buys, sells = (
                (pos.size_lots, pos.entry_value, pos.buy_lots, pos.sell_lots)
                if pos
                else (0, 0, 0, 0)
            )
            assert size == self.ref.pos.get(who, 0), (who.hex()[:4], size, self.ref.pos)
            mine = [o for o in self.ref.orders if o.who == who and not o.ro]
            assert buys == sum(o.size for o in mine if o.is_buy)
            assert sells == sum(o.size for o in mine if not o.is_buy)
            # Realised PnL is the cash flow minus the basis still open: what the account paid
            # and received for its fills, less fees, equals its USDC change minus that basis.
            avail, held = self.h.bal(who, 0)
            assert held == 0
            assert avail - entry == self.usdc0[who] + self.ref.cash.get(who, 0)
            assert size != 0 or entry == 0
        assert self.h.state.fee_pools[0].amount_atoms == self.ref.fees[0]


EngineVsReference.TestCase.settings = settings(
    max_examples=examples(150), stateful_step_count=50, deadline=None
)
TestEngineVsReference = EngineVsReference.TestCase
PerpEngineVsReference.TestCase.settings = settings(
    max_examples=examples(150), stateful_step_count=50, deadline=None
)
TestPerpEngineVsReference = PerpEngineVsReference.TestCase
