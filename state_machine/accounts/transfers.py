"""Accounts: transfers between accounts and withdrawal requests (``process_transfer``,
``process_withdraw``). USDC may leave an account only while its free collateral stays
non-negative (perpetuals/margin.py).
"""

from __future__ import annotations

from state_machine.accounts.records import Account, Withdrawal
from state_machine.invariants import check
from state_machine.perpetuals.margin import free_collateral
from state_machine.results import (
    INSUFFICIENT_BALANCE,
    INSUFFICIENT_MARGIN,
    INVALID_AMOUNT,
    OK,
    UNKNOWN_ASSET,
    ActionResult,
)
from state_machine.state import ExchangeCore
from state_machine.tx import Transfer, WithdrawRequest
from state_machine.units import atoms_text

INVALID_RECIPIENT = "invalid_recipient"


def movable(st: ExchangeCore, acct: Account, asset_id: int, amount: int) -> ActionResult:
    """Check that ``amount`` of an asset may leave the account's available balance."""
    if amount == 0:
        return ActionResult(INVALID_AMOUNT, "amount must be positive")
    if asset_id not in st.fee_pools:
        return ActionResult(UNKNOWN_ASSET, f"no asset {asset_id}")
    bal = acct.balances.get(asset_id)
    avail = bal.available_atoms if bal is not None else 0
    if avail < amount:
        need, have = (
            atoms_text(st.genesis, asset_id, amount),
            atoms_text(st.genesis, asset_id, avail),
        )
        return ActionResult(INSUFFICIENT_BALANCE, f"{need} requested; {have} available")
    if asset_id == 0 and acct.positions:
        free_atoms = free_collateral(st, acct)
        if free_atoms - amount < 0:
            return ActionResult(INSUFFICIENT_MARGIN, movable_refusal(st, amount, free_atoms))
    return ActionResult(OK, "ok")


def movable_refusal(st: ExchangeCore, amount_atoms: int, free_atoms: int) -> str:
    """Why USDC cannot leave: the initial margin of open positions and orders keeps it."""
    need = atoms_text(st.genesis, 0, amount_atoms)
    free = atoms_text(st.genesis, 0, max(0, free_atoms))
    return f"{need} requested but only {free} is free above the initial margin of open positions"


def process_transfer(st: ExchangeCore, acct: Account, a: Transfer) -> ActionResult:
    if a.to == acct.pubkey:
        return ActionResult(INVALID_RECIPIENT, "cannot transfer to yourself")
    res = movable(st, acct, a.asset_id, a.amount_atoms)
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
    res = movable(st, acct, a.asset_id, a.amount_atoms)
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


# ---- value entering and leaving the chain (the bridge: state_machine/bridge) -------------------


def credit_external(st: ExchangeCore, owner: bytes, asset_id: int, amount_atoms: int) -> None:
    """Credit value that entered the chain from outside (a bridge deposit). Any key may be
    credited: accounts are keys, so an unknown account simply starts to exist."""
    check(amount_atoms > 0 and asset_id in st.fee_pools, "external credit of nothing")
    bal = st.balance(st.account(owner), asset_id)
    bal.available_atoms += amount_atoms
    st.touch(bal)


def debit_external(
    st: ExchangeCore, acct: Account, asset_id: int, amount_atoms: int
) -> ActionResult:
    """Debit value leaving the chain (a bridge withdrawal), under the same rule as a transfer:
    only what leaves the initial margin of open positions covered. Counted as withdrawn in the
    asset's totals (the conservation audit's ``withdrawn``)."""
    res = movable(st, acct, asset_id, amount_atoms)
    if res.code != OK:
        return res
    bal = acct.balances[asset_id]
    bal.available_atoms -= amount_atoms
    st.touch(bal)
    total = st.asset_totals[asset_id]
    total.amount_atoms += amount_atoms
    st.touch(total)
    return res
