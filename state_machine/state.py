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
0x30-  (governance/records.py)              governed markets, assets and parameters, market
0x36                                        controls, proposals, votes
0x40.. sub-accounts, agents, fee tiers,     see ``accounts/registry.py``
0x44   14-day volumes
0x48..  market_id(4) id(8)                   TWAPs, TP/SL groups, good-til times
0x4a                                        (state_machine/algo/records.py)
0x38.. (bridge records: state_machine/bridge/records.py)
=====  ==================================  ============================================
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

import msgpack

from state_machine.accounts.records import Account, Balance, Withdrawal
from state_machine.accounts.registry import AccountsRegistry
from state_machine.algo.records import AlgoState
from state_machine.book import ORDER_KEY, Book, Order
from state_machine.bridge.records import BridgeState
from state_machine.codec import encode
from state_machine.crypto import sha256
from state_machine.genesis import Genesis, Market
from state_machine.governance.records import GovernanceState
from state_machine.invariants import check
from state_machine.liquidation.index import RiskIndex
from state_machine.nonces import NonceTracker
from state_machine.perpetuals.records import Position, default_leverage
from state_machine.prices.records import MarketState, OracleSubmission
from state_machine.staking.engine import StakingState
from state_machine.triggers.records import Trigger, TriggerBook

P_META = 0x00
P_ORDER = 0x03
P_NONCES = 0x06
P_FEES = 0x07
P_INSURANCE = 0x08
P_ASSET = 0x09

META_KEY = b"\x00\x00"


def _u32(x: int) -> bytes:
    return x.to_bytes(4, "big")


def order_value(o: Order) -> tuple[Any, ...]:
    """A live order's ``state_obj`` as a tuple, for take_writes: msgpack packs it as the same
    array, and a tuple is cheaper to make and free than a list."""
    return (
        o.order_id, o.seq, o.account.pubkey, o.is_buy, o.price_ticks, o.size_lots, o.orig_lots,
        o.filled_lots, o.client_id, o.tif, o.reduce_only, o.stp, o.hold_atoms, o.timestamp_ms,
        o.kind,
    )  # fmt: skip


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

    def restore(self, v: list[Any]) -> None:
        """The inverse of :meth:`state_obj`."""
        self.amount_atoms = v[0]


class NonceEntry:
    """Adapter giving one signer's kept nonces a state key (the tracker owns the list)."""

    __slots__ = ("dirty", "key", "signer", "tracker")

    def __init__(self, tracker: NonceTracker, signer: bytes) -> None:
        self.tracker = tracker
        self.signer = signer
        self.dirty = False
        self.key = b"\x06" + signer  # the state key (fixed for life)

    def state_key(self) -> bytes:
        return self.key

    def state_obj(self) -> list[Any] | None:
        kept = self.tracker.kept_list(self.signer)
        return kept if kept else None


