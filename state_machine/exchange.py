"""The exchange state machine: ``apply_block`` dispatches a block to the domain modules.

Theory of operation
-------------------
``apply_block(state, ctx, txs)`` is the whole state transition of one committed block:

1. ``begin_block``: advance height and time; recompute oracle prices so that submissions older
   than the market's ``oracle_max_age_ms`` drop out of the median; cancel the orders whose
   good-til time has come (state_machine/algo).
2. Transaction checks, in block order: chain id, version, expiry against the block time, then
   the nonce rule (DESIGN section 3). A transaction failing one of these gets that code for the
   transaction and for every action, and changes nothing (its nonce is not consumed).
3. Actions of the accepted transactions are executed in four classes, the proposer's order
   inside each class (DESIGN section 4, favouring makers): (a) non-order actions (oracle,
   transfers, withdrawals, leverage, isolated margin), (b) cancels, (c) post-only orders,
   (d) every other order action (new orders and amends). A transaction's actions can therefore
   run in a different order than written; each still gets its own result in its position.
   An ``ActAs(account)`` action makes the actions after it act for that account; whether the
   signer may is decided when each of them runs (``accounts/authority.py``).
4. ``end_block``: the TWAP slices due (state_machine/algo); per perp market by id, the mark
   price (prices/mark.py), the funding sample or tick (perpetuals/funding.py) and the trigger
   orders the mark reached (triggers/fire.py);
   then the liquidations (liquidation/risk.py); the TP/SL groups and good-til records follow
   the block's events.
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

Where the rules live (docs/ARCHITECTURE.md has the map): orders in ``clob/`` (checks.py, the
predicates; place.py, amend.py, cancel.py, the actions; matching.py, the engine), perpetual
positions, margin and funding in ``perpetuals/``, oracle and mark prices in ``prices/``,
transfers and withdrawals in ``accounts/``, trigger orders in ``triggers/``, liquidations, the
vault and ADL in ``liquidation/``. This module owns only the block: transaction checks, the
execution classes, the dispatch table and the begin/end-of-block hooks, and rebuilding a
state from its entries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from state_machine.accounts.actions import (
    ActAs,
    ApproveAgent,
    CreateSubAccount,
    RevokeAgent,
    SubAccountTransfer,
)
from state_machine.accounts.authority import (
    process_approve_agent,
    process_create_subaccount,
    process_revoke_agent,
    process_subaccount_transfer,
    resolve_acting_account,
)
from state_machine.accounts.records import P_BALANCE, P_WITHDRAWAL, VAULT, Account, Withdrawal
from state_machine.accounts.registry import ACCOUNTS_PREFIXES
from state_machine.accounts.transfers import process_transfer, process_withdraw
from state_machine.algo.hook import (
    ALGO_ACTION_CLASS,
    ALGO_DISPATCH,
    ALGO_LOADERS,
    algo_after_load,
    algo_begin_block,
    algo_end_block_first,
    algo_end_block_last,
)
from state_machine.book import Order
from state_machine.bridge.actions import BRIDGE_ACTIONS
from state_machine.bridge.hook import bridge_from_entries, is_bridge_key, process_bridge
from state_machine.clob.amend import process_amend_order
from state_machine.clob.cancel import (
    process_cancel_all,
    process_cancel_by_client_id,
    process_cancel_order,
)
from state_machine.clob.matching import rest_order
from state_machine.clob.place import process_place_order
from state_machine.codec import decode_raw
from state_machine.genesis import Genesis, validate_genesis
from state_machine.governance.actions import GOVERNANCE_ACTIONS, GovernanceAction
from state_machine.governance.engine import (
    governance_begin_block,
    governance_end_block,
    governance_from_entries,
    is_governance_key,
    process_governance,
)
from state_machine.invariants import check
from state_machine.liquidation.risk import end_block_liquidations, funded_price, market_paused
from state_machine.nonces import NonceCheck
from state_machine.perpetuals.funding import process_funding
from state_machine.perpetuals.positions import process_adjust_isolated_margin, process_set_leverage
from state_machine.perpetuals.records import P_POSITION
from state_machine.prices.mark import update_mark
from state_machine.prices.oracle import process_oracle_update, update_oracle
from state_machine.prices.records import P_MARKET, P_ORACLE, OracleSubmission
from state_machine.results import (
    BAD_VERSION,
    EXPIRED,
    OK,
    WRONG_CHAIN,
    ActionResult,
    BlockContext,
    BlockResult,
    TxResult,
)
from state_machine.staking.actions import STAKING_ACTIONS, StakingAction
from state_machine.staking.hook import (
    enable_genesis_staking,
    follow_active_set,
    genesis_staking_params,
    is_staking_key,
    run_staking_action,
    staking_begin_block,
    staking_end_block,
    staking_from_entries,
)
from state_machine.staking.params import StakingParams
from state_machine.state import (
    P_ASSET,
    P_FEES,
    P_INSURANCE,
    P_META,
    P_NONCES,
    P_ORDER,
    ExchangeCore,
)
from state_machine.triggers.fire import fire_triggers
from state_machine.triggers.records import P_TRIGGER, trigger_from_entry
from state_machine.tx import (
    TIF_ALO,
    TX_VERSION,
    AdjustIsolatedMargin,
    AmendOrder,
    CancelAll,
    CancelByClientId,
    CancelOrder,
    OracleUpdate,
    PlaceOrder,
    PlaceOrderExtended,
    SetLeverage,
    Transaction,
    Transfer,
    WithdrawRequest,
)


class ExchangeState(ExchangeCore):
    """The complete exchange state. Build with :meth:`from_genesis` or :meth:`from_entries`."""

    __slots__ = ()

    @classmethod
    def from_genesis(cls, genesis: Genesis) -> ExchangeState:
        validate_genesis(genesis)
        st = cls(genesis)
        if genesis.parameters.insurance_fund_atoms:
            vault = st.account(VAULT)
            st.balance(vault, 0).available_atoms += genesis.parameters.insurance_fund_atoms
            st.vault_peak.amount_atoms = genesis.parameters.insurance_fund_atoms
        for fb in genesis.balances:
            acct = st.account(fb.account)
            st.balance(acct, fb.asset_id).available_atoms += fb.amount_atoms
        enable_genesis_staking(st)
        if genesis.fee_tiers:
            st.accts.fees.tiers = genesis.fee_tiers  # a record from here on (accounts/fees.py)
        st.dirty = []  # genesis state is written whole by the storage from entries()
        return st

    @classmethod
    def from_entries(
        cls,
        genesis: Genesis,
        entries: Sequence[tuple[bytes, bytes]],
        staking_params: StakingParams | None = None,
    ) -> ExchangeState:
        """Rebuild the full in-memory state (books in time priority, indexes) from entries.
        ``staking_params``: by default the genesis ``staking`` section's (None: staking off).

        Each record is decoded by its own inverse of ``state_obj`` (state.py, book.py,
        triggers/records.py); orders rest again in sequence order, so time priority is kept.
        """
        st = cls(genesis)  # its risk index evaluates every margin unit at the first end_block
        orders: list[Order] = []
        triggers: list[tuple[bytes, Any]] = []
        staking_entries: list[tuple[bytes, bytes]] = []
        # Governance first: its records add the listed assets and markets the others refer to.
        governance_from_entries(st, [e for e in entries if is_governance_key(e[0])])
        bridge_entries: list[tuple[bytes, bytes]] = []
        for key, value in entries:
            if is_governance_key(key):
                continue
            if is_staking_key(key):
                staking_entries.append((key, value))  # decoded by the staking module
                continue
            if is_bridge_key(key):
                bridge_entries.append((key, value))  # decoded by the bridge module
                continue
            v = decode_raw(value)
            p = key[0]
            if p == P_ORDER:
                orders.append(Order.from_state(int.from_bytes(key[1:5], "big"), v,
                                               st.account(v[2])))  # fmt: skip
            elif p == P_TRIGGER:
                triggers.append((key, v))
            else:
                load = LOADERS.get(p)
                check(load is not None, f"unknown state key prefix {p}")
                assert load is not None
                load(st, key, v)
        for key, v in triggers:
            t = trigger_from_entry(st, key, v)
            t.stored = True
            st.triggers.add(t)
        orders.sort(key=lambda o: o.seq)
        for o in orders:
            rest_order(st, st.markets[o.market_id], o)
            o.dirty = False
        st.dirty = []
        if staking_params is None:
            staking_params = genesis_staking_params(st)
        algo_after_load(st)
        bridge_from_entries(st, bridge_entries)
        if staking_params is not None:
            st.staking = staking_from_entries(st, staking_params, staking_entries)
            follow_active_set(st)
        else:
            check(not staking_entries, "staking entries but staking is not enabled")
        return st


def _load_meta(st: ExchangeCore, key: bytes, v: list[Any]) -> None:
    st.restore_meta(v)


def _load_balance(st: ExchangeCore, key: bytes, v: list[Any]) -> None:
    st.balance(st.account(key[1:33]), int.from_bytes(key[33:37], "big")).restore(v)


def _load_position(st: ExchangeCore, key: bytes, v: list[Any]) -> None:
    market = st.markets[int.from_bytes(key[33:37], "big")]
    st.position(st.account(key[1:33]), market).restore(v)


def _load_market(st: ExchangeCore, key: bytes, v: list[Any]) -> None:
    st.mstates[int.from_bytes(key[1:5], "big")].restore(v)


def _load_oracle(st: ExchangeCore, key: bytes, v: list[Any]) -> None:
    sub = OracleSubmission.from_state(key, v)
    st.oracle_subs[sub.market_id][sub.validator] = sub


def _load_nonces(st: ExchangeCore, key: bytes, v: list[Any]) -> None:
    st.nonces.restore(key[1:33], v)
    st.nonce_entry(key[1:33])


def _load_fees(st: ExchangeCore, key: bytes, v: list[Any]) -> None:
    st.fee_pools[int.from_bytes(key[1:5], "big")].restore(v)


def _load_asset_total(st: ExchangeCore, key: bytes, v: list[Any]) -> None:
    st.asset_totals[int.from_bytes(key[1:5], "big")].restore(v)


def _load_vault_peak(st: ExchangeCore, key: bytes, v: list[Any]) -> None:
    check(key == st.vault_peak.state_key(), "vault record of an asset other than USDC")
    st.vault_peak.restore(v)


def _load_withdrawal(st: ExchangeCore, key: bytes, v: list[Any]) -> None:
    w = Withdrawal.from_state(key, v)
    st.withdrawals[w.withdrawal_id] = w


def _load_accounts_record(st: ExchangeCore, key: bytes, v: list[Any]) -> None:
    st.accts.load(key, v)  # sub-accounts, agents, fee tiers, volumes (accounts/registry.py)


# Decoder of each record kind by key prefix (orders and triggers are collected first, then
# indexed in order: see from_entries).
LOADERS: dict[int, Callable[[ExchangeCore, bytes, list[Any]], None]] = {
    P_META: _load_meta,
    P_BALANCE: _load_balance,
    P_POSITION: _load_position,
    P_MARKET: _load_market,
    P_ORACLE: _load_oracle,
    P_NONCES: _load_nonces,
    P_FEES: _load_fees,
    P_ASSET: _load_asset_total,
    P_INSURANCE: _load_vault_peak,
    P_WITHDRAWAL: _load_withdrawal,
    **dict.fromkeys(ACCOUNTS_PREFIXES, _load_accounts_record),
    **ALGO_LOADERS,
}


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
    **dict.fromkeys(GOVERNANCE_ACTIONS, 0),
    CreateSubAccount: 0,
    SubAccountTransfer: 0,
    ApproveAgent: 0,
    RevokeAgent: 0,
    **ALGO_ACTION_CLASS,
    **dict.fromkeys(BRIDGE_ACTIONS, 0),
}


class Delegated:
    """An action after ``ActAs(account)`` in a transaction: it runs for ``account`` if the
    signer may act for it (decided when it runs, accounts/authority.py)."""

    __slots__ = ("account", "action")

    def __init__(self, account: bytes, action: Any) -> None:
        self.account = account
        self.action = action


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
        queue_actions(actions, results, acct, queues)
    dispatch = DISPATCH
    for queue in queues:
        for results, ai, acct, a in queue:
            results[ai] = dispatch[type(a)](st, acct, a)
    end_block(st, ctx)
    return BlockResult(tx_results, st.events, st.take_writes())


def queue_actions(
    actions: Sequence[Any], results: list[Any], acct: Account, queues: Sequence[list[Any]]
) -> None:
    """Put a transaction's actions in their execution classes (queues: other, cancel,
    post-only, order). An ActAs action gets its result here; the actions after it run for the
    account it names, as :class:`Delegated`."""
    act_as: bytes | None = None
    for ai, a in enumerate(actions):
        if type(a) is ActAs:
            act_as = a.account
            results[ai] = ActionResult(OK, "acting for " + a.account.hex())
            continue
        item = (results, ai, acct, a if act_as is None else Delegated(act_as, a))
        if type(a) is PlaceOrder or type(a) is PlaceOrderExtended:  # cheaper than isinstance
            queues[2 if a.tif == TIF_ALO else 3].append(item)
        else:
            queues[ACTION_CLASS[type(a)]].append(item)


def begin_block(st: ExchangeCore, ctx: BlockContext) -> None:
    st.height = ctx.height
    st.timestamp_ms = ctx.timestamp_ms
    staking_begin_block(st)
    governance_begin_block(st)  # passed proposals whose execution height this is
    for mid, subs in st.oracle_subs.items():
        if subs:
            update_oracle(st, st.markets[mid])
    algo_begin_block(st)  # good-til times reached (state_machine/algo)


def end_block(st: ExchangeCore, ctx: BlockContext) -> None:
    """Per perp market, by id: the mark price, the funding sample or tick, then the trigger
    orders the new mark reached (all three wait while the market is halted or delisted);
    then the circuit breakers and governance's tallies; then the liquidations (none in a
    halted market); then staking's epoch end (state_machine/staking/hook.py)."""
    now = ctx.timestamp_ms
    ema_ms = st.parameters.mark_ema_ms
    algo_start = algo_end_block_first(st)  # TWAP slices due, then TP/SL and good-til records
    marks: list[tuple[int, int, int]] = []
    gov_controls = st.gov.controls
    for mid, book in st.books.items():
        if not book.perp or (gov_controls and market_paused(st, mid)):
            continue
        ms = book.mstate
        mark = update_mark(st, ms, book, now, ema_ms)
        process_funding(st, ms, book, now)
        fire_triggers(st, mid, mark)
        marks.append((mid, mark, funded_price(ms)))
    governance_end_block(st, now)
    if st.gov.controls:
        marks = [m for m in marks if not market_paused(st, m[0])]
    end_block_liquidations(st, marks, now)
    algo_end_block_last(st, algo_start)
    staking_end_block(st)


