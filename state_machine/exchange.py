"""The exchange state machine: ``apply_block`` and the ``process_*`` rules.

Theory of operation
-------------------
``apply_block(state, ctx, txs)`` is the whole state transition of one committed block:

1. ``begin_block``: advance height and time; recompute oracle prices so that submissions older
   than the market's ``oracle_max_age_ms`` drop out of the median.
2. Transaction checks, in block order: chain id, version, expiry against the block time, then
   the nonce rule (DESIGN section 3). A transaction failing one of these gets that code for the
   transaction and for every action, and changes nothing (its nonce is not consumed).
3. Actions of the accepted transactions are executed in four classes, the proposer's order
   inside each class (DESIGN section 4, favouring makers): (a) non-order actions (oracle,
   transfers, withdrawals, leverage, isolated margin), (b) cancels, (c) post-only orders,
   (d) every other order action (new orders and amends). A transaction's actions can therefore
   run in a different order than written; each still gets its own result in its position.
4. ``end_block``: the risk engine (risk.py): mark prices, funding samples and ticks, trigger
   orders, liquidations.
5. The write set: every state object touched during the block is serialised once (see
   ``state.py``), sorted by key. An order opened and closed within the block is not written.

Every user mistake is an :class:`ActionResult` with a stable ``code`` and a human ``message``;
exceptions only ever signal a broken invariant (:class:`InvariantError`), after which the state
must be considered corrupt and the node must stop.

Orders: a new order is validated (market, kind, lots, ticks, price band, client id, open-order
limit, reduce-only, minimum notional, post-only, fill-or-kill), its funds are reserved (spot: the
balance it could spend is moved to ``held``; perps: an initial-margin check counting open
orders), then it matches against the opposite side in price-time priority (fills at the maker's
price), and any remainder rests (GTC, post-only) or is cancelled (IOC, FOK, market).
Spot fees are taken in the asset the user receives (buyer pays in base, seller in quote), so a
buy order's hold is exactly its notional. Perp fees are USDC from the cross balance.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Sequence
from typing import Any

from state_machine.book import Book, BookSide, Level, Order
from state_machine.genesis import MARKET_PERP, Genesis, Market, validate_genesis
from state_machine.invariants import PPM, check
from state_machine.margin import (
    free_collateral,
    position_im_atoms,
    settle_funding,
    unrealized_pnl_atoms,
)
from state_machine.nonces import NonceCheck
from state_machine.risk import RiskIndex, end_block_risk
from state_machine.staking.actions import STAKING_ACTIONS, StakingAction
from state_machine.staking.engine import STAKING_EVENT_FIELDS
from state_machine.staking.hook import (
    follow_active_set,
    is_staking_key,
    run_staking_action,
    staking_begin_block,
    staking_end_block,
    staking_from_entries,
)
from state_machine.staking.params import StakingParams
from state_machine.state import (
    P_ASSET,
    P_BALANCE,
    P_FEES,
    P_INSURANCE,
    P_MARKET,
    P_META,
    P_NONCES,
    P_ORACLE,
    P_ORDER,
    P_POSITION,
    P_WITHDRAWAL,
    VAULT,
    Account,
    Balance,
    ExchangeCore,
    OracleSubmission,
    Position,
    Withdrawal,
)
from state_machine.triggers import (
    P_TRIGGER,
    TriggerBook,
    account_triggers,
    cancel_trigger,
    open_order_count,
    place_trigger,
    trigger_from_entry,
)
from state_machine.tx import (
    KIND_MARKET,
    KIND_STOP_LIMIT,
    KIND_TAKE_PROFIT_LIMIT,
    STP_CANCEL_BOTH,
    STP_CANCEL_RESTING,
    STP_CANCEL_TAKER,
    TIF_ALO,
    TIF_FOK,
    TIF_GTC,
    TIF_IOC,
    TRIGGER_KINDS,
    TX_VERSION,
    AdjustIsolatedMargin,
    AmendOrder,
    CancelAll,
    CancelByClientId,
    CancelOrder,
    OracleUpdate,
    PlaceOrder,
    SetLeverage,
    Transaction,
    Transfer,
    WithdrawRequest,
)

# ---- result codes (stable, machine readable) -----------------------------------------------
OK = "ok"
WRONG_CHAIN = "wrong_chain"
BAD_VERSION = "bad_version"
EXPIRED = "expired"
UNKNOWN_MARKET = "unknown_market"
UNKNOWN_ASSET = "unknown_asset"
UNKNOWN_ORDER = "unknown_order"
INVALID_ORDER = "invalid_order"
LOT_SIZE = "lot_size"
TICK_SIZE = "tick_size"
PRICE_BAND = "price_band"
NO_REFERENCE_PRICE = "no_reference_price"
MIN_NOTIONAL = "min_notional"
DUPLICATE_CLIENT_ID = "duplicate_client_id"
TOO_MANY_ORDERS = "too_many_orders"
REDUCE_ONLY_WOULD_INCREASE = "reduce_only_would_increase"
POST_ONLY_WOULD_CROSS = "post_only_would_cross"
FOK_NOT_FILLED = "fok_not_filled"
NO_LIQUIDITY = "no_liquidity"
SELF_TRADE = "self_trade"
INSUFFICIENT_BALANCE = "insufficient_balance"
INSUFFICIENT_MARGIN = "insufficient_margin"
INVALID_AMOUNT = "invalid_amount"
INVALID_RECIPIENT = "invalid_recipient"
NOT_PERP = "not_perp"
INVALID_LEVERAGE = "invalid_leverage"
POSITION_OPEN = "position_open"
NOT_ISOLATED = "not_isolated"
NO_POSITION = "no_position"
NOT_VALIDATOR = "not_validator"

# Order statuses reported in results and events.
ST_RESTING = "resting"
ST_PARTIAL = "partially_filled"
ST_FILLED = "filled"
ST_CANCELLED = "cancelled"
ST_WAITING = "waiting"  # a trigger order waiting for its trigger price

# Cancel reasons.
R_USER = "user"
R_IOC = "ioc"
R_SELF_TRADE = "self_trade"
R_REDUCE_ONLY = "reduce_only"
R_AMEND = "amend"

# Event kinds and their fields (after the kind). The API serves these; keep them stable.
EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "order_accepted": (
        "market_id",
        "order_id",
        "account",
        "is_buy",
        "price_ticks",
        "size_lots",
        "tif",
        "client_id",
        "reduce_only",
    ),
    "order_rested": ("market_id", "order_id", "account", "price_ticks", "size_lots"),
    "order_rejected": ("market_id", "account", "client_id", "code", "message"),
    "order_cancelled": ("market_id", "order_id", "account", "size_lots", "reason"),
    "order_amended": ("market_id", "order_id", "account", "price_ticks", "size_lots", "seq"),
    "fill": (
        "market_id",
        "price_ticks",
        "size_lots",
        "taker_is_buy",
        "taker_order_id",
        "maker_order_id",
        "taker",
        "maker",
        "taker_fee_atoms",
        "maker_fee_atoms",
        "taker_realized_pnl_atoms",
        "maker_realized_pnl_atoms",
    ),
    "oracle": ("market_id", "price_ticks"),
    "transfer": ("from", "to", "asset_id", "amount_atoms"),
    "withdrawal": ("withdrawal_id", "account", "asset_id", "amount_atoms", "destination"),
    "leverage": ("account", "market_id", "leverage", "isolated"),
    "isolated_margin": ("account", "market_id", "delta_atoms"),
    "funding": ("market_id", "rate_ppb", "rate_8h_ppb", "premium_ppb", "funding_index"),
    "funding_payment": ("account", "market_id", "amount_atoms"),
    "liquidation": ("account", "market_id", "value_atoms", "maintenance_atoms"),
    "internal_order": ("reason", "account", "market_id", "code", "filled_lots"),
    "liquidation_fee": ("account", "market_id", "fee_atoms"),
    "backstop": ("account", "market_id", "value_atoms", "fee_atoms"),
    "position_transfer": ("market_id", "from", "to", "size_lots", "price_ticks"),
    "insurance_payout": ("account", "market_id", "amount_atoms"),
    "adl": ("market_id", "bankrupt", "counterparty", "size_lots", "price_ticks"),
    "vault_refused": ("account", "market_id", "reason", "value_atoms"),
    "vault_under_water": ("equity_atoms", "maintenance_atoms"),
    "vault_loss_limit": ("equity_atoms", "high_water_atoms"),
    "vault_adl": ("market_id", "counterparty", "size_lots", "price_ticks"),
    "socialised_loss": ("market_id", "bankrupt", "amount_atoms"),
    # A trigger order starts waiting; price_ticks is its limit price (0 for the market kinds).
    "trigger_accepted": (
        "market_id",
        "order_id",
        "account",
        "is_buy",
        "order_kind",  # not "kind": that names the event in its dict and JSON forms
        "trigger_price_ticks",
        "price_ticks",
        "size_lots",
        "client_id",
        "reduce_only",
    ),
    "trigger_cancelled": ("market_id", "order_id", "account", "reason"),
    "trigger_fired": (
        "market_id",
        "trigger_id",
        "account",
        "mark_price_ticks",
        "code",
        "order_id",
        "filled_lots",
    ),
}
EVENT_FIELDS.update(STAKING_EVENT_FIELDS)


def event_to_dict(event: Sequence[Any]) -> dict[str, Any]:
    """Name an event's fields (events are tuples ``(kind, *fields)`` for speed)."""
    names = EVENT_FIELDS[event[0]]
    out: dict[str, Any] = {"kind": event[0]}
    out.update(zip(names, event[1:], strict=True))
    return out


