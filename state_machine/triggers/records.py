"""Trigger orders: stop-market, stop-limit, take-profit-market, take-profit-limit (perps).

A trigger order waits off the book, holding no margin, until the market's mark price reaches
its trigger price; it is then placed as an ordinary order by its owner (a market order for the
``*_MARKET`` kinds, a GTC limit order at ``price_ticks`` for the ``*_LIMIT`` kinds) and goes
through every normal check, margin included, at that moment.

Direction: a stop buy and a take-profit sell fire when the mark rises to the trigger price or
above; a stop sell and a take-profit buy fire when it falls to the trigger price or below.

Per market, waiting triggers sit in two sorted lists keyed by (trigger price, seq): ``up``
(fire when mark >= trigger) and ``down`` (fire when mark <= trigger). At the end of each block,
after the mark update, the fired ones are taken from the ends of the lists, so a block pays only
for the triggers that fire. When several fire in one block they are placed in a fixed order:
markets by id, then ``up`` triggers from the lowest trigger price, then ``down`` triggers from
the highest, ties by sequence number (placement order).

"Reduce-only by default when attached to a position": a trigger order placed while the account
holds a position on the opposite side (a sell stop under a long) is reduce-only whatever its
flag says; otherwise the flag decides.

Events (one per change of a waiting trigger, in the order the block makes the changes, so the
list is as deterministic as the state): ``trigger_accepted`` when it starts waiting (every field
a client needs to show it as an open order), ``trigger_cancelled`` with the reason (``user``:
cancel by id, by client id or cancel-all; ``liquidation``: its margin unit was liquidated) and
``trigger_fired`` when the mark reaches it (with the code and id of the order then placed; a
refused placement, e.g. a reduce-only trigger whose position is gone, is reported there and the
trigger is gone too). A waiting trigger counts as an open order of its account: against the
open-order limit, in cancel-all and in every API listing.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from typing import TYPE_CHECKING, Any

from state_machine.invariants import check
from state_machine.tx import (
    KIND_STOP_LIMIT,
    KIND_STOP_MARKET,
    KIND_TAKE_PROFIT_LIMIT,
    TIF_GTC,
    TIF_IOC,
    PlaceOrder,
)

if TYPE_CHECKING:  # typing only: the state module holds a TriggerBook
    from state_machine.accounts.records import Account
    from state_machine.state import ExchangeCore

P_TRIGGER = 0x0B


class Trigger:
    __slots__ = (
        "account",
        "client_id",
        "dirty",
        "is_buy",
        "kind",
        "live",
        "market_id",
        "order_id",
        "price_ticks",
        "reduce_only",
        "seq",
        "size_lots",
        "stored",
        "stp",
        "timestamp_ms",
        "trigger_price_ticks",
    )

    def __init__(
        self,
        order_id: int,
        market_id: int,
        account: Account,
        is_buy: bool,
        kind: int,
        price_ticks: int,
        size_lots: int,
        trigger_price_ticks: int,
        reduce_only: bool,
        client_id: int,
        stp: int,
        timestamp_ms: int,
    ) -> None:
        self.order_id = order_id
        self.seq = order_id
        self.market_id = market_id
        self.account = account
        self.is_buy = is_buy
        self.kind = kind
        self.price_ticks = price_ticks
        self.size_lots = size_lots
        self.trigger_price_ticks = trigger_price_ticks
        self.reduce_only = reduce_only
        self.client_id = client_id
        self.stp = stp
        self.timestamp_ms = timestamp_ms
        self.live = True
        self.dirty = False
        self.stored = False

    @property
    def is_limit(self) -> bool:
        """True for the kinds placed as a GTC limit order at ``price_ticks`` when they fire."""
        return self.kind in (KIND_STOP_LIMIT, KIND_TAKE_PROFIT_LIMIT)

    @property
    def is_stop(self) -> bool:
        """True for stops, False for take-profits."""
        return self.kind in (KIND_STOP_MARKET, KIND_STOP_LIMIT)

    @property
    def placed_tif(self) -> int:
        """The time in force of the order placed when it fires."""
        return TIF_GTC if self.is_limit else TIF_IOC

    @property
    def fires_up(self) -> bool:
        """True if it fires when the mark rises to the trigger (stop buy, take-profit sell)."""
        return self.is_buy == self.is_stop

    def state_key(self) -> bytes:
        return (
            bytes((P_TRIGGER,))
            + self.market_id.to_bytes(4, "big")
            + self.order_id.to_bytes(8, "big")
        )

    def state_obj(self) -> list[Any] | None:
        if not self.live:
            return None
        return [
            self.order_id,
            self.account.pubkey,
            self.is_buy,
            self.kind,
            self.price_ticks,
            self.size_lots,
            self.trigger_price_ticks,
            self.reduce_only,
            self.client_id,
            self.stp,
            self.timestamp_ms,
        ]


def trigger_from_entry(st: ExchangeCore, key: bytes, v: list[Any]) -> Trigger:
    mid = int.from_bytes(key[1:5], "big")
    t = Trigger(v[0], mid, st.account(v[1]), v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10])
    return t


class TriggerBook:
    """Waiting triggers of all markets (the lists are derived from the trigger entries)."""

    __slots__ = ("by_id", "down", "up")

    def __init__(self) -> None:
        self.by_id: dict[int, Trigger] = {}
        self.up: dict[int, list[tuple[int, int]]] = {}  # market -> sorted (trigger, seq)
        self.down: dict[int, list[tuple[int, int]]] = {}

    def add(self, t: Trigger) -> None:
        self.by_id[t.order_id] = t
        lst = (self.up if t.fires_up else self.down).setdefault(t.market_id, [])
        insort(lst, (t.trigger_price_ticks, t.seq))
        t.account.triggers[t.order_id] = t

    def remove(self, t: Trigger) -> None:
        del self.by_id[t.order_id]
        lst = (self.up if t.fires_up else self.down)[t.market_id]
        i = bisect_left(lst, (t.trigger_price_ticks, t.seq))
        check(i < len(lst) and lst[i] == (t.trigger_price_ticks, t.seq), "trigger index")
        del lst[i]
        del t.account.triggers[t.order_id]
        t.live = False

    def fired(self, mid: int, mark: int) -> list[Trigger]:
        out: list[Trigger] = []
        up = self.up.get(mid)
        if up:
            n = 0
            while n < len(up) and up[n][0] <= mark:
                n += 1
            out.extend(self.by_id[seq] for _, seq in up[:n])
        down = self.down.get(mid)
        if down:
            n = len(down)
            while n > 0 and down[n - 1][0] >= mark:
                n -= 1
            out.extend(self.by_id[seq] for _, seq in reversed(down[n:]))
        return out


def account_triggers(acct: Account, market_id: int | None = None) -> list[Trigger]:
    """The account's waiting triggers (of one market, or all) by order id: a rebuilt state
    holds them in key order, a replayed one in placement order, so callers must not use the
    dict's order."""
    return sorted(
        (t for t in acct.triggers.values() if market_id is None or t.market_id == market_id),
        key=lambda t: t.order_id,
    )


