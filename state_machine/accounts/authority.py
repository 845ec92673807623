"""Who may act for an account: sub-accounts and agent keys.

Theory of operation
-------------------
An account is a 32-byte address; a key-pair's account is its public key. A *sub-account* is an
account without a key of its own: master M's sub-account number i (0, 1, ...) has the address
``sha256(b"perpbft/subaccount/v1" || M || i as u32 big-endian)``, so anyone can compute it and no
one can sign for it (finding a key for a given hash is as hard as breaking Ed25519). It has its
own balances, positions, orders and nonces-free identity; its master signs for it through
``ActAs(sub)``. A sub-account cannot have sub-accounts (one level, as on the exchanges that have
them).

An *agent* is another key that an account approved (``ApproveAgent``), with a name and an
optional expiry in block time. It may place, amend and cancel orders and set leverage for that
account and for the account's sub-accounts (``AGENT_ACTIONS``), never move funds out (transfer,
withdraw, sub-account transfer), approve agents, create sub-accounts or stake. A key is the
agent of at most one account at a time. The agent signs with its own key, so its nonces are its
own (the nonce store is keyed by signer) and revoking it never touches the account's nonces.

The acting account of every action is decided in ONE place, :func:`resolve_acting_account`,
when the action runs (so an approval or revocation earlier in the same block is seen by the
actions after it in execution order). Everything downstream (orders, positions, triggers)
takes the account it is given and never looks at the signer.
"""

from __future__ import annotations

from state_machine.accounts.actions import (
    ApproveAgent,
    CreateSubAccount,
    RevokeAgent,
    SubAccountTransfer,
)
from state_machine.accounts.codes import (
    AGENT_EXPIRED,
    AGENT_EXPIRY_PAST,
    AGENT_IN_USE,
    AGENT_LIMIT,
    AGENT_NOT_ALLOWED,
    INVALID_AGENT,
    NOT_AUTHORIZED,
    NOT_SUBACCOUNT,
    SUBACCOUNT_LIMIT,
    SUBACCOUNT_NESTED,
    UNKNOWN_AGENT,
)
from state_machine.accounts.records import VAULT, Account
from state_machine.accounts.registry import AccountsRegistry, Agent, MasterRecord, SubAccount
from state_machine.accounts.transfers import movable
from state_machine.crypto import sha256
from state_machine.results import OK, ActionResult
from state_machine.state import ExchangeCore
from state_machine.tx import (
    ORDER_TOOL_ACTIONS,
    AmendOrder,
    CancelAll,
    CancelByClientId,
    CancelOrder,
    PlaceOrder,
    SetLeverage,
)

SUBACCOUNT_DOMAIN = b"perpbft/subaccount/v1"

# The actions an agent may take for the account that approved it. The order tools (TWAP, TP/SL
# groups, orders with a good-til time or attached TP/SL) only place, amend and cancel orders,
# so an agent may use them too.
AGENT_ACTIONS: frozenset[type] = frozenset(
    {PlaceOrder, AmendOrder, CancelOrder, CancelByClientId, CancelAll, SetLeverage}
) | frozenset(ORDER_TOOL_ACTIONS)


def subaccount_address(master: bytes, index: int) -> bytes:
    """The address of ``master``'s sub-account number ``index`` (see the module docstring)."""
    return sha256(SUBACCOUNT_DOMAIN + master + index.to_bytes(4, "big"))


def registry(st: ExchangeCore) -> AccountsRegistry:
    reg: AccountsRegistry = st.accts
    return reg


def resolve_acting_account(
    st: ExchangeCore, signer: bytes, account: bytes, action_type: type
) -> tuple[Account | None, ActionResult]:
    """The account an action of ``signer`` acts for when it names ``account`` (ActAs).

    Allowed: the signer itself; a sub-account of the signer (any action); as an unexpired agent,
    the account that approved it or a sub-account of that account (``AGENT_ACTIONS`` only).
    """
    if account == signer:
        return st.account(signer), ActionResult(OK, "ok")
    reg = registry(st)
    sub = reg.subs.get(account)
    if sub is not None and sub.master == signer:
        return st.account(account), ActionResult(OK, "ok")
    agent = reg.agents.get(signer)
    if agent is None or not (
        account == agent.account or (sub is not None and sub.master == agent.account)
    ):
        return None, ActionResult(NOT_AUTHORIZED, f"may not act for {account.hex()}")
    if agent.expired(st.timestamp_ms):
        return None, ActionResult(AGENT_EXPIRED, f"agent approval expired at {agent.expires_at_ms}")
    if action_type not in AGENT_ACTIONS:
        return None, ActionResult(
            AGENT_NOT_ALLOWED, f"an agent may not {action_type.__name__} for the account"
        )
    return st.account(account), ActionResult(OK, "ok")