# ---- results --------------------------------------------------------------------------------


class BlockContext:
    __slots__ = ("height", "proposer", "timestamp_ms")

    def __init__(self, height: int, timestamp_ms: int, proposer: bytes = b"") -> None:
        self.height = height
        self.timestamp_ms = timestamp_ms
        self.proposer = proposer


class ActionResult:
    """One action's outcome: ``code`` (``ok`` or a rejection) and a human ``message``.

    For orders, ``order_id``, ``filled_lots`` and ``status`` (resting, partially_filled, filled,
    cancelled) describe what happened; ``count`` is the number of orders a CancelAll cancelled.
    """

    __slots__ = ("code", "count", "filled_lots", "message", "order_id", "status")

    def __init__(
        self,
        code: str,
        message: str = "",
        order_id: int = 0,
        filled_lots: int = 0,
        status: str = "",
        count: int = 0,
    ) -> None:
        self.code = code
        self.message = message
        self.order_id = order_id
        self.filled_lots = filled_lots
        self.status = status
        self.count = count

    @property
    def ok(self) -> bool:
        return self.code == OK

    def to_obj(self) -> list[Any]:
        return [self.code, self.message, self.order_id, self.filled_lots, self.status, self.count]

    def __repr__(self) -> str:
        return (
            f"ActionResult({self.code!r}, {self.message!r}, oid={self.order_id}, "
            f"filled={self.filled_lots}, status={self.status!r})"
        )


class TxResult:
    __slots__ = ("actions", "code", "message", "tx_id")

    def __init__(self, tx_id: bytes, code: str, message: str, actions: list[ActionResult]):
        self.tx_id = tx_id
        self.code = code
        self.message = message
        self.actions = actions

    def to_obj(self) -> list[Any]:
        return [self.tx_id, self.code, self.message, [a.to_obj() for a in self.actions]]


class BlockResult:
    __slots__ = ("events", "tx_results", "writes")

    def __init__(
        self,
        tx_results: list[TxResult],
        events: list[tuple[Any, ...]],
        writes: list[tuple[bytes, bytes | None]],
    ) -> None:
        self.tx_results = tx_results
        self.events = events
        self.writes = writes


# ---- the state -------------------------------------------------------------------------------


class ExchangeState(ExchangeCore):
    """The complete exchange state. Build with :meth:`from_genesis` or :meth:`from_entries`."""

    __slots__ = ()

    @classmethod
    def from_genesis(cls, genesis: Genesis) -> ExchangeState:
        validate_genesis(genesis)
        st = cls(genesis)
        st.risk = RiskIndex()
        st.triggers = TriggerBook()
        if genesis.parameters.insurance_fund_atoms:
            vault = st.account(VAULT)
            st.balance(vault, 0).available_atoms += genesis.parameters.insurance_fund_atoms
            st.vault_peak.amount_atoms = genesis.parameters.insurance_fund_atoms
        for fb in genesis.balances:
            acct = st.account(fb.account)
            st.balance(acct, fb.asset_id).available_atoms += fb.amount_atoms
        st.dirty = []  # genesis state is written whole by the storage from entries()
        return st

    @classmethod
    def from_entries(
        cls,
        genesis: Genesis,
        entries: Sequence[tuple[bytes, bytes]],
        staking_params: StakingParams | None = None,
    ) -> ExchangeState:
        """Rebuild the full in-memory state (books in time priority, indexes) from entries."""
        from state_machine.codec import decode_raw

        st = cls(genesis)
        st.risk = RiskIndex()  # evaluates every margin unit at the first end_block
        st.triggers = TriggerBook()
        orders: list[Order] = []
        triggers: list[tuple[bytes, Any]] = []
        staking_entries: list[tuple[bytes, bytes]] = []
        for key, value in entries:
            v = decode_raw(value)
            p = key[0]
            if p == P_META:
                check(v[0] == st.genesis_hash, "entries belong to another genesis")
                st.height, st.timestamp_ms, st.next_seq, st.next_withdrawal_id = v[1:5]
            elif p == P_BALANCE:
                acct = st.account(key[1:33])
                bal = st.balance(acct, int.from_bytes(key[33:37], "big"))
                bal.available_atoms, bal.held_atoms = v
            elif p == P_POSITION:
                acct = st.account(key[1:33])
                market = st.markets[int.from_bytes(key[33:37], "big")]
                pos = st.position(acct, market)
                (
                    pos.size_lots,
                    pos.entry_value,
                    pos.realized_pnl_atoms,
                    pos.leverage,
                    pos.isolated,
                    pos.isolated_margin_atoms,
                    pos.funding_index,
                    pos.liquidation_cooldown_ms,
                ) = v
            elif p == P_ORDER:
                mid = int.from_bytes(key[1:5], "big")
                acct = st.account(v[2])
                o = Order(
                    v[0], v[1], mid, acct, v[3], v[4], v[5], v[8], v[9], v[10], v[11], v[13], v[14]
                )
                o.orig_lots, o.filled_lots, o.hold_atoms = v[6], v[7], v[12]
                o.stored = True
                orders.append(o)
            elif p == P_MARKET:
                ms = st.mstates[int.from_bytes(key[1:5], "big")]
                (
                    ms.oracle_price_ticks,
                    ms.oracle_time_ms,
                    ms.mark_price_ticks,
                    ms.last_trade_price_ticks,
                    ms.last_trade_time_ms,
                    ms.open_interest_lots,
                    ms.volume_lots,
                    ms.basis_ema_ticks,
                    ms.mark_time_ms,
                    ms.funding_index,
                    ms.next_funding_ms,
                    ms.premium_sum_ppb,
                    ms.premium_samples,
                    ms.funding_dust_scaled,
                    ms.funding_rate_ppb,
                ) = v
            elif p == P_ORACLE:
                mid = int.from_bytes(key[1:5], "big")
                sub = OracleSubmission(mid, key[5:37], v[0], v[1])
                st.oracle_subs[mid][sub.validator] = sub
            elif p == P_NONCES:
                st.nonces.restore(key[1:33], v)
                st.nonce_entry(key[1:33])
            elif p == P_FEES:
                st.fee_pools[int.from_bytes(key[1:5], "big")].amount_atoms = v[0]
            elif p == P_ASSET:
                st.asset_totals[int.from_bytes(key[1:5], "big")].amount_atoms = v[0]
            elif p == P_INSURANCE:
                check(key == st.vault_peak.state_key(), "vault record of an asset other than USDC")
                st.vault_peak.amount_atoms = v[0]
            elif p == P_TRIGGER:
                triggers.append((key, v))
            elif p == P_WITHDRAWAL:
                wid = int.from_bytes(key[1:9], "big")
                st.withdrawals[wid] = Withdrawal(wid, v[0], v[1], v[2], v[3], v[4])
            elif is_staking_key(key):
                staking_entries.append((key, value))
            else:
                check(False, f"unknown state key prefix {p}")
        for key, v in triggers:
            t = trigger_from_entry(st, key, v)
            t.stored = True
            st.triggers.add(t)
        orders.sort(key=lambda o: o.seq)
        for o in orders:
            rest_order(st, st.markets[o.market_id], o)
            o.dirty = False
        st.dirty = []
        if staking_params is not None:
            st.staking = staking_from_entries(st, staking_params, staking_entries)
            follow_active_set(st)
        else:
            check(not staking_entries, "staking entries but staking is not enabled")
        return st