def process_staking(st: ExchangeCore, acct: Account, a: StakingAction) -> ActionResult:
    """Staking actions run in ``state_machine/staking`` (see its hook)."""
    result = run_staking_action(st, acct.pubkey, a)
    return ActionResult(result.code, result.message)


def process_governance_action(
    st: ExchangeCore, acct: Account, a: GovernanceAction
) -> ActionResult:
    """Proposals and votes run in ``state_machine/governance`` (see its engine)."""
    return process_governance(st, acct.pubkey, a)
def process_delegated(st: ExchangeCore, signer: Account, d: Delegated) -> ActionResult:
    """Run an action for the account named by ActAs, if the signer may act for it."""
    acct, res = resolve_acting_account(st, signer.pubkey, d.account, type(d.action))
    if acct is None:
        return res
    result: ActionResult = DISPATCH[type(d.action)](st, acct, d.action)
    return result


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
    **dict.fromkeys(GOVERNANCE_ACTIONS, process_governance_action),
    CreateSubAccount: process_create_subaccount,
    SubAccountTransfer: process_subaccount_transfer,
    ApproveAgent: process_approve_agent,
    RevokeAgent: process_revoke_agent,
    Delegated: process_delegated,
    **ALGO_DISPATCH,
    **dict.fromkeys(BRIDGE_ACTIONS, process_bridge),  # state_machine/bridge/hook.py
}


__all__ = [
    "ActionResult",
    "BlockContext",
    "BlockResult",
    "ExchangeState",
    "TxResult",
    "apply_block",
]