def process_create_subaccount(st: ExchangeCore, acct: Account, a: CreateSubAccount) -> ActionResult:
    reg = registry(st)
    master = acct.pubkey
    if master in reg.subs:
        return ActionResult(SUBACCOUNT_NESTED, "a sub-account cannot have sub-accounts")
    rec = reg.masters.get(master)
    count = rec.count if rec is not None else 0
    if count >= reg.policy.max_subaccounts:
        return ActionResult(SUBACCOUNT_LIMIT, f"{count} sub-accounts, the maximum")
    if rec is None:
        rec = reg.masters[master] = MasterRecord(master)
    address = subaccount_address(master, count)
    rec.count = count + 1
    sub = reg.subs[address] = SubAccount(address, master, count, a.name)
    st.touch(rec)
    st.touch(sub)
    st.events.append(("subaccount_created", master, address, count, a.name))
    return ActionResult(OK, address.hex(), order_id=count)


def process_subaccount_transfer(
    st: ExchangeCore, acct: Account, a: SubAccountTransfer
) -> ActionResult:
    sub = registry(st).subs.get(a.sub)
    if sub is None or sub.master != acct.pubkey:
        return ActionResult(NOT_SUBACCOUNT, f"{a.sub.hex()} is not a sub-account of the account")
    sub_acct = st.account(a.sub)
    src, dst = (acct, sub_acct) if a.deposit else (sub_acct, acct)
    res = movable(st, src, a.asset_id, a.amount_atoms)
    if res.code != OK:
        return res
    from_bal = src.balances[a.asset_id]
    to_bal = st.balance(dst, a.asset_id)
    from_bal.available_atoms -= a.amount_atoms
    to_bal.available_atoms += a.amount_atoms
    st.touch(from_bal)
    st.touch(to_bal)
    st.events.append(
        ("subaccount_transfer", acct.pubkey, a.sub, a.deposit, a.asset_id, a.amount_atoms)
    )
    return res


def _agent_key_error(reg: AccountsRegistry, account: bytes, agent: bytes) -> ActionResult | None:
    if agent in (account, VAULT) or agent in reg.subs:
        return ActionResult(INVALID_AGENT, "an agent is a key of its own")
    held = reg.agents.get(agent)
    if held is not None and held.account != account:
        return ActionResult(AGENT_IN_USE, "the key is the agent of another account")
    return None


def _drop_expired_agents(st: ExchangeCore, reg: AccountsRegistry, account: bytes) -> None:
    """Expired approvals of the account go when it approves another (keeps the count honest)."""
    mine = reg.agents_of.get(account, {})
    for key in sorted(mine):
        ag = mine[key]
        if ag.expired(st.timestamp_ms):
            st.touch(ag)
            reg.drop_agent(ag)
            st.events.append(("agent_revoked", account, key, "expired"))


def process_approve_agent(st: ExchangeCore, acct: Account, a: ApproveAgent) -> ActionResult:
    reg = registry(st)
    account = acct.pubkey
    err = _agent_key_error(reg, account, a.agent)
    if err is not None:
        return err
    if a.expires_at_ms and a.expires_at_ms <= st.timestamp_ms:
        return ActionResult(AGENT_EXPIRY_PAST, f"expiry {a.expires_at_ms} is not in the future")
    mine = reg.agents_of.get(account, {})
    live = sum(1 for k, ag in mine.items() if k != a.agent and not ag.expired(st.timestamp_ms))
    if live >= reg.policy.max_agents:
        return ActionResult(AGENT_LIMIT, f"{reg.policy.max_agents} agents, the maximum")
    _drop_expired_agents(st, reg, account)
    ag = reg.agents.get(a.agent)
    if ag is None:
        ag = Agent(a.agent, account, a.name, a.expires_at_ms)
        reg.add_agent(ag)
    else:
        ag.name = a.name
        ag.expires_at_ms = a.expires_at_ms
    st.touch(ag)
    st.events.append(("agent_approved", account, a.agent, a.name, a.expires_at_ms))
    return ActionResult(OK, "ok")


def process_revoke_agent(st: ExchangeCore, acct: Account, a: RevokeAgent) -> ActionResult:
    reg = registry(st)
    ag = reg.agents.get(a.agent)
    if ag is None or ag.account != acct.pubkey:
        return ActionResult(UNKNOWN_AGENT, f"{a.agent.hex()} is not an agent of the account")
    st.touch(ag)
    reg.drop_agent(ag)
    st.events.append(("agent_revoked", acct.pubkey, a.agent, "revoked"))
    return ActionResult(OK, "ok")
