"""Seeded random blocks covering every action type (valid and invalid), for property tests."""

from __future__ import annotations

import random

from state_machine.accounts.actions import (
    ActAs,
    ApproveAgent,
    CreateSubAccount,
    RevokeAgent,
    SubAccountTransfer,
)
from state_machine.accounts.authority import subaccount_address
from state_machine.exchange import ExchangeState
from state_machine.tx import (
    KIND_LIMIT,
    KIND_MARKET,
    Action,
    AdjustIsolatedMargin,
    AmendOrder,
    CancelAll,
    CancelByClientId,
    CancelOrder,
    OraclePrice,
    OracleUpdate,
    PlaceOrder,
    SetLeverage,
    Transaction,
    Transfer,
    WithdrawRequest,
)
from tests.state_machine.helpers import VALIDATORS, acct, tx

BASE_PRICE = {0: 6_000_000, 1: 300_000, 2: 6_000_000, 3: 300_000}


AGENTS = [bytes([0x70 + i]) * 32 for i in range(3)]


class RandomFlow:
    """``accounts=True`` adds sub-accounts, agents and ActAs (valid and not) to the mix; the
    default stream is unchanged (other tests pin its results)."""

    def __init__(self, seed: int, n_accounts: int = 6, accounts: bool = False) -> None:
        self.rng = random.Random(seed)
        self.accounts = [acct(i) for i in range(1, n_accounts + 1)]
        self.nonce = 1_700_000_000_000
        self.cid = 0
        self.with_accounts = accounts
        # Addresses that may become sub-accounts (index 0 and 1 of the first three accounts).
        self.subs = [subaccount_address(m, i) for m in self.accounts[:3] for i in (0, 1)]

    def account_action(self, st: ExchangeState, signer: bytes) -> Action:
        rng = self.rng
        r = rng.random()
        if r < 0.2:
            return CreateSubAccount(rng.choice(("a", "b", "c")))
        if r < 0.6:
            amount = rng.choice((1, 10**6, 10**9, 10**11))
            return SubAccountTransfer(rng.choice(self.subs), rng.random() < 0.6,
                                      rng.choice((0, 0, 1)), amount)  # fmt: skip
        if r < 0.85:
            expiry = rng.choice((0, 0, st.timestamp_ms + rng.choice((-1, 1_000, 60_000))))
            return ApproveAgent(rng.choice(AGENTS), "bot", max(expiry, 0))
        return RevokeAgent(rng.choice(AGENTS))

    def envelope(self, signer: bytes) -> tuple[bytes, list[Action]]:
        """Sometimes an agent or a master signs, for some account (often not allowed to)."""
        rng = self.rng
        r = rng.random()
        if r < 0.2:
            return signer, [ActAs(rng.choice(self.subs))]
        if r < 0.35:
            return rng.choice(AGENTS), [ActAs(rng.choice(self.accounts[:3] + self.subs))]
        return signer, []

    def action(self, st: ExchangeState, signer: bytes) -> Action:
        rng = self.rng
        mid = rng.choice((0, 1, 2, 3))
        base = st.mstates[mid].oracle_price_ticks or BASE_PRICE[mid]
        a = st.accounts.get(signer)
        orders = list(a.orders.values()) if a is not None else []
        r = rng.random()
        if r < 0.45:
            is_buy = rng.random() < 0.5
            price = base + rng.randint(-30, 30)
            size = rng.choice((1, 2, 5, 20, 50, 200, 3000))
            tif = rng.choice((0, 0, 0, 1, 2, 3))
            self.cid += 1
            cid = self.cid if rng.random() < 0.3 else 0
            kind = KIND_MARKET if rng.random() < 0.05 else KIND_LIMIT
            ro = mid >= 2 and rng.random() < 0.1
            stp = rng.choice((0, 0, 0, 1, 2))
            return PlaceOrder(mid, is_buy, kind, tif, price, size, 0, ro, cid, stp)
        if r < 0.65 and orders:
            o = rng.choice(orders)
            if rng.random() < 0.2 and o.client_id:
                return CancelByClientId(o.market_id, o.client_id)
            return CancelOrder(o.market_id, o.order_id if rng.random() < 0.95 else 999_999)
        if r < 0.75 and orders:
            o = rng.choice(orders)
            price = o.price_ticks + rng.choice((0, 0, -2, -1, 1, 2))
            size = max(1, o.size_lots + rng.choice((-3, -1, 0, 1, 10)))
            return AmendOrder(o.market_id, o.order_id, price, size)
        if r < 0.78:
            return CancelAll(rng.choice((None, mid)))
        if r < 0.83:
            return Transfer(
                rng.choice(self.accounts),
                rng.choice((0, 1, 2)),
                rng.choice((1, 1000, 10**6, 10**9)),
            )
        if r < 0.86:
            return WithdrawRequest(rng.choice((0, 1, 2)), rng.choice((1, 10**6, 10**8)), b"dst")
        if r < 0.91:
            return SetLeverage(
                rng.choice((2, 3)), rng.choice((1, 2, 5, 10, 20, 60)), rng.random() < 0.4
            )
        if r < 0.95:
            return AdjustIsolatedMargin(rng.choice((2, 3)), rng.choice((-(10**8), -1, 1, 10**8)))
        return PlaceOrder(mid, rng.random() < 0.5, KIND_LIMIT, 0, base, 10, 0, False, 0, 0)

    def block(self, st: ExchangeState, n_txs: int = 8) -> list[Transaction]:
        rng = self.rng
        txs = []
        for _ in range(n_txs):
            self.nonce += 1
            if rng.random() < 0.08:
                v = rng.choice(VALIDATORS)
                mid = rng.choice((0, 1, 2, 3))
                price = BASE_PRICE[mid] + rng.randint(-40, 40)
                txs.append(tx(v, [OracleUpdate((OraclePrice(mid, price),))], self.nonce))
                continue
            signer = rng.choice(self.accounts)
            n = rng.choice((1, 1, 2, 4))
            acts = [self.action(st, signer) for _ in range(n)]
            if self.with_accounts:
                signer, pre = self.envelope(signer)
                if rng.random() < 0.3:
                    acts.append(self.account_action(st, signer))
                acts = pre + acts
            nonce = self.nonce if rng.random() < 0.97 else 5  # a few out-of-window nonces
            txs.append(tx(signer, acts, nonce))
        return txs
