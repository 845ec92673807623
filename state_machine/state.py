"""The exchange's in-memory state and its canonical key/value entries.

Every persistent piece of state is a small slotted object with ``state_key()`` (bytes) and
``state_obj()`` (the plain msgpack object of its value, or None when the key should not exist).
Mutating code marks an object dirty with :meth:`ExchangeState.touch`; at the end of a block only
the dirty objects are serialised into the block's write set, so the cost of ``writes`` is
proportional to what the block touched, never to the size of the state.

Key layout (big-endian fixed-width ids, so keys sort by type, then owner, then id):

=====  ==================================  ============================================
prefix key                                  value (msgpack array)
=====  ==================================  ============================================
0x00   ``00``                               meta: [genesis_hash, height, timestamp_ms,
                                            next_seq, next_withdrawal_id]
0x01   account(32) asset_id(4)              balance: [available_atoms, held_atoms]
0x02   account(32) market_id(4)             position: [size_lots, entry_value, realized_pnl_atoms,
                                            leverage, isolated, isolated_margin_atoms,
                                            funding_index]
0x03   market_id(4) order_id(8)             open order (see ``Order.state_obj``)
0x04   market_id(4)                         market state (see ``MarketState.state_obj``)
0x05   market_id(4) validator(32)           oracle submission: [price_ticks, timestamp_ms]
0x06   signer(32)                           the signer's kept nonces (ascending)
0x07   asset_id(4)                          fee pool: [amount_atoms]
0x08   asset_id(4) (USDC: 0)                 vault equity high-water mark: [amount_atoms] since
                                            it last held no position (the insurance fund is
                                            the USDC balance of the vault account)
0x09   asset_id(4)                          asset totals: [withdrawn_atoms]
0x0a   withdrawal_id(8)                     withdrawal: [account, asset_id, amount_atoms,
                                            destination, height]
0x0b   market_id(4) order_id(8)             waiting trigger order (``Trigger.state_obj``)
=====  ==================================  ============================================
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

import msgpack

from state_machine.book import Book, Order
from state_machine.codec import encode
from state_machine.crypto import sha256
from state_machine.genesis import Genesis, Market
from state_machine.invariants import check
from state_machine.nonces import NonceTracker

P_META = 0x00
P_BALANCE = 0x01
P_POSITION = 0x02
P_ORDER = 0x03
P_MARKET = 0x04
P_ORACLE = 0x05
P_NONCES = 0x06
P_FEES = 0x07
P_INSURANCE = 0x08
P_ASSET = 0x09
P_WITHDRAWAL = 0x0A

META_KEY = b"\x00\x00"


def _u32(x: int) -> bytes:
    return x.to_bytes(4, "big")


class Balance:
    __slots__ = ("asset_id", "available_atoms", "dirty", "held_atoms", "owner", "risk_floor")

    def __init__(self, owner: bytes, asset_id: int, available_atoms: int = 0) -> None:
        self.owner = owner
        self.asset_id = asset_id
        self.available_atoms = available_atoms
        self.held_atoms = 0
        self.dirty = False
        # USDC available when the risk engine last evaluated the owner's cross unit (derived,
        # not stored): a balance that has not fallen below it cannot have hurt the unit.
        self.risk_floor: int | None = None

    def state_key(self) -> bytes:
        return b"\x01" + self.owner + _u32(self.asset_id)

    def state_obj(self) -> list[Any] | None:
        if self.available_atoms == 0 and self.held_atoms == 0:
            return None
        return [self.available_atoms, self.held_atoms]


class Position:
    """An account's record in one perp market: position, leverage, margin mode.

    ``entry_value`` is the signed cost basis in tick-lots (sum of price_ticks * lots, positive
    for a long): exact, so unrealised PnL is ``(price * size - entry_value) * tick_lot_atoms``.
    ``buy_lots``/``sell_lots`` are the open non-reduce-only order sizes (derived from the orders,
    not stored) used by the initial-margin rule.
    """

    __slots__ = (
        "buy_lots",
        "dirty",
        "entry_value",
        "funding_index",
        "isolated",
        "isolated_margin_atoms",
        "leverage",
        "liquidation_cooldown_ms",
        "market",
        "owner",
        "realized_pnl_atoms",
        "sell_lots",
        "size_lots",
    )

    def __init__(self, owner: bytes, market: Market, leverage: int) -> None:
        self.owner = owner
        self.market = market
        self.size_lots = 0
        self.entry_value = 0
        self.realized_pnl_atoms = 0
        self.leverage = leverage
        self.isolated = False
        self.isolated_margin_atoms = 0
        self.funding_index = 0
        self.liquidation_cooldown_ms = 0  # no partial liquidation before this block time
        self.buy_lots = 0
        self.sell_lots = 0
        self.dirty = False

    def state_key(self) -> bytes:
        return b"\x02" + self.owner + _u32(self.market.market_id)

    def state_obj(self) -> list[Any] | None:
        if (
            self.size_lots == 0
            and self.entry_value == 0
            and self.realized_pnl_atoms == 0
            and self.leverage == default_leverage(self.market)
            and not self.isolated
            and self.isolated_margin_atoms == 0
            and self.liquidation_cooldown_ms == 0
        ):
            return None
        return [
            self.size_lots,
            self.entry_value,
            self.realized_pnl_atoms,
            self.leverage,
            self.isolated,
            self.isolated_margin_atoms,
            self.funding_index,
            self.liquidation_cooldown_ms,
        ]


def default_leverage(market: Market) -> int:
    """Leverage of an account that never set one: 10x, or the market's maximum if lower."""
    return min(10, market.max_leverage)