# ---- block -----------------------------------------------------------------------------------

# Execution class of each non-placement action (DESIGN section 4): 0 non-order actions,
# 1 cancels, 3 amends (with the other orders; post-only placements are class 2).
ACTION_CLASS: dict[type, int] = {
    OracleUpdate: 0,
    Transfer: 0,
    WithdrawRequest: 0,
    SetLeverage: 0,
    AdjustIsolatedMargin: 0,
    CancelOrder: 1,
    CancelByClientId: 1,
    CancelAll: 1,
    AmendOrder: 3,
    **dict.fromkeys(STAKING_ACTIONS, 0),
}


def apply_block(
    state: ExchangeState,
    ctx: BlockContext,
    txs: Sequence[Transaction],
    tx_ids: Sequence[bytes] | None = None,
) -> BlockResult:
    """Execute one committed block. Signatures are already verified by the caller.

    ``tx_ids`` may pass the already computed transaction ids (else they are computed here).
    """
    st = state
    check(ctx.height == st.height + 1, f"block height {ctx.height} after {st.height}")
    check(ctx.timestamp_ms >= st.timestamp_ms, "block time went backwards")
    st.events = []
    begin_block(st, ctx)
    now = ctx.timestamp_ms
    chain_id = st.genesis.chain_id
    nonces = st.nonces
    nonce_entries = st.nonce_entries
    accounts = st.accounts
    q_other: list[tuple[list[Any], int, Account, Any]] = []
    q_cancel: list[tuple[list[Any], int, Account, Any]] = []
    q_alo: list[tuple[list[Any], int, Account, Any]] = []
    q_order: list[tuple[list[Any], int, Account, Any]] = []
    tx_results: list[TxResult] = []
    queues = (q_other, q_cancel, q_alo, q_order)
    for ti, tx in enumerate(txs):
        tx_id = tx_ids[ti] if tx_ids is not None else tx.tx_id()
        code = OK
        msg = ""
        if tx.chain_id != chain_id:
            code, msg = WRONG_CHAIN, f"transaction for chain {tx.chain_id!r}, this is {chain_id!r}"
        elif tx.version != TX_VERSION:
            code, msg = BAD_VERSION, f"unsupported transaction version {tx.version}"
        elif tx.expires_at_ms and tx.expires_at_ms < now:
            code, msg = EXPIRED, f"expired at {tx.expires_at_ms}, block time {now}"
        else:
            nc = nonces.accept(tx.signer, tx.nonce, now)
            if nc is not NonceCheck.OK:
                code, msg = nc.value, f"nonce {tx.nonce} rejected: {nc.value}"
        actions = tx.actions
        if code != OK:
            rej = ActionResult(code, msg)
            tx_results.append(TxResult(tx_id, code, msg, [rej] * len(actions)))
            continue
        signer = tx.signer
        # Inlined st.touch(st.nonce_entry(signer)) and st.account(signer): once per transaction.
        entry = nonce_entries.get(signer)
        if entry is None:
            entry = st.nonce_entry(signer)
        if not entry.dirty:
            entry.dirty = True
            st.dirty.append(entry)
        acct = accounts.get(signer)
        if acct is None:
            acct = st.account(signer)
        results: list[Any] = [None] * len(actions)
        tx_results.append(TxResult(tx_id, OK, "", results))
        for ai, a in enumerate(actions):
            if isinstance(a, PlaceOrder):
                (q_alo if a.tif == TIF_ALO else q_order).append((results, ai, acct, a))
            else:
                queues[ACTION_CLASS[type(a)]].append((results, ai, acct, a))
    dispatch = DISPATCH
    for queue in queues:
        for results, ai, acct, a in queue:
            results[ai] = dispatch[type(a)](st, acct, a)
    end_block(st, ctx)
    return BlockResult(tx_results, st.events, st.take_writes())


def process_staking(st: ExchangeCore, acct: Account, a: StakingAction) -> ActionResult:
    """Staking actions run in ``state_machine/staking`` (see its hook)."""
    result = run_staking_action(st, acct.pubkey, a)
    return ActionResult(result.code, result.message)


def begin_block(st: ExchangeCore, ctx: BlockContext) -> None:
    st.height = ctx.height
    st.timestamp_ms = ctx.timestamp_ms
    staking_begin_block(st)
    for mid, subs in st.oracle_subs.items():
        if subs:
            update_oracle(st, st.markets[mid])


def end_block(st: ExchangeCore, ctx: BlockContext) -> None:
    """Mark prices, funding, liquidations (state_machine.risk); staking's epoch end."""
    end_block_risk(st, ctx.timestamp_ms)
    staking_end_block(st)


def place_internal_order(
    st: ExchangeCore,
    acct: Account,
    market_id: int,
    is_buy: bool,
    size_lots: int,
    why: str,
    worst_price_ticks: int = 0,
) -> int:
    """A reduce-only IOC market order the engine sends for an account, filling no worse than
    ``worst_price_ticks`` if given (and the band edge); returns lots filled."""
    order = PlaceOrder(
        market_id, is_buy, KIND_MARKET, TIF_IOC, worst_price_ticks, size_lots, 0, True, 0, 0
    )
    res = process_place_order(st, acct, order)
    st.events.append(("internal_order", why, acct.pubkey, market_id, res.code, res.filled_lots))
    return res.filled_lots


# ---- oracle -----------------------------------------------------------------------------------


def weighted_median(prices_and_powers: list[tuple[int, int]]) -> int:
    """Lower stake-weighted median: the smallest price whose cumulative power reaches half."""
    items = sorted(prices_and_powers)
    total = sum(w for _, w in items)
    acc = 0
    for price, w in items:
        acc += w
        if 2 * acc >= total:
            return price
    return 0


def update_oracle(st: ExchangeCore, market: Market) -> None:
    """Oracle = stake-weighted median of fresh submissions; unchanged if none is fresh."""
    mid = market.market_id
    now = st.timestamp_ms
    max_age = market.oracle_max_age_ms
    power = st.validator_power
    # Submissions of validators no longer in the active set (staking) weigh nothing.
    fresh = [
        (s.price_ticks, power.get(v, 0))
        for v, s in st.oracle_subs[mid].items()
        if now - s.timestamp_ms <= max_age and v in power
    ]
    if not fresh:
        return
    price = weighted_median(fresh)
    ms = st.mstates[mid]
    if price != ms.oracle_price_ticks:
        ms.oracle_price_ticks = price
        if not market.is_perp or ms.mark_price_ticks == 0:
            ms.mark_price_ticks = price  # perps: the risk engine recomputes it at block end
        ms.oracle_time_ms = now
        st.touch(ms)
        st.events.append(("oracle", mid, price))


def process_oracle_update(st: ExchangeCore, acct: Account, a: OracleUpdate) -> ActionResult:
    if acct.pubkey not in st.validator_power:
        return ActionResult(NOT_VALIDATOR, "oracle prices are accepted only from validators")
    seen: list[int] = []
    for p in a.prices:
        market = st.markets.get(p.market_id)
        if market is None:
            return ActionResult(UNKNOWN_MARKET, f"no market {p.market_id}")
        if p.price_ticks == 0 or p.price_ticks > market.max_price_ticks:
            return ActionResult(TICK_SIZE, f"price {p.price_ticks} out of range")
        if p.market_id in seen:
            return ActionResult(INVALID_ORDER, f"market {p.market_id} twice in one update")
        seen.append(p.market_id)
    now = st.timestamp_ms
    for p in a.prices:
        subs = st.oracle_subs[p.market_id]
        sub = subs.get(acct.pubkey)
        if sub is None:
            sub = OracleSubmission(p.market_id, acct.pubkey, p.price_ticks, now)
            subs[acct.pubkey] = sub
        else:
            sub.price_ticks = p.price_ticks
            sub.timestamp_ms = now
        st.touch(sub)
        update_oracle(st, st.markets[p.market_id])
    return ActionResult(OK, "ok", count=len(a.prices))


