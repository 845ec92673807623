"""Records of the order tools: TWAPs (key 0x48), TP/SL groups (0x49) and good-til times (0x4a).

=====  ==========================  ===============================================================
prefix key                         value (msgpack array)
=====  ==========================  ===============================================================
0x48   market_id(4) twap_id(8)     TWAP: [account, is_buy, size_lots, filled_lots, duration_ms,
                                   start_ms, next_slice_ms, slices_done, slices_total, randomize,
                                   reduce_only, max_slippage_ppm]
0x49   market_id(4) group_id(8)    TP/SL group: [account, is_long, parent_order_id,
                                   tp_trigger_ticks, sl_trigger_ticks, tp_order_id, sl_order_id]
                                   (parent 0: set on the position; order ids 0 while pending)
0x4a   market_id(4) order_id(8)    good-til time of an open order or waiting trigger:
                                   [account, good_til_ms]
0x4b   account(32)                 the account's order tools: [[[market_id, twap_id], ...],
                                   [[market_id, group_id], ...], [[market_id, order_id], ...]]
                                   (its TWAPs, TP/SL groups and good-til records, sorted;
                                   absent when it has none)
=====  ==========================  ===============================================================

The 0x4b record is derived from the others, and is there for the account proof: its key
follows from the address alone, so a light client can insist on it (present or proven absent)
and from it derive the key of every TWAP, group and good-til record of the account, which it
could not otherwise list (their keys carry ids).

Records store the account id they act for (never the transaction's signer) and refer to orders
and triggers by id, so a state rebuilt from its entries needs no linking step. The indexes of
:class:`AlgoState` are derived from the records; every list that decides an order of execution
is sorted, never a dict's or set's iteration order.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from state_machine.invariants import check

if TYPE_CHECKING:  # typing only: the state module holds an AlgoState
    from state_machine.accounts.records import Account

P_TWAP = 0x48
P_TPSL = 0x49
P_GOOD_TIL = 0x4A
P_ACCOUNT_TOOLS = 0x4B

Touch = Callable[[Any], None]


def _key(prefix: int, market_id: int, rec_id: int) -> bytes:
    return bytes((prefix,)) + market_id.to_bytes(4, "big") + rec_id.to_bytes(8, "big")


class Twap:
    __slots__ = (
        "account",
        "dirty",
        "duration_ms",
        "filled_lots",
        "is_buy",
        "live",
        "market_id",
        "max_slippage_ppm",
        "next_slice_ms",
        "randomize",
        "reduce_only",
        "size_lots",
        "slices_done",
        "slices_total",
        "start_ms",
        "twap_id",
    )

    def __init__(self, twap_id: int, market_id: int, account: Account, v: list[Any]) -> None:
        """``v`` is the record's value without the account (see :meth:`state_obj`)."""
        self.twap_id = twap_id
        self.market_id = market_id
        self.account = account
        (
            self.is_buy,
            self.size_lots,
            self.filled_lots,
            self.duration_ms,
            self.start_ms,
            self.next_slice_ms,
            self.slices_done,
            self.slices_total,
            self.randomize,
            self.reduce_only,
            self.max_slippage_ppm,
        ) = v
        self.live = True
        self.dirty = False

    def state_key(self) -> bytes:
        return _key(P_TWAP, self.market_id, self.twap_id)

    def state_obj(self) -> list[Any] | None:
        if not self.live:
            return None
        return [
            self.account.pubkey,
            self.is_buy,
            self.size_lots,
            self.filled_lots,
            self.duration_ms,
            self.start_ms,
            self.next_slice_ms,
            self.slices_done,
            self.slices_total,
            self.randomize,
            self.reduce_only,
            self.max_slippage_ppm,
        ]