VAULT = bytes(32)  # the liquidation vault; no one can sign for the all-zero (small-order) key


class Account:
    """Not itself a state entry: its balances and positions are."""

    __slots__ = ("balances", "client_ids", "orders", "positions", "pubkey", "triggers")

    def __init__(self, pubkey: bytes) -> None:
        self.pubkey = pubkey
        self.balances: dict[int, Balance] = {}
        self.positions: dict[int, Position] = {}
        self.orders: dict[int, Order] = {}  # order_id -> open order, in placement order
        self.client_ids: dict[int, Order] = {}  # client_id -> open order
        self.triggers: dict[int, Any] = {}  # order_id -> untriggered trigger order


class MarketState:
    __slots__ = (
        "basis_ema_ticks",
        "dirty",
        "funding_dust_scaled",
        "funding_index",
        "funding_rate_ppb",
        "last_trade_price_ticks",
        "last_trade_time_ms",
        "mark_price_ticks",
        "mark_time_ms",
        "market",
        "next_funding_ms",
        "open_interest_lots",
        "oracle_price_ticks",
        "oracle_time_ms",
        "premium_samples",
        "premium_sum_ppb",
        "volume_lots",
    )

    def __init__(self, market: Market) -> None:
        self.market = market
        self.oracle_price_ticks = market.initial_price_ticks
        self.oracle_time_ms = 0
        # Price used for margin; equals the oracle until the risk engine computes a mark.
        self.mark_price_ticks = market.initial_price_ticks
        self.last_trade_price_ticks = 0
        self.last_trade_time_ms = 0
        self.open_interest_lots = 0
        self.volume_lots = 0
        # Risk engine (perps): EMA of book mid minus oracle, funding accumulators.
        self.basis_ema_ticks = 0
        self.mark_time_ms = 0
        self.funding_index = 0  # cumulative sum of interval rate (ppb) x oracle price (ticks)
        self.next_funding_ms = 0
        self.premium_sum_ppb = 0
        self.premium_samples = 0
        self.funding_dust_scaled = 0  # rounding surplus of settled funding, atoms x 1e9
        self.funding_rate_ppb = 0  # the last interval's rate
        self.dirty = False

    def state_key(self) -> bytes:
        return b"\x04" + _u32(self.market.market_id)

    def state_obj(self) -> list[Any] | None:
        return [
            self.oracle_price_ticks,
            self.oracle_time_ms,
            self.mark_price_ticks,
            self.last_trade_price_ticks,
            self.last_trade_time_ms,
            self.open_interest_lots,
            self.volume_lots,
            self.basis_ema_ticks,
            self.mark_time_ms,
            self.funding_index,
            self.next_funding_ms,
            self.premium_sum_ppb,
            self.premium_samples,
            self.funding_dust_scaled,
            self.funding_rate_ppb,
        ]

    def reference_price(self) -> int:
        """The price orders are banded around: the oracle, else the last trade, else 0."""
        return self.oracle_price_ticks or self.last_trade_price_ticks


class OracleSubmission:
    __slots__ = ("dirty", "market_id", "price_ticks", "timestamp_ms", "validator")

    def __init__(self, market_id: int, validator: bytes, price_ticks: int, ts: int) -> None:
        self.market_id = market_id
        self.validator = validator
        self.price_ticks = price_ticks
        self.timestamp_ms = ts
        self.dirty = False

    def state_key(self) -> bytes:
        return b"\x05" + _u32(self.market_id) + self.validator

    def state_obj(self) -> list[Any] | None:
        return [self.price_ticks, self.timestamp_ms]


class Pool:
    """A single amount under a key: fee pool, insurance fund or withdrawn total of an asset."""

    __slots__ = ("amount_atoms", "asset_id", "dirty", "prefix")

    def __init__(self, prefix: int, asset_id: int, amount_atoms: int = 0) -> None:
        self.prefix = prefix
        self.asset_id = asset_id
        self.amount_atoms = amount_atoms
        self.dirty = False

    def state_key(self) -> bytes:
        return bytes((self.prefix,)) + _u32(self.asset_id)

    def state_obj(self) -> list[Any] | None:
        return None if self.amount_atoms == 0 else [self.amount_atoms]