# ---- orders -------------------------------------------------------------------------------------


def client_id_open(acct: Account, cid: int) -> bool:
    """True if a resting order or a waiting trigger of the account holds client id ``cid``."""
    if not cid:
        return False
    if cid in acct.client_ids:
        return True
    return bool(acct.triggers) and any(t.client_id == cid for t in acct.triggers.values())


def _reject(
    st: ExchangeCore, acct: Account, mid: int, cid: int, code: str, msg: str
) -> ActionResult:
    st.events.append(("order_rejected", mid, acct.pubkey, cid, code, msg))
    return ActionResult(code, msg)


def process_place_order(st: ExchangeCore, acct: Account, a: PlaceOrder) -> ActionResult:
    mid = a.market_id
    book = st.books.get(mid)
    cid = a.client_id
    if book is None:
        return _reject(st, acct, mid, cid, UNKNOWN_MARKET, f"no market {mid}")
    market = book.market
    kind = a.kind
    size = a.size_lots
    if size == 0 or size > market.max_order_lots:
        return _reject(
            st, acct, mid, cid, LOT_SIZE, f"size must be 1..{market.max_order_lots} lots"
        )
    if kind in TRIGGER_KINDS:
        return process_place_trigger(st, acct, a)
    ms = book.mstate
    ref = ms.oracle_price_ticks or ms.last_trade_price_ticks
    is_buy = a.is_buy
    tif = a.tif
    band = market.price_band_ppm
    if kind == KIND_MARKET:
        if tif == TIF_ALO:
            return _reject(st, acct, mid, cid, INVALID_ORDER, "a market order cannot be post-only")
        if tif != TIF_FOK:
            tif = TIF_IOC
        if ref == 0:
            return _reject(st, acct, mid, cid, NO_REFERENCE_PRICE, "no oracle or last trade")
        if is_buy:
            price = min(ref * (PPM + band) // PPM, market.max_price_ticks)
            if a.price_ticks:
                price = min(price, a.price_ticks)
        else:
            price = max(-((-ref * (PPM - band)) // PPM), 1)
            if a.price_ticks:
                price = max(price, a.price_ticks)
        notional_price = ref
    else:
        price = a.price_ticks
        if price == 0 or price > market.max_price_ticks:
            return _reject(
                st, acct, mid, cid, TICK_SIZE, f"price must be 1..{market.max_price_ticks} ticks"
            )
        if ref and (price * PPM > ref * (PPM + band) or price * PPM < ref * (PPM - band)):
            return _reject(
                st,
                acct,
                mid,
                cid,
                PRICE_BAND,
                f"price {price} is more than {band} ppm from reference {ref}",
            )
        notional_price = price
    if client_id_open(acct, cid):
        return _reject(st, acct, mid, cid, DUPLICATE_CLIENT_ID, f"client id {cid} is open")
    if tif in (TIF_GTC, TIF_ALO) and open_order_count(acct) >= st.max_open_orders:
        return _reject(st, acct, mid, cid, TOO_MANY_ORDERS, "open order limit reached")
    perp = book.perp
    reduce_only = a.reduce_only
    pos: Position | None = None
    if perp:
        pos = acct.positions.get(mid)
        if pos is None:
            pos = st.position(acct, market)
        if reduce_only:
            s = pos.size_lots
            if s == 0 or (s > 0) == is_buy:
                return _reject(
                    st,
                    acct,
                    mid,
                    cid,
                    REDUCE_ONLY_WOULD_INCREASE,
                    "reduce-only order would open or increase a position",
                )
            if size > abs(s):
                size = abs(s)  # a reduce-only order is never larger than the position
    elif reduce_only:
        return _reject(st, acct, mid, cid, INVALID_ORDER, "reduce-only applies to perpetuals")
    tla = market.tick_lot_atoms
    if not reduce_only and notional_price * size * tla < market.min_notional_atoms:
        return _reject(
            st, acct, mid, cid, MIN_NOTIONAL, f"notional below {market.min_notional_atoms} atoms"
        )
    opp = book.asks if is_buy else book.bids
    if tif == TIF_ALO:
        best = opp.best_price()
        if best and (price >= best if is_buy else price <= best):
            return _reject(
                st,
                acct,
                mid,
                cid,
                POST_ONLY_WOULD_CROSS,
                f"post-only order at {price} would cross {best}",
            )
    elif tif == TIF_FOK and not fok_fillable(st, market, opp, acct, is_buy, price, size, a.stp):
        return _reject(st, acct, mid, cid, FOK_NOT_FILLED, "fill-or-kill cannot fill entirely")
    hold = 0
    bal: Balance | None = None
    if perp:
        if not reduce_only:
            mark = ms.mark_price_ticks
            if mark == 0:
                return _reject(st, acct, mid, cid, NO_REFERENCE_PRICE, "no oracle price")
            adverse = (price - mark if is_buy else mark - price) * size * tla
            if adverse < 0:
                adverse = 0
            fee_ppm = market.maker_fee_ppm if tif == TIF_ALO else market.taker_fee_ppm
            fee = -((-(price * size * tla * fee_ppm)) // PPM)
            if is_buy:
                fc = free_collateral(st, acct, mid, size, 0)
            else:
                fc = free_collateral(st, acct, mid, 0, size)
            if fc - adverse - fee < 0:
                return _reject(
                    st,
                    acct,
                    mid,
                    cid,
                    INSUFFICIENT_MARGIN,
                    f"free collateral {fc} atoms does not cover the order",
                )
    else:
        if is_buy:
            asset = market.quote_asset_id
            hold = price * size * tla
        else:
            asset = market.base_asset_id
            hold = size * market.lot_base_atoms
        bal = acct.balances.get(asset)
        if bal is None:
            bal = st.balance(acct, asset)
        if bal.available_atoms < hold:
            return _reject(
                st,
                acct,
                mid,
                cid,
                INSUFFICIENT_BALANCE,
                f"needs {hold} atoms, {bal.available_atoms} available",
            )
    seq = st.next_seq
    st.next_seq = seq + 1
    order = Order(
        seq,
        seq,
        mid,
        acct,
        is_buy,
        price,
        size,
        cid,
        tif,
        reduce_only,
        a.stp,
        st.timestamp_ms,
        kind,
    )
    if bal is not None:
        bal.available_atoms -= hold
        bal.held_atoms += hold
        order.hold_atoms = hold
        if not bal.dirty:
            bal.dirty = True
            st.dirty.append(bal)
    events = st.events
    events.append(
        ("order_accepted", mid, seq, acct.pubkey, is_buy, price, size, tif, cid, reduce_only)
    )
    keys = opp.keys
    if (tif in (TIF_GTC, TIF_ALO)) and (
        not keys or ((-keys[-1] > price) if is_buy else (keys[-1] < price))
    ):
        # Fast path, the common case for makers: nothing to match, rest at once. Same effect
        # as execute_order -> rest_order, inlined because it runs for most actions.
        side = book.bids if is_buy else book.asks
        level = side.levels.get(price)
        if level is None:
            level = Level(price)
            side.levels[price] = level
            insort(side.keys, price if is_buy else -price)
        level.orders.append(order)
        level.total_lots += size
        level.live_count += 1
        order.level = level
        order.live = True
        st.orders[seq] = order
        acct.orders[seq] = order
        if cid:
            acct.client_ids[cid] = order
        if pos is not None and not reduce_only:
            if is_buy:
                pos.buy_lots += size
            else:
                pos.sell_lots += size
        order.dirty = True
        st.dirty.append(order)
        events.append(("order_rested", mid, seq, acct.pubkey, price, size))
        return ActionResult(OK, ST_RESTING, seq, 0, ST_RESTING)
    return execute_order(st, market, book, order)


def process_place_trigger(st: ExchangeCore, acct: Account, a: PlaceOrder) -> ActionResult:
    """Validate and store a stop / take-profit order (see triggers.py); it holds no margin."""
    mid = a.market_id
    cid = a.client_id
    market = st.markets[mid]
    if not market.is_perp:
        return _reject(st, acct, mid, cid, NOT_PERP, "trigger orders are for perpetuals")
    trig = a.trigger_price_ticks
    if trig == 0 or trig > market.max_price_ticks:
        return _reject(st, acct, mid, cid, TICK_SIZE, "trigger price out of range")
    limit_kind = a.kind in (KIND_STOP_LIMIT, KIND_TAKE_PROFIT_LIMIT)
    if limit_kind and (a.price_ticks == 0 or a.price_ticks > market.max_price_ticks):
        return _reject(st, acct, mid, cid, TICK_SIZE, "limit price out of range")
    if client_id_open(acct, cid):
        return _reject(st, acct, mid, cid, DUPLICATE_CLIENT_ID, f"client id {cid} is open")
    if open_order_count(acct) >= st.max_open_orders:
        return _reject(st, acct, mid, cid, TOO_MANY_ORDERS, "open order limit reached")
    if not a.reduce_only and trig * a.size_lots * market.tick_lot_atoms < (
        market.min_notional_atoms
    ):
        return _reject(
            st, acct, mid, cid, MIN_NOTIONAL, f"notional below {market.min_notional_atoms} atoms"
        )
    t = place_trigger(st, acct, a, a.size_lots)
    return ActionResult(OK, ST_WAITING, t.order_id, 0, ST_WAITING)


def execute_order(st: ExchangeCore, market: Market, book: Book, order: Order) -> ActionResult:
    """Match an accepted order, then rest or cancel its remainder."""
    is_buy = order.is_buy
    opp = book.asks if is_buy else book.bids
    filled = 0
    stop = ""
    keys = opp.keys
    if keys:
        best = -keys[-1] if is_buy else keys[-1]
        if (best <= order.price_ticks) if is_buy else (best >= order.price_ticks):
            filled, stop = match_order(st, market, opp, order)
    remaining = order.size_lots
    tif = order.tif
    oid = order.order_id
    if remaining == 0:
        _release_hold(st, market, order)
        return ActionResult(OK, ST_FILLED, oid, filled, ST_FILLED)
    if not stop and tif in (TIF_GTC, TIF_ALO):
        if market.kind != MARKET_PERP:
            # The hold now only needs to cover the resting remainder at the limit price.
            need = (
                order.price_ticks * remaining * market.tick_lot_atoms
                if is_buy
                else remaining * market.lot_base_atoms
            )
            excess = order.hold_atoms - need
            check(excess >= 0, "spot hold below the resting need")
            if excess:
                bal = order.account.balances[
                    market.quote_asset_id if is_buy else market.base_asset_id
                ]
                bal.held_atoms -= excess
                bal.available_atoms += excess
                order.hold_atoms = need
        rest_order(st, market, order)
        st.events.append(
            (
                "order_rested",
                order.market_id,
                oid,
                order.account.pubkey,
                order.price_ticks,
                remaining,
            )
        )
        status = ST_PARTIAL if filled else ST_RESTING
        return ActionResult(OK, status, oid, filled, status)
    _release_hold(st, market, order)
    reason = stop or R_IOC
    st.events.append(
        ("order_cancelled", order.market_id, oid, order.account.pubkey, remaining, reason)
    )
    if filled:
        return ActionResult(OK, ST_PARTIAL, oid, filled, ST_CANCELLED)
    if stop == R_SELF_TRADE:
        return ActionResult(SELF_TRADE, "cancelled by self-trade prevention", oid, 0, ST_CANCELLED)
    if stop == R_REDUCE_ONLY:
        return ActionResult(
            REDUCE_ONLY_WOULD_INCREASE, "position already closed", oid, 0, ST_CANCELLED
        )
    return ActionResult(NO_LIQUIDITY, "nothing to match at the limit price", oid, 0, ST_CANCELLED)


def rest_order(st: ExchangeCore, market: Market, order: Order) -> None:
    """Put a live order on the book and into every index."""
    book = st.books[order.market_id]
    (book.bids if order.is_buy else book.asks).add(order)
    oid = order.order_id
    st.orders[oid] = order
    acct = order.account
    acct.orders[oid] = order
    if order.client_id:
        acct.client_ids[order.client_id] = order
    if book.perp and not order.reduce_only:
        pos = acct.positions.get(order.market_id)
        if pos is None:
            pos = st.position(acct, market)
        if order.is_buy:
            pos.buy_lots += order.size_lots
        else:
            pos.sell_lots += order.size_lots
    if not order.dirty:
        order.dirty = True
        st.dirty.append(order)


def _unindex(st: ExchangeCore, order: Order) -> None:
    oid = order.order_id
    del st.orders[oid]
    acct = order.account
    del acct.orders[oid]
    if order.client_id:
        del acct.client_ids[order.client_id]


def _release_hold(st: ExchangeCore, market: Market, order: Order) -> None:
    """Return a finished or cancelled order's spot hold to the available balance."""
    hold = order.hold_atoms
    if hold:
        asset = market.quote_asset_id if order.is_buy else market.base_asset_id
        bal = order.account.balances[asset]
        bal.held_atoms -= hold
        bal.available_atoms += hold
        order.hold_atoms = 0
        st.touch(bal)


def cancel_resting(st: ExchangeCore, order: Order, reason: str) -> None:
    """Remove a resting order from the book and indexes, releasing what it reserved."""
    book = st.books[order.market_id]
    (book.bids if order.is_buy else book.asks).remove(order)
    oid = order.order_id
    del st.orders[oid]
    acct = order.account
    del acct.orders[oid]
    if order.client_id:
        del acct.client_ids[order.client_id]
    if order.hold_atoms:
        _release_hold(st, book.market, order)
    if book.perp and not order.reduce_only:
        pos = acct.positions[order.market_id]
        if order.is_buy:
            pos.buy_lots -= order.size_lots
        else:
            pos.sell_lots -= order.size_lots
    if not order.dirty:
        order.dirty = True
        st.dirty.append(order)
    st.events.append(
        ("order_cancelled", order.market_id, oid, acct.pubkey, order.size_lots, reason)
    )


def _ro_capacity(order: Order) -> int:
    """Lots a reduce-only order may still fill: its account's opposite position."""
    pos = order.account.positions.get(order.market_id)
    s = pos.size_lots if pos is not None else 0
    if order.is_buy:
        return -s if s < 0 else 0
    return s if s > 0 else 0


def match_order(st: ExchangeCore, market: Market, opp: BookSide, taker: Order) -> tuple[int, str]:
    """Fill ``taker`` against ``opp`` in price-time priority. Returns (filled, stop reason)."""
    levels = opp.levels
    keys = opp.keys
    is_buy = taker.is_buy
    limit = taker.price_ticks
    perp = market.kind == MARKET_PERP
    tacct = taker.account
    stp = taker.stp
    filled = 0
    orders = st.orders
    while keys:
        k = keys[-1]
        price = -k if is_buy else k
        if (price > limit) if is_buy else (price < limit):
            break
        level = levels[price]
        dq = level.orders
        while dq:
            maker = dq[0]
            if not maker.live:
                dq.popleft()
                level.dead_count -= 1
                continue
            if maker.account is tacct:
                if stp == STP_CANCEL_TAKER:
                    return filled, R_SELF_TRADE
                cancel_resting(st, maker, R_SELF_TRADE)
                if stp == STP_CANCEL_BOTH:
                    return filled, R_SELF_TRADE
                check(stp == STP_CANCEL_RESTING, "unknown stp mode")
                if level.live_count == 0:
                    break
                dq = level.orders
                continue
            qty = taker.size_lots
            msize = maker.size_lots
            if msize < qty:
                qty = msize
            if perp and (maker.reduce_only or taker.reduce_only):
                if maker.reduce_only:
                    cap = _ro_capacity(maker)
                    if cap == 0:
                        cancel_resting(st, maker, R_REDUCE_ONLY)
                        if level.live_count == 0:
                            break
                        dq = level.orders
                        continue
                    if cap < qty:
                        qty = cap
                if taker.reduce_only:
                    cap = _ro_capacity(taker)
                    if cap == 0:
                        return filled, R_REDUCE_ONLY
                    if cap < qty:
                        qty = cap
            if perp:
                settle_perp_fill(st, market, taker, maker, price, qty)
            else:
                settle_spot_fill(st, market, taker, maker, price, qty)
            filled += qty
            taker.size_lots -= qty
            taker.filled_lots += qty
            maker.size_lots = msize - qty
            maker.filled_lots += qty
            level.total_lots -= qty
            if not maker.dirty:
                maker.dirty = True
                st.dirty.append(maker)
            if msize == qty:
                dq.popleft()
                maker.live = False
                maker.level = None
                level.live_count -= 1
                oid = maker.order_id
                del orders[oid]
                macct = maker.account
                del macct.orders[oid]
                if maker.client_id:
                    del macct.client_ids[maker.client_id]
            if taker.size_lots == 0:
                break
        if level.live_count == 0 and levels.get(price) is level:
            opp.drop_level(level)
        if taker.size_lots == 0:
            break
    return filled, ""


def fok_fillable(
    st: ExchangeCore,
    market: Market,
    opp: BookSide,
    acct: Account,
    is_buy: bool,
    limit: int,
    size: int,
    stp: int,
) -> bool:
    """Dry run of matching: would a fill-or-kill order fill entirely?

    Mirrors match_order exactly: own orders are skipped (cancel-resting) or stop the taker,
    reduce-only makers fill at most their account's remaining opposite position, tracking
    how earlier fills in this dry run changed each maker's position.
    """
    perp = market.kind == MARKET_PERP
    moved: dict[bytes, int] = {}  # maker account -> position change so far in this dry run
    need = size
    sign = 1 if opp.is_bid else -1
    for k in reversed(opp.keys):
        price = sign * k
        if (price > limit) if is_buy else (price < limit):
            break
        for o in opp.levels[price].orders:
            if not o.live:
                continue
            if o.account is acct:
                if stp == STP_CANCEL_RESTING:
                    continue
                return False
            q = o.size_lots
            if perp and o.reduce_only:
                pos = o.account.positions.get(o.market_id)
                s = (pos.size_lots if pos is not None else 0) + moved.get(o.account.pubkey, 0)
                cap = (-s if s < 0 else 0) if o.is_buy else (s if s > 0 else 0)
                if cap == 0:
                    continue
                q = min(q, cap)
            q = min(q, need)
            if perp:
                pk = o.account.pubkey
                moved[pk] = moved.get(pk, 0) + (q if o.is_buy else -q)
            need -= q
            if need == 0:
                return True
    return False


def settle_spot_fill(
    st: ExchangeCore, market: Market, taker: Order, maker: Order, price: int, qty: int
) -> None:
    """Move base and quote between the two accounts; fees in the asset each one receives."""
    quote_atoms = price * qty * market.tick_lot_atoms
    base_atoms = qty * market.lot_base_atoms
    if taker.is_buy:
        buyer, seller = taker, maker
        buyer_fee_ppm, seller_fee_ppm = market.taker_fee_ppm, market.maker_fee_ppm
    else:
        buyer, seller = maker, taker
        buyer_fee_ppm, seller_fee_ppm = market.maker_fee_ppm, market.taker_fee_ppm
    base_fee = -((-base_atoms * buyer_fee_ppm) // PPM)
    quote_fee = -((-quote_atoms * seller_fee_ppm) // PPM)
    qa = market.quote_asset_id
    ba = market.base_asset_id
    bacct = buyer.account
    sacct = seller.account
    touch = st.touch
    # buyer: quote leaves its hold, base arrives (minus fee)
    bq = bacct.balances[qa]
    bq.held_atoms -= quote_atoms
    buyer.hold_atoms -= quote_atoms
    bb = bacct.balances.get(ba)
    if bb is None:
        bb = st.balance(bacct, ba)
    bb.available_atoms += base_atoms - base_fee
    # seller: base leaves its hold, quote arrives (minus fee)
    sb = sacct.balances[ba]
    sb.held_atoms -= base_atoms
    seller.hold_atoms -= base_atoms
    sq = sacct.balances.get(qa)
    if sq is None:
        sq = st.balance(sacct, qa)
    sq.available_atoms += quote_atoms - quote_fee
    check(buyer.hold_atoms >= 0 and seller.hold_atoms >= 0, "spot hold overdrawn")
    touch(bq)
    touch(bb)
    touch(sb)
    touch(sq)
    if base_fee:
        pool = st.fee_pools[ba]
        pool.amount_atoms += base_fee
        touch(pool)
    if quote_fee:
        pool = st.fee_pools[qa]
        pool.amount_atoms += quote_fee
        touch(pool)
    if taker.is_buy:
        tfee, mfee = base_fee, quote_fee
    else:
        tfee, mfee = quote_fee, base_fee
    ms = st.mstates[market.market_id]
    ms.last_trade_price_ticks = price
    ms.last_trade_time_ms = st.timestamp_ms
    ms.volume_lots += qty
    touch(ms)
    st.events.append(
        (
            "fill",
            market.market_id,
            price,
            qty,
            taker.is_buy,
            taker.order_id,
            maker.order_id,
            taker.account.pubkey,
            maker.account.pubkey,
            tfee,
            mfee,
            0,
            0,
        )
    )


def apply_position_fill(
    st: ExchangeCore, acct: Account, market: Market, d: int, price: int, fee_atoms: int
) -> int:
    """Apply a signed fill of ``d`` lots at ``price`` to ``acct``'s position; returns its PnL.

    Realised PnL uses a cost basis removed pro rata and rounded against the user (ceiling of
    the signed basis). Cross: PnL and fee settle in USDC available. Isolated: opening moves the
    IM of the added lots from cross into the isolated margin; closing credits PnL to the
    isolated margin and releases its pro-rata share to cross (all of it on a full close).
    """
    pos = acct.positions.get(market.market_id)
    if pos is None:
        pos = st.position(acct, market)
    if pos.funding_index != st.mstates[market.market_id].funding_index:
        settle_funding(st, acct, pos)  # funding accrued at the old size settles first
    tla = market.tick_lot_atoms
    s = pos.size_lots
    usdc = acct.balances.get(0)
    if usdc is None:
        usdc = st.balance(acct, 0)
    realized = 0
    if s == 0 or (s > 0) == (d > 0):
        pos.entry_value += price * d
        pos.size_lots = s + d
        if pos.isolated:
            im = -((-(price * abs(d) * tla)) // pos.leverage)
            usdc.available_atoms -= im
            pos.isolated_margin_atoms += im
    else:
        abs_s = s if s > 0 else -s
        abs_d = d if d > 0 else -d
        q = abs_d if abs_d < abs_s else abs_s
        removed = -((-pos.entry_value * q) // abs_s)
        realized = ((price * q if s > 0 else -price * q) - removed) * tla
        pos.entry_value -= removed
        s_new = s + (q if d > 0 else -q)
        if pos.isolated:
            iso = pos.isolated_margin_atoms + realized
            if s_new == 0:
                # A negative remainder is bad debt of the isolated position: it stays in the
                # record for the risk engine (vault / ADL), never taken from cross collateral.
                release = iso if iso > 0 else 0
            else:
                release = iso * q // abs_s if iso > 0 else 0
            pos.isolated_margin_atoms = iso - release
            usdc.available_atoms += release
        else:
            usdc.available_atoms += realized
        pos.realized_pnl_atoms += realized
        rest = abs_d - q
        if rest:
            check(pos.entry_value == 0 and s_new == 0, "flip without a flat position")
            signed_rest = rest if d > 0 else -rest
            pos.entry_value = price * signed_rest
            s_new = signed_rest
            if pos.isolated:
                im = -((-(price * rest * tla)) // pos.leverage)
                usdc.available_atoms -= im
                pos.isolated_margin_atoms += im
        pos.size_lots = s_new
    usdc.available_atoms -= fee_atoms
    st.touch(usdc)
    st.touch(pos)
    return realized


def settle_perp_fill(
    st: ExchangeCore, market: Market, taker: Order, maker: Order, price: int, qty: int
) -> None:
    mid = market.market_id
    notional = price * qty * market.tick_lot_atoms
    tfee = -((-notional * market.taker_fee_ppm) // PPM)
    mfee = -((-notional * market.maker_fee_ppm) // PPM)
    tacct = taker.account
    macct = maker.account
    tpos = tacct.positions[mid]
    mpos = macct.positions.get(mid)
    if mpos is None:
        mpos = st.position(macct, market)
    t_old = tpos.size_lots
    m_old = mpos.size_lots
    if maker.is_buy:
        tpnl = apply_position_fill(st, tacct, market, -qty, price, tfee)
        mpnl = apply_position_fill(st, macct, market, qty, price, mfee)
        if not maker.reduce_only:
            mpos.buy_lots -= qty
    else:
        tpnl = apply_position_fill(st, tacct, market, qty, price, tfee)
        mpnl = apply_position_fill(st, macct, market, -qty, price, mfee)
        if not maker.reduce_only:
            mpos.sell_lots -= qty
    pool = st.fee_pools[0]
    pool.amount_atoms += tfee + mfee
    st.touch(pool)
    ms = st.mstates[mid]
    t_new = tpos.size_lots
    m_new = mpos.size_lots
    ms.open_interest_lots += (
        (t_new if t_new > 0 else 0)
        - (t_old if t_old > 0 else 0)
        + (m_new if m_new > 0 else 0)
        - (m_old if m_old > 0 else 0)
    )
    ms.last_trade_price_ticks = price
    ms.last_trade_time_ms = st.timestamp_ms
    ms.volume_lots += qty
    st.touch(ms)
    st.events.append(
        (
            "fill",
            mid,
            price,
            qty,
            taker.is_buy,
            taker.order_id,
            maker.order_id,
            tacct.pubkey,
            macct.pubkey,
            tfee,
            mfee,
            tpnl,
            mpnl,
        )
    )


# ---- cancels and amends ----------------------------------------------------------------------


def process_cancel_order(st: ExchangeCore, acct: Account, a: CancelOrder) -> ActionResult:
    order = acct.orders.get(a.order_id)
    trig = acct.triggers.get(a.order_id)
    if order is None and trig is not None and trig.market_id == a.market_id:
        cancel_trigger(st, trig, R_USER)
        return ActionResult(OK, ST_CANCELLED, trig.order_id, 0, ST_CANCELLED)
    if order is None or order.market_id != a.market_id:
        return ActionResult(UNKNOWN_ORDER, f"no open order {a.order_id} in market {a.market_id}")
    cancel_resting(st, order, R_USER)
    return ActionResult(OK, ST_CANCELLED, order.order_id, order.filled_lots, ST_CANCELLED)


def process_cancel_by_client_id(
    st: ExchangeCore, acct: Account, a: CancelByClientId
) -> ActionResult:
    order = acct.client_ids.get(a.client_id) if a.client_id else None
    if order is None and a.client_id:
        for trig in acct.triggers.values():
            if trig.client_id == a.client_id and trig.market_id == a.market_id:
                cancel_trigger(st, trig, R_USER)
                return ActionResult(OK, ST_CANCELLED, trig.order_id, 0, ST_CANCELLED)
    if order is None or order.market_id != a.market_id:
        return ActionResult(UNKNOWN_ORDER, f"no open order with client id {a.client_id}")
    cancel_resting(st, order, R_USER)
    return ActionResult(OK, ST_CANCELLED, order.order_id, order.filled_lots, ST_CANCELLED)


def process_cancel_all(st: ExchangeCore, acct: Account, a: CancelAll) -> ActionResult:
    mid = a.market_id
    if mid is not None and mid not in st.markets:
        return ActionResult(UNKNOWN_MARKET, f"no market {mid}")
    victims = [o for o in acct.orders.values() if mid is None or o.market_id == mid]
    for o in victims:
        cancel_resting(st, o, R_USER)
    trigs = account_triggers(acct, mid)
    for t in trigs:
        cancel_trigger(st, t, R_USER)
    return ActionResult(OK, ST_CANCELLED, count=len(victims) + len(trigs))


def process_amend_order(st: ExchangeCore, acct: Account, a: AmendOrder) -> ActionResult:
    """Change a resting order's price and/or remaining size.

    A size decrease at the same price keeps time priority; a price change or size increase
    loses it (the order gets a new sequence number and is matched again like a new order of the
    same time in force; a post-only order that would cross is rejected and left unchanged).
    """
    order = acct.orders.get(a.order_id)
    if order is None or order.market_id != a.market_id:
        return ActionResult(UNKNOWN_ORDER, f"no open order {a.order_id} in market {a.market_id}")
    market = st.markets[order.market_id]
    price = a.price_ticks
    size = a.size_lots
    oid = order.order_id
    if size == 0 or size > market.max_order_lots:
        return ActionResult(LOT_SIZE, f"size must be 1..{market.max_order_lots} lots")
    if price == 0 or price > market.max_price_ticks:
        return ActionResult(TICK_SIZE, f"price must be 1..{market.max_price_ticks} ticks")
    ms = st.mstates[market.market_id]
    ref = ms.oracle_price_ticks or ms.last_trade_price_ticks
    band = market.price_band_ppm
    if ref and (price * PPM > ref * (PPM + band) or price * PPM < ref * (PPM - band)):
        return ActionResult(PRICE_BAND, f"price {price} is more than {band} ppm from {ref}")
    tla = market.tick_lot_atoms
    if not order.reduce_only and price * size * tla < market.min_notional_atoms:
        return ActionResult(MIN_NOTIONAL, f"notional below {market.min_notional_atoms} atoms")
    perp = market.kind == MARKET_PERP
    is_buy = order.is_buy
    old = order.size_lots
    if price == order.price_ticks and size <= old:
        # Shrink in place: time priority kept.
        delta = old - size
        if delta:
            order.size_lots = size
            order.orig_lots -= delta
            check(order.level is not None, "amended order not resting")
            assert order.level is not None
            order.level.total_lots -= delta
            if perp:
                if not order.reduce_only:
                    pos = acct.positions[order.market_id]
                    if is_buy:
                        pos.buy_lots -= delta
                    else:
                        pos.sell_lots -= delta
            else:
                need = price * size * tla if is_buy else size * market.lot_base_atoms
                excess = order.hold_atoms - need
                bal = acct.balances[market.quote_asset_id if is_buy else market.base_asset_id]
                bal.held_atoms -= excess
                bal.available_atoms += excess
                order.hold_atoms = need
                st.touch(bal)
            st.touch(order)
        st.events.append(
            ("order_amended", order.market_id, oid, acct.pubkey, price, size, order.seq)
        )
        return ActionResult(OK, ST_RESTING, oid, 0, ST_RESTING)
    book = st.books[order.market_id]
    opp = book.asks if is_buy else book.bids
    if order.tif == TIF_ALO:
        best = opp.best_price()
        if best and (price >= best if is_buy else price <= best):
            return ActionResult(POST_ONLY_WOULD_CROSS, f"amended price {price} would cross")
    if perp:
        if not order.reduce_only:
            ms_mark = ms.mark_price_ticks
            adverse = (price - ms_mark if is_buy else ms_mark - price) * size * tla
            if adverse < 0:
                adverse = 0
            d = size - old
            fc = free_collateral(st, acct, order.market_id, d if is_buy else 0, 0 if is_buy else d)
            fee = -((-(price * size * tla * market.taker_fee_ppm)) // PPM)
            if fc - adverse - fee < 0:
                return ActionResult(INSUFFICIENT_MARGIN, f"free collateral {fc} atoms too low")
    else:
        need = price * size * tla if is_buy else size * market.lot_base_atoms
        bal = acct.balances[market.quote_asset_id if is_buy else market.base_asset_id]
        if bal.available_atoms + order.hold_atoms < need:
            return ActionResult(INSUFFICIENT_BALANCE, f"needs {need} atoms")
    # Lose priority: take the order off the book (releasing its reservations), then re-enter
    # it with the same id and a new sequence number.
    side = book.side(is_buy)
    side.remove(order)
    _unindex(st, order)
    _release_hold(st, market, order)
    if perp and not order.reduce_only:
        pos = acct.positions[order.market_id]
        if is_buy:
            pos.buy_lots -= old
        else:
            pos.sell_lots -= old
    seq = st.next_seq
    st.next_seq = seq + 1
    # A fresh object: the old one may still sit dead in its level's deque (lazy removal) and
    # must never come back to life there.
    prev = order
    order = Order(
        oid,
        seq,
        prev.market_id,
        acct,
        is_buy,
        price,
        size,
        prev.client_id,
        prev.tif,
        prev.reduce_only,
        prev.stp,
        st.timestamp_ms,
        prev.kind,
    )
    order.orig_lots = prev.orig_lots + size - old
    order.filled_lots = prev.filled_lots
    order.stored = prev.stored
    if not perp:
        bal = acct.balances[market.quote_asset_id if is_buy else market.base_asset_id]
        need = price * size * tla if is_buy else size * market.lot_base_atoms
        bal.available_atoms -= need
        bal.held_atoms += need
        order.hold_atoms = need
        st.touch(bal)
    st.touch(order)
    st.events.append(("order_amended", order.market_id, oid, acct.pubkey, price, size, seq))
    return execute_order(st, market, book, order)


# ---- non-order actions -----------------------------------------------------------------------


def _usdc_movable(st: ExchangeCore, acct: Account, asset_id: int, amount: int) -> ActionResult:
    """Check that ``amount`` of an asset may leave the account's available balance."""
    if amount == 0:
        return ActionResult(INVALID_AMOUNT, "amount must be positive")
    if asset_id not in st.fee_pools:
        return ActionResult(UNKNOWN_ASSET, f"no asset {asset_id}")
    bal = acct.balances.get(asset_id)
    avail = bal.available_atoms if bal is not None else 0
    if avail < amount:
        return ActionResult(INSUFFICIENT_BALANCE, f"{avail} atoms available")
    if asset_id == 0 and acct.positions and free_collateral(st, acct) - amount < 0:
        return ActionResult(INSUFFICIENT_MARGIN, "would leave initial margin uncovered")
    return ActionResult(OK, "ok")


def process_transfer(st: ExchangeCore, acct: Account, a: Transfer) -> ActionResult:
    if a.to == acct.pubkey:
        return ActionResult(INVALID_RECIPIENT, "cannot transfer to yourself")
    res = _usdc_movable(st, acct, a.asset_id, a.amount_atoms)
    if res.code != OK:
        return res
    src = acct.balances[a.asset_id]
    dst = st.balance(st.account(a.to), a.asset_id)
    src.available_atoms -= a.amount_atoms
    dst.available_atoms += a.amount_atoms
    st.touch(src)
    st.touch(dst)
    st.events.append(("transfer", acct.pubkey, a.to, a.asset_id, a.amount_atoms))
    return res


def process_withdraw(st: ExchangeCore, acct: Account, a: WithdrawRequest) -> ActionResult:
    res = _usdc_movable(st, acct, a.asset_id, a.amount_atoms)
    if res.code != OK:
        return res
    bal = acct.balances[a.asset_id]
    bal.available_atoms -= a.amount_atoms
    st.touch(bal)
    wid = st.next_withdrawal_id
    st.next_withdrawal_id = wid + 1
    w = Withdrawal(wid, acct.pubkey, a.asset_id, a.amount_atoms, a.destination, st.height)
    st.withdrawals[wid] = w
    st.touch(w)
    total = st.asset_totals[a.asset_id]
    total.amount_atoms += a.amount_atoms
    st.touch(total)
    st.events.append(("withdrawal", wid, acct.pubkey, a.asset_id, a.amount_atoms, a.destination))
    return ActionResult(OK, "ok", order_id=wid)


def _perp_market(st: ExchangeCore, mid: int) -> tuple[Market | None, ActionResult | None]:
    market = st.markets.get(mid)
    if market is None:
        return None, ActionResult(UNKNOWN_MARKET, f"no market {mid}")
    if market.kind != MARKET_PERP:
        return None, ActionResult(NOT_PERP, f"market {mid} is not a perpetual")
    return market, None


def _has_open_orders(acct: Account, mid: int) -> bool:
    return any(o.market_id == mid for o in acct.orders.values())


def process_set_leverage(st: ExchangeCore, acct: Account, a: SetLeverage) -> ActionResult:
    market, err = _perp_market(st, a.market_id)
    if market is None:
        assert err is not None
        return err
    if not 1 <= a.leverage <= market.max_leverage:
        return ActionResult(INVALID_LEVERAGE, f"leverage must be 1..{market.max_leverage}")
    pos = st.position(acct, market)
    busy = pos.size_lots != 0 or _has_open_orders(acct, market.market_id)
    if a.isolated != pos.isolated and busy:
        return ActionResult(POSITION_OPEN, "close the position and orders to change margin mode")
    old = (pos.leverage, pos.isolated)
    pos.leverage, pos.isolated = a.leverage, a.isolated
    ok = free_collateral(st, acct) >= 0
    if ok and pos.isolated and pos.size_lots:
        price = st.mstates[market.market_id].mark_price_ticks
        equity = pos.isolated_margin_atoms + unrealized_pnl_atoms(pos, price)
        ok = equity >= position_im_atoms(pos, price)
    if not ok:
        pos.leverage, pos.isolated = old
        return ActionResult(INSUFFICIENT_MARGIN, "margin does not cover the new leverage")
    st.touch(pos)
    st.events.append(("leverage", acct.pubkey, market.market_id, a.leverage, a.isolated))
    return ActionResult(OK, "ok")


def process_adjust_isolated_margin(
    st: ExchangeCore, acct: Account, a: AdjustIsolatedMargin
) -> ActionResult:
    market, err = _perp_market(st, a.market_id)
    if market is None:
        assert err is not None
        return err
    pos = acct.positions.get(market.market_id)
    if pos is None or not pos.isolated:
        return ActionResult(NOT_ISOLATED, "the market is not in isolated margin mode")
    if pos.size_lots == 0:
        return ActionResult(NO_POSITION, "no isolated position to adjust")
    delta = a.delta_atoms
    if delta == 0:
        return ActionResult(INVALID_AMOUNT, "delta must be non-zero")
    usdc = st.balance(acct, 0)
    if delta > 0:
        if usdc.available_atoms < delta or free_collateral(st, acct) - delta < 0:
            return ActionResult(INSUFFICIENT_MARGIN, "cross margin cannot spare that much")
    else:
        price = st.mstates[market.market_id].mark_price_ticks
        remaining = pos.isolated_margin_atoms + delta
        equity = remaining + unrealized_pnl_atoms(pos, price)
        if remaining < 0 or equity < position_im_atoms(pos, price):
            return ActionResult(INSUFFICIENT_MARGIN, "position would fall below initial margin")
    usdc.available_atoms -= delta
    pos.isolated_margin_atoms += delta
    st.touch(usdc)
    st.touch(pos)
    st.events.append(("isolated_margin", acct.pubkey, market.market_id, delta))
    return ActionResult(OK, "ok")


DISPATCH: dict[type, Any] = {
    PlaceOrder: process_place_order,
    CancelOrder: process_cancel_order,
    CancelByClientId: process_cancel_by_client_id,
    CancelAll: process_cancel_all,
    AmendOrder: process_amend_order,
    Transfer: process_transfer,
    WithdrawRequest: process_withdraw,
    SetLeverage: process_set_leverage,
    AdjustIsolatedMargin: process_adjust_isolated_margin,
    OracleUpdate: process_oracle_update,
    **dict.fromkeys(STAKING_ACTIONS, process_staking),
}


__all__ = [
    "EVENT_FIELDS",
    "ActionResult",
    "BlockContext",
    "BlockResult",
    "ExchangeState",
    "TxResult",
    "apply_block",
    "event_to_dict",
]