class ExchangeCore:
    """State containers shared by the exchange functions (see exchange.ExchangeState)."""

    __slots__ = (
        "accounts",
        "accts",
        "algo",
        "asset_totals",
        "books",
        "bridge",
        "dirty",
        "events",
        "fee_pools",
        "genesis",
        "genesis_hash",
        "gov",
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
        "parameters",
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
        # The exchange-wide parameters in force: genesis's until governance changes them.
        self.parameters = genesis.parameters
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
        # The vault's equity high-water mark since it last held no position (liquidation/risk.py).
        self.vault_peak = Pool(P_INSURANCE, 0)
        self.nonces = NonceTracker()
        self.nonce_entries: dict[bytes, NonceEntry] = {}
        self.dirty: list[Any] = []
        self.events: list[tuple[Any, ...]] = []
        self.risk = RiskIndex()  # derived data (liquidation/index.py), rebuilt on first use
        self.triggers = TriggerBook()  # waiting trigger orders (triggers/records.py)
        self.algo = AlgoState(self.touch)  # TWAPs, TP/SL groups, good-til times (algo/)
        # Staking records once staking is enabled (state_machine/staking/hook.py), else None.
        self.staking: StakingState | None = None
        # Governance records (state_machine/governance), all absent until a proposal.
        self.gov = GovernanceState()
        # Sub-accounts, agents, fee tiers and volumes (accounts/registry.py, keys 0x40..0x44).
        self.accts = AccountsRegistry(genesis)
        # Bridge records when the genesis has a bridge section (state_machine/bridge), else None.
        self.bridge = None if genesis.bridge is None else BridgeState(genesis.bridge)

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

    def restore_meta(self, v: list[Any]) -> None:
        """The inverse of :meth:`meta_obj`."""
        check(v[0] == self.genesis_hash, "entries belong to another genesis")
        self.height, self.timestamp_ms, self.next_seq, self.next_withdrawal_id = v[1:5]

    def take_writes(self) -> list[tuple[bytes, bytes | None]]:
        """Serialise the dirty objects (and meta) into a sorted write set; clear dirty marks."""
        out: dict[bytes, bytes | None] = {META_KEY: encode(self.meta_obj())}
        # One packer per call: msgpack.packb builds a Packer per value, which costs more than
        # the packing itself. Same canonical bytes as codec.encode. Every record is encoded by
        # its own state_key/state_obj, the same ones entries() uses, and decoded by the
        # inverse next to it (from_state / restore), which ExchangeState.from_entries uses.
        pack = msgpack.Packer(use_bin_type=True).pack
        for obj in self.dirty:
            t = type(obj)
            # Each branch names ``obj`` (Any) with its class: the compiled build then reads and
            # writes its attributes directly.
            if t is Order:
                order: Order = obj
                order.dirty = False
                # Order.state_key and order_value written out: orders are most of a block's
                # writes (checked against entries() by tests/state_machine/test_properties.py).
                # An order placed and gone within the block never existed in storage.
                if order.live:
                    order.stored = True
                    out[ORDER_KEY(P_ORDER, order.market_id, order.order_id)] = pack(
                        order_value(order)
                    )
                elif order.stored:
                    out[ORDER_KEY(P_ORDER, order.market_id, order.order_id)] = None
                    order.stored = False
            elif t is Balance:
                # The records written most often keep their (fixed) key in an attribute.
                bal: Balance = obj
                bal.dirty = False
                value = bal.state_obj()
                out[bal.key] = None if value is None else pack(value)
            elif t is Position:
                pos: Position = obj
                pos.dirty = False
                value = pos.state_obj()
                out[pos.key] = None if value is None else pack(value)
            elif t is NonceEntry:
                entry: NonceEntry = obj
                entry.dirty = False
                # The tracker keeps most signers' value packed (nonces.py); else pack it here.
                packed = entry.tracker.kept_msgpack(entry.signer)
                if packed is not None:
                    out[entry.key] = packed
                else:
                    value = entry.state_obj()
                    out[entry.key] = None if value is None else pack(value)
            elif t is Trigger:
                trig: Trigger = obj
                trig.dirty = False
                if not trig.live:
                    # An order placed and gone within the block never existed in storage.
                    if trig.stored:
                        out[trig.state_key()] = None
                        trig.stored = False
                    continue
                trig.stored = True
                out[trig.state_key()] = pack(trig.state_obj())
            else:
                obj.dirty = False
                value = obj.state_obj()
                out[obj.state_key()] = None if value is None else pack(value)
        self.dirty = []
        if self.staking is not None:
            out.update(self.staking.take_writes())
        if self.bridge is not None:
            out.update(self.bridge.take_writes())
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
        objs.extend(self.triggers.by_id.values())
        objs.extend(self.gov.objects())
        objs.extend(self.accts.objects())
        objs.extend(self.algo.objects())
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
        if self.bridge is not None:
            out.extend(self.bridge.entries())
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