class TpslGroup:
    __slots__ = (
        "account",
        "dirty",
        "group_id",
        "is_long",
        "live",
        "market_id",
        "parent_order_id",
        "sl_order_id",
        "sl_trigger_ticks",
        "tp_order_id",
        "tp_trigger_ticks",
    )

    def __init__(self, group_id: int, market_id: int, account: Account, v: list[Any]) -> None:
        self.group_id = group_id
        self.market_id = market_id
        self.account = account
        (
            self.is_long,
            self.parent_order_id,
            self.tp_trigger_ticks,
            self.sl_trigger_ticks,
            self.tp_order_id,
            self.sl_order_id,
        ) = v
        self.live = True
        self.dirty = False

    @property
    def armed(self) -> bool:
        """True once its triggers wait (a position pair at once, an attached pair on a fill)."""
        return bool(self.tp_order_id or self.sl_order_id)

    def member_ids(self) -> tuple[int, ...]:
        return tuple(i for i in (self.tp_order_id, self.sl_order_id) if i)

    def state_key(self) -> bytes:
        return _key(P_TPSL, self.market_id, self.group_id)

    def state_obj(self) -> list[Any] | None:
        if not self.live:
            return None
        return [
            self.account.pubkey,
            self.is_long,
            self.parent_order_id,
            self.tp_trigger_ticks,
            self.sl_trigger_ticks,
            self.tp_order_id,
            self.sl_order_id,
        ]


class GoodTil:
    __slots__ = ("account", "dirty", "good_til_ms", "live", "market_id", "order_id")

    def __init__(self, order_id: int, market_id: int, account: Account, good_til_ms: int) -> None:
        self.order_id = order_id
        self.market_id = market_id
        self.account = account
        self.good_til_ms = good_til_ms
        self.live = True
        self.dirty = False

    def state_key(self) -> bytes:
        return _key(P_GOOD_TIL, self.market_id, self.order_id)

    def state_obj(self) -> list[Any] | None:
        return [self.account.pubkey, self.good_til_ms] if self.live else None


class AccountTools:
    """The ids of one account's order-tool records (key 0x4b), kept by AlgoState."""

    __slots__ = ("dirty", "good_til", "groups", "owner", "twaps")

    def __init__(self, owner: bytes) -> None:
        self.owner = owner
        self.twaps: set[tuple[int, int]] = set()  # (market_id, twap_id)
        self.groups: set[tuple[int, int]] = set()
        self.good_til: set[tuple[int, int]] = set()
        self.dirty = False

    def state_key(self) -> bytes:
        return bytes((P_ACCOUNT_TOOLS,)) + self.owner

    def state_obj(self) -> list[Any] | None:
        if not (self.twaps or self.groups or self.good_til):
            return None
        return [[list(x) for x in sorted(ids)] for ids in (self.twaps, self.groups, self.good_til)]