def open_order_count(acct: Account) -> int:
    """Resting orders and waiting triggers: both are open orders, under the per-account limit,
    in cancel-all and in every listing."""
    return len(acct.orders) + len(acct.triggers)


def trigger_book(st: ExchangeCore) -> TriggerBook:
    tb: TriggerBook | None = st.triggers
    check(tb is not None, "exchange state without a trigger book")
    assert tb is not None
    return tb


def place_trigger(st: ExchangeCore, acct: Account, a: PlaceOrder, size_lots: int) -> Trigger:
    """Store a validated trigger order (the caller checked market, sizes, prices, client id)."""
    pos = acct.positions.get(a.market_id)
    attached = pos is not None and pos.size_lots != 0 and (pos.size_lots > 0) != a.is_buy
    seq = st.next_seq
    st.next_seq = seq + 1
    t = Trigger(
        seq,
        a.market_id,
        acct,
        a.is_buy,
        a.kind,
        a.price_ticks,
        size_lots,
        a.trigger_price_ticks,
        a.reduce_only or attached,
        a.client_id,
        a.stp,
        st.timestamp_ms,
    )
    trigger_book(st).add(t)
    st.touch(t)
    st.events.append(
        (
            "trigger_accepted",
            a.market_id,
            seq,
            acct.pubkey,
            a.is_buy,
            a.kind,
            a.trigger_price_ticks,
            t.price_ticks if t.is_limit else 0,
            size_lots,
            a.client_id,
            t.reduce_only,
        )
    )
    return t


def cancel_trigger(st: ExchangeCore, t: Trigger, reason: str) -> None:
    trigger_book(st).remove(t)
    st.touch(t)
    st.events.append(("trigger_cancelled", t.market_id, t.order_id, t.account.pubkey, reason))