class Withdrawal:
    __slots__ = (
        "account",
        "amount_atoms",
        "asset_id",
        "destination",
        "dirty",
        "height",
        "withdrawal_id",
    )

    def __init__(
        self, wid: int, account: bytes, asset_id: int, amount: int, dest: bytes, height: int
    ) -> None:
        self.withdrawal_id = wid
        self.account = account
        self.asset_id = asset_id
        self.amount_atoms = amount
        self.destination = dest
        self.height = height
        self.dirty = False

    def state_key(self) -> bytes:
        return b"\x0a" + self.withdrawal_id.to_bytes(8, "big")

    def state_obj(self) -> list[Any] | None:
        return [self.account, self.asset_id, self.amount_atoms, self.destination, self.height]


class NonceEntry:
    """Adapter giving one signer's kept nonces a state key (the tracker owns the list)."""

    __slots__ = ("dirty", "signer", "tracker")

    def __init__(self, tracker: NonceTracker, signer: bytes) -> None:
        self.tracker = tracker
        self.signer = signer
        self.dirty = False

    def state_key(self) -> bytes:
        return b"\x06" + self.signer

    def state_obj(self) -> list[Any] | None:
        kept = self.tracker.kept_list(self.signer)
        return kept if kept else None


class ExchangeCore:
    """State containers shared by the exchange functions (see exchange.ExchangeState)."""

    __slots__ = (
        "accounts",
        "asset_totals",
        "books",
        "dirty",
        "events",
        "fee_pools",
        "genesis",
        "genesis_hash",
        "height",
        "markets",
        "max_open_orders",
        "mstates",
        "next_seq",
        "next_withdrawal_id",
        "nonce_entries",
        "nonces",
        "oracle_subs",
        "orders",
        "risk",
        "staking",
        "timestamp_ms",
        "triggers",
        "validator_power",
        "vault_peak",
        "withdrawals",
    )

    def __init__(self, genesis: Genesis) -> None:
        self.genesis = genesis
        self.genesis_hash = genesis.hash()
        self.height = 0
        self.timestamp_ms = genesis.genesis_time_ms
        self.next_seq = 1
        self.next_withdrawal_id = 1
        self.markets: dict[int, Market] = {m.market_id: m for m in genesis.markets}
        self.mstates: dict[int, MarketState] = {
            m.market_id: MarketState(m) for m in genesis.markets
        }
        self.books: dict[int, Book] = {
            m.market_id: Book(m, self.mstates[m.market_id]) for m in genesis.markets
        }
        self.max_open_orders = genesis.parameters.max_open_orders_per_account
        self.accounts: dict[bytes, Account] = {}
        self.orders: dict[int, Order] = {}
        self.fee_pools: dict[int, Pool] = {
            a.asset_id: Pool(P_FEES, a.asset_id) for a in genesis.assets
        }
        self.asset_totals: dict[int, Pool] = {
            a.asset_id: Pool(P_ASSET, a.asset_id) for a in genesis.assets
        }
        self.validator_power: dict[bytes, int] = {v.pubkey: v.power for v in genesis.validators}
        # market_id -> validator -> submission (validators in genesis order)
        self.oracle_subs: dict[int, dict[bytes, OracleSubmission]] = {
            m.market_id: {} for m in genesis.markets
        }
        self.withdrawals: dict[int, Withdrawal] = {}
        # The vault's equity high-water mark since it last held no position (risk.py).
        self.vault_peak = Pool(P_INSURANCE, 0)
        self.nonces = NonceTracker()
        self.nonce_entries: dict[bytes, NonceEntry] = {}
        self.dirty: list[Any] = []
        self.events: list[tuple[Any, ...]] = []
        self.risk: Any = None  # risk.RiskIndex, derived data (set by exchange.ExchangeState)
        self.triggers: Any = None  # triggers.TriggerBook (set by exchange.ExchangeState)
        self.staking: Any = None  # staking.engine.StakingState once enabled (staking/hook.py)

    # ---- dirty tracking ---------------------------------------------------------------------
    def touch(self, obj: Any) -> None:
        if not obj.dirty:
            obj.dirty = True
            self.dirty.append(obj)

    def account(self, pubkey: bytes) -> Account:
        acct = self.accounts.get(pubkey)
        if acct is None:
            acct = Account(pubkey)
            self.accounts[pubkey] = acct
        return acct

    def balance(self, acct: Account, asset_id: int) -> Balance:
        bal = acct.balances.get(asset_id)
        if bal is None:
            bal = Balance(acct.pubkey, asset_id)
            acct.balances[asset_id] = bal
        return bal

    def position(self, acct: Account, market: Market) -> Position:
        pos = acct.positions.get(market.market_id)
        if pos is None:
            pos = Position(acct.pubkey, market, default_leverage(market))
            acct.positions[market.market_id] = pos
        return pos

    def nonce_entry(self, signer: bytes) -> NonceEntry:
        e = self.nonce_entries.get(signer)
        if e is None:
            e = NonceEntry(self.nonces, signer)
            self.nonce_entries[signer] = e
        return e

    def meta_obj(self) -> list[Any]:
        return [
            self.genesis_hash,
            self.height,
            self.timestamp_ms,
            self.next_seq,
            self.next_withdrawal_id,
        ]

    def take_writes(self) -> list[tuple[bytes, bytes | None]]:
        """Serialise the dirty objects (and meta) into a sorted write set; clear dirty marks."""
        out: dict[bytes, bytes | None] = {META_KEY: encode(self.meta_obj())}
        # One packer per call: msgpack.packb builds a Packer per value, which costs more than
        # the packing itself. Same canonical bytes as codec.encode. The common types are
        # serialised inline (same keys and values as their state_key/state_obj): this loop
        # runs for every order, balance, position and signer a block touched.
        pack = msgpack.Packer(use_bin_type=True).pack
        for obj in self.dirty:
            obj.dirty = False
            t = type(obj)
            if t is Order:
                key = b"\x03" + obj.market_id.to_bytes(4, "big") + obj.order_id.to_bytes(8, "big")
                if not obj.live:
                    # An order placed and gone within the block never existed in storage.
                    if obj.stored:
                        out[key] = None
                        obj.stored = False
                    continue
                obj.stored = True
                out[key] = pack(
                    [
                        obj.order_id,
                        obj.seq,
                        obj.account.pubkey,
                        obj.is_buy,
                        obj.price_ticks,
                        obj.size_lots,
                        obj.orig_lots,
                        obj.filled_lots,
                        obj.client_id,
                        obj.tif,
                        obj.reduce_only,
                        obj.stp,
                        obj.hold_atoms,
                        obj.timestamp_ms,
                        obj.kind,
                    ]
                )
            elif t is Balance:
                key = b"\x01" + obj.owner + obj.asset_id.to_bytes(4, "big")
                if obj.available_atoms == 0 and obj.held_atoms == 0:
                    out[key] = None
                else:
                    out[key] = pack([obj.available_atoms, obj.held_atoms])
            elif t is NonceEntry:
                kept = obj.tracker.kept_list(obj.signer)
                out[b"\x06" + obj.signer] = pack(kept) if kept else None
            elif t is Position:
                value = obj.state_obj()
                out[obj.state_key()] = None if value is None else pack(value)
            else:
                value = obj.state_obj()
                stored = getattr(obj, "stored", None)
                if stored is not None:  # trigger orders: like orders, skip never-stored deletions
                    if value is None and not stored:
                        continue
                    obj.stored = value is not None
                out[obj.state_key()] = None if value is None else pack(value)
        self.dirty = []
        if self.staking is not None:
            out.update(self.staking.take_writes())
        # Keys are unique, so sorting on the key alone gives the same order as sorting the
        # pairs, without a tuple comparison per step.
        return sorted(out.items(), key=itemgetter(0))

    # ---- full state -----------------------------------------------------------------------
    def all_objects(self) -> list[Any]:
        objs: list[Any] = []
        for acct in self.accounts.values():
            objs.extend(acct.balances.values())
            objs.extend(acct.positions.values())
        objs.extend(self.orders.values())
        objs.extend(self.mstates.values())
        for subs in self.oracle_subs.values():
            objs.extend(subs.values())
        objs.extend(self.nonce_entries.values())
        objs.extend(self.fee_pools.values())
        objs.extend(self.asset_totals.values())
        objs.append(self.vault_peak)
        objs.extend(self.withdrawals.values())
        if self.triggers is not None:
            objs.extend(self.triggers.by_id.values())
        return objs

    def entries(self) -> list[tuple[bytes, bytes]]:
        """Every state key with its canonical value, sorted by key."""
        out = [(META_KEY, encode(self.meta_obj()))]
        for obj in self.all_objects():
            value = obj.state_obj()
            if value is not None:
                out.append((obj.state_key(), encode(value)))
        if self.staking is not None:
            out.extend(self.staking.entries())
        out.sort()
        keys = [k for k, _ in out]
        check(len(set(keys)) == len(keys), "duplicate state key")
        return out

    def digest(self) -> bytes:
        """SHA-256 over the sorted entries, each length-prefixed (u32 key len, u32 value len)."""
        parts = []
        for k, v in self.entries():
            parts.append(len(k).to_bytes(4, "big") + k + len(v).to_bytes(4, "big") + v)
        return sha256(b"".join(parts))