class AlgoState:
    """The live records and their derived indexes."""

    __slots__ = (
        "accounts",
        "armed",
        "good_til",
        "good_til_due",
        "group_of_trigger",
        "groups",
        "loaded_tools",
        "pending",
        "touch",
        "twap_count",
        "twap_due",
        "twaps",
    )

    def __init__(self, touch: Touch) -> None:
        self.touch = touch  # the state's dirty marking, for the 0x4b records
        self.accounts: dict[bytes, AccountTools] = {}
        # 0x4b values read by from_entries, checked against the records once all are loaded.
        self.loaded_tools: list[tuple[bytes, list[Any]]] = []
        self.twaps: dict[int, Twap] = {}
        self.twap_due: list[tuple[int, int]] = []  # sorted (next_slice_ms, twap_id)
        self.twap_count: dict[bytes, int] = {}  # account -> running TWAPs
        self.groups: dict[int, TpslGroup] = {}
        self.pending: dict[int, TpslGroup] = {}  # parent order id -> group waiting for a fill
        self.armed: dict[tuple[bytes, int], TpslGroup] = {}  # (account, market) -> armed group
        self.group_of_trigger: dict[int, TpslGroup] = {}
        self.good_til: dict[int, GoodTil] = {}
        self.good_til_due: list[tuple[int, int]] = []  # sorted (good_til_ms, order_id)

    @property
    def watching(self) -> bool:
        """True if a block's events can concern a record (groups or good-til times exist)."""
        return bool(self.groups or self.good_til)

    def objects(self) -> list[Any]:
        return [
            *self.twaps.values(),
            *self.groups.values(),
            *self.good_til.values(),
            *self.accounts.values(),
        ]

    def tools_of(self, owner: bytes) -> AccountTools:
        """The owner's 0x4b record, marked dirty (every caller changes it)."""
        rec = self.accounts.get(owner)
        if rec is None:
            rec = AccountTools(owner)
            self.accounts[owner] = rec
        self.touch(rec)
        return rec

    # ---- TWAPs ---------------------------------------------------------------------------
    def add_twap(self, tw: Twap) -> None:
        self.twaps[tw.twap_id] = tw
        insort(self.twap_due, (tw.next_slice_ms, tw.twap_id))
        owner = tw.account.pubkey
        self.twap_count[owner] = self.twap_count.get(owner, 0) + 1
        self.tools_of(owner).twaps.add((tw.market_id, tw.twap_id))

    def unschedule_twap(self, tw: Twap) -> None:
        i = bisect_left(self.twap_due, (tw.next_slice_ms, tw.twap_id))
        check(
            i < len(self.twap_due) and self.twap_due[i] == (tw.next_slice_ms, tw.twap_id),
            "TWAP schedule index",
        )
        del self.twap_due[i]

    def remove_twap(self, tw: Twap) -> None:
        del self.twaps[tw.twap_id]
        owner = tw.account.pubkey
        self.twap_count[owner] -= 1
        if not self.twap_count[owner]:
            del self.twap_count[owner]
        self.tools_of(owner).twaps.remove((tw.market_id, tw.twap_id))
        tw.live = False

    def take_due_twaps(self, now_ms: int) -> list[Twap]:
        """The TWAPs whose next slice is due, by (due time, id); taken off the schedule."""
        n = bisect_left(self.twap_due, (now_ms + 1, 0))
        due = [self.twaps[tid] for _, tid in self.twap_due[:n]]
        del self.twap_due[:n]
        return due

    # ---- TP/SL groups --------------------------------------------------------------------
    def add_group(self, g: TpslGroup) -> None:
        self.groups[g.group_id] = g
        self.tools_of(g.account.pubkey).groups.add((g.market_id, g.group_id))
        if g.armed:
            self.index_armed(g)
        else:
            self.pending[g.parent_order_id] = g

    def index_armed(self, g: TpslGroup) -> None:
        key = (g.account.pubkey, g.market_id)
        check(key not in self.armed, "two armed TP/SL groups on one position")
        self.armed[key] = g
        for tid in g.member_ids():
            self.group_of_trigger[tid] = g

    def detach_pending(self, g: TpslGroup) -> None:
        """Take a pending group out of the indexes before it is armed."""
        check(not g.armed and self.pending.get(g.parent_order_id) is g, "pending group index")
        del self.pending[g.parent_order_id]
        del self.groups[g.group_id]
        self.tools_of(g.account.pubkey).groups.remove((g.market_id, g.group_id))

    def remove_group(self, g: TpslGroup) -> None:
        del self.groups[g.group_id]
        self.tools_of(g.account.pubkey).groups.remove((g.market_id, g.group_id))
        if g.armed:
            del self.armed[(g.account.pubkey, g.market_id)]
            for tid in g.member_ids():
                del self.group_of_trigger[tid]
        else:
            del self.pending[g.parent_order_id]
        g.live = False

    # ---- good-til times ------------------------------------------------------------------
    def add_good_til(self, rec: GoodTil) -> None:
        self.good_til[rec.order_id] = rec
        self.tools_of(rec.account.pubkey).good_til.add((rec.market_id, rec.order_id))
        insort(self.good_til_due, (rec.good_til_ms, rec.order_id))

    def remove_good_til(self, rec: GoodTil) -> None:
        del self.good_til[rec.order_id]
        self.tools_of(rec.account.pubkey).good_til.remove((rec.market_id, rec.order_id))
        i = bisect_left(self.good_til_due, (rec.good_til_ms, rec.order_id))
        check(i < len(self.good_til_due), "good-til index")
        del self.good_til_due[i]
        rec.live = False

    def take_due_good_til(self, now_ms: int) -> list[GoodTil]:
        """Good-til records at or before ``now_ms``, by (time, order id); removed."""
        n = bisect_left(self.good_til_due, (now_ms + 1, 0))
        due = [self.good_til[oid] for _, oid in self.good_til_due[:n]]
        del self.good_til_due[:n]
        for rec in due:
            del self.good_til[rec.order_id]
            self.tools_of(rec.account.pubkey).good_til.remove((rec.market_id, rec.order_id))
            rec.live = False
        return due
