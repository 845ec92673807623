"""Order books: price levels with time priority, built for a Python hot loop.

Theory of operation
-------------------
A book has two sides. Each side maps ``price_ticks -> Level`` and keeps a sorted list of level
keys for bisect, arranged so that the *best* level is always the last element (``keys[-1]``):
bids store the price (ascending, best = highest), asks store the negated price (ascending, best
= lowest). Taking or dropping the best level is then ``list.pop()``, O(1), and a new level is one
``bisect.insort`` into a list of at most a few thousand ints (a memmove, fast in practice).

A level holds its orders in a ``deque`` in time priority (the order's ``seq``, a chain-wide
counter, increases along the deque). Cancels are *lazy*: a cancelled order is marked dead
(``live = False``) and stays in the deque until matching reaches it at the front, so a cancel
never scans a level. The level keeps exact ``total_lots`` and ``live_count`` of its live orders,
so depth queries never look at dead entries. When ``live_count`` reaches zero the whole level
(dead entries included) is dropped; when dead entries outnumber live ones by a margin, the
deque is compacted, so memory stays bounded by live orders.

Invariants (checked by the tests' reference book and by :meth:`Book.check_invariants`):
* every key in ``keys`` has a level with ``live_count > 0`` and vice versa;
* ``total_lots`` is the sum of the live orders' remaining ``size_lots``;
* within a level, live orders appear in increasing ``seq``;
* a live order's ``level`` is the level that holds it.

The book knows nothing about accounts, balances or margin; the exchange module does that.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from struct import Struct
from typing import TYPE_CHECKING, Any

from state_machine.invariants import InvariantError, check

if TYPE_CHECKING:
    from state_machine.accounts.records import Account

COMPACT_MIN_DEAD = 32
# An order's state key; one precompiled struct is twice as fast as to_bytes and concatenation
# (the key is built for every order a block writes, by take_writes directly: see state_key).
ORDER_KEY = Struct(">BIQ").pack


class Order:
    """A resting (or in-flight) order. ``size_lots`` is what remains open."""

    __slots__ = (
        "account",
        "client_id",
        "dirty",
        "filled_lots",
        "hold_atoms",
        "is_buy",
        "kind",
        "level",
        "live",
        "market_id",
        "order_id",
        "orig_lots",
        "price_ticks",
        "reduce_only",
        "seq",
        "size_lots",
        "stored",
        "stp",
        "tif",
        "timestamp_ms",
    )

    def __init__(
        self,
        order_id: int,
        seq: int,
        market_id: int,
        account: Account,
        is_buy: bool,
        price_ticks: int,
        size_lots: int,
        client_id: int,
        tif: int,
        reduce_only: bool,
        stp: int,
        timestamp_ms: int,
        kind: int = 0,
    ) -> None:
        self.order_id = order_id
        self.seq = seq
        self.market_id = market_id
        self.account = account
        self.is_buy = is_buy
        self.price_ticks = price_ticks
        self.size_lots = size_lots
        self.orig_lots = size_lots
        self.filled_lots = 0
        self.client_id = client_id
        self.tif = tif
        self.reduce_only = reduce_only
        self.stp = stp
        self.timestamp_ms = timestamp_ms
        self.kind = kind
        self.hold_atoms = 0
        self.live = False
        self.level: Level | None = None
        self.dirty = False
        self.stored = False

    # state entry -------------------------------------------------------------------------
    def state_key(self) -> bytes:
        """0x03, market id (u32), order id (u64), big-endian."""
        return ORDER_KEY(0x03, self.market_id, self.order_id)

    def state_obj(self) -> list[Any] | None:
        if not self.live:
            return None
        return [
            self.order_id,
            self.seq,
            self.account.pubkey,
            self.is_buy,
            self.price_ticks,
            self.size_lots,
            self.orig_lots,
            self.filled_lots,
            self.client_id,
            self.tif,
            self.reduce_only,
            self.stp,
            self.hold_atoms,
            self.timestamp_ms,
            self.kind,
        ]

    @classmethod
    def from_state(cls, market_id: int, v: list[Any], account: Account) -> Order:
        """The inverse of :meth:`state_obj` (``account`` is the record of ``v[2]``)."""
        o = cls(v[0], v[1], market_id, account, v[3], v[4], v[5], v[8], v[9], v[10], v[11], v[13],
                v[14])  # fmt: skip
        o.orig_lots, o.filled_lots, o.hold_atoms = v[6], v[7], v[12]
        o.stored = True
        return o

    def __repr__(self) -> str:
        side = "B" if self.is_buy else "S"
        return f"Order#{self.order_id}({side} {self.size_lots}@{self.price_ticks} seq={self.seq})"


class Level:
    __slots__ = ("dead_count", "live_count", "orders", "price_ticks", "total_lots")

    def __init__(self, price_ticks: int) -> None:
        self.price_ticks = price_ticks
        self.orders: deque[Order] = deque()
        self.total_lots = 0
        self.live_count = 0
        self.dead_count = 0


class BookSide:
    """One side of a book. ``keys[-1]`` is the best level's key (see module docstring)."""

    __slots__ = ("is_bid", "keys", "levels")

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.levels: dict[int, Level] = {}
        self.keys: list[int] = []

    def best_price(self) -> int:
        """Best price in ticks, or 0 if the side is empty."""
        keys = self.keys
        if not keys:
            return 0
        k = keys[-1]
        return k if self.is_bid else -k

    def add(self, order: Order) -> None:
        """Append a live order at the back of its price level."""
        price = order.price_ticks
        level = self.levels.get(price)
        if level is None:
            level = Level(price)
            self.levels[price] = level
            insort(self.keys, price if self.is_bid else -price)
        level.orders.append(order)
        level.total_lots += order.size_lots
        level.live_count += 1
        order.level = level
        order.live = True

    def remove(self, order: Order) -> None:
        """Mark a live order dead (lazy removal); drop or compact its level as needed."""
        level = order.level
        if level is None or not order.live:  # check(), without a call per cancel
            raise InvariantError("remove of an order that is not resting")
        order.live = False
        order.level = None
        level.total_lots -= order.size_lots
        level.live_count -= 1
        if level.live_count == 0:
            self.drop_level(level)
        else:
            level.dead_count += 1
            if level.dead_count > COMPACT_MIN_DEAD and level.dead_count > 2 * level.live_count:
                level.orders = deque(o for o in level.orders if o.live)
                level.dead_count = 0

    def drop_level(self, level: Level) -> None:
        price = level.price_ticks
        del self.levels[price]
        key = price if self.is_bid else -price
        keys = self.keys
        if keys[-1] == key:
            keys.pop()
        else:
            i = bisect_left(keys, key)
            check(i < len(keys) and keys[i] == key, "level key missing from side")
            del keys[i]

    def depth(self, n: int) -> list[tuple[int, int, int]]:
        """Up to ``n`` best levels as (price_ticks, total_lots, order_count)."""
        out = []
        levels = self.levels
        sign = 1 if self.is_bid else -1
        for k in reversed(self.keys[-n:] if n > 0 else []):
            lv = levels[sign * k]
            out.append((lv.price_ticks, lv.total_lots, lv.live_count))
        return out

    def iter_orders(self) -> list[Order]:
        """All live orders, best level first, time priority within a level."""
        out: list[Order] = []
        sign = 1 if self.is_bid else -1
        for k in reversed(self.keys):
            out.extend(o for o in self.levels[sign * k].orders if o.live)
        return out

    def check_invariants(self) -> None:
        check(sorted(self.keys) == self.keys, "side keys unsorted")
        sign = 1 if self.is_bid else -1
        check(sorted(sign * k for k in self.keys) == sorted(self.levels), "keys and levels differ")
        for price, lv in self.levels.items():
            live = [o for o in lv.orders if o.live]
            check(lv.live_count == len(live) > 0, f"live count wrong at {price}")
            check(lv.total_lots == sum(o.size_lots for o in live), f"total wrong at {price}")
            check(all(o.level is lv and o.price_ticks == price for o in live), "order level")
            seqs = [o.seq for o in live]
            check(seqs == sorted(seqs), f"time priority broken at {price}")
            check(all(o.size_lots > 0 for o in live), f"empty live order at {price}")


class Book:
    """Both sides of one market's book, plus references the hot path needs in one lookup."""

    __slots__ = ("asks", "bids", "market", "market_id", "mstate", "perp")

    def __init__(self, market: Any, mstate: Any) -> None:
        self.market = market  # genesis Market
        self.mstate = mstate  # state.MarketState
        self.market_id: int = market.market_id
        self.perp: bool = market.is_perp
        self.bids = BookSide(True)
        self.asks = BookSide(False)

    def side(self, is_buy: bool) -> BookSide:
        return self.bids if is_buy else self.asks

    def check_invariants(self) -> None:
        self.bids.check_invariants()
        self.asks.check_invariants()
        bb, ba = self.bids.best_price(), self.asks.best_price()
        check(not (bb and ba and bb >= ba), f"crossed book {bb} >= {ba}")
