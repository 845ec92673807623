"""Sub-accounts, agent keys and the acting account (state_machine/accounts/authority.py).

Each refusal is checked with its code and with the state unchanged apart from the signer's
nonce (a transaction whose checks pass consumes its nonce whatever its actions' results). The
reference models of test_book_model.py run again with one trader a sub-account, signed for by
its master or by the master's agent, and another trading through its agent.
"""

from __future__ import annotations

from typing import ClassVar

import pytest
from hypothesis import settings

from state_machine.accounts.actions import (
    ActAs,
    ApproveAgent,
    CreateSubAccount,
    RevokeAgent,
    SubAccountTransfer,
)
from state_machine.accounts.authority import subaccount_address
from state_machine.accounts.policy import AccountsPolicy
from state_machine.audit import audit
from state_machine.exchange import BlockContext, ExchangeState, apply_block
from state_machine.genesis import FundedBalance, Genesis
from state_machine.merkle_state import MerkleState, verify_proof
from state_machine.state import P_NONCES
from state_machine.tx import Action, CancelAll, SetLeverage, Transfer, WithdrawRequest
from tests.conftest import examples
from tests.state_machine.helpers import BTC_PERP, BTC_SPOT, USDC, Harness, acct, limit, make_genesis
from tests.state_machine.test_book_model import LOT_BASE, EngineVsReference, PerpEngineVsReference

MASTER, OTHER = acct(1), acct(2)
SUB0 = subaccount_address(MASTER, 0)
AGENT = bytes([0x71]) * 32
AGENT3 = bytes([0x73]) * 32


def without_nonces(st: ExchangeState) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in st.entries() if k[0] != P_NONCES]


def refused(h: Harness, signer: bytes, code: str, *actions: Action) -> None:
    """The last action is refused with ``code`` and changes nothing: the state after its block
    equals, but for the signer's nonce, the state after an empty block at the same time."""
    twin = ExchangeState.from_entries(h.genesis, h.state.entries())
    res = h.do(signer, *actions)
    assert res[-1].code == code, res
    apply_block(twin, BlockContext(h.height, h.time_ms, b""), [])
    assert without_nonces(h.state) == without_nonces(twin)
    audit(h.state)


def with_sub(h: Harness, usdc: int = 1000 * USDC) -> bytes:
    r = h.one(MASTER, CreateSubAccount("alpha"))
    assert r.ok and r.order_id == 0 and r.message == SUB0.hex()
    assert h.one(MASTER, SubAccountTransfer(SUB0, True, 0, usdc)).ok
    return SUB0


def test_subaccount_address_is_the_documented_hash() -> None:
    import hashlib

    want = hashlib.sha256(b"perpbft/subaccount/v1" + MASTER + (3).to_bytes(4, "big")).digest()
    assert subaccount_address(MASTER, 3) == want
    assert subaccount_address(MASTER, 0) != subaccount_address(OTHER, 0)


def test_subaccount_has_its_own_funds_orders_and_positions() -> None:
    h = Harness()
    sub = with_sub(h)
    assert h.events("subaccount_transfer")[0]["deposit"] is True
    assert h.bal(sub, 0) == (1000 * USDC, 0)
    assert h.bal(MASTER, 0)[0] == 999_000 * USDC
    # The master signs for the sub-account; its order and position are the sub-account's.
    res = h.do(MASTER, ActAs(sub), limit(BTC_PERP, True, 6_000_000, 10))
    assert res[0].ok and res[1].ok, res
    assert h.do(OTHER, limit(BTC_PERP, False, 6_000_000, 10))[0].filled_lots == 10
    st = h.state
    assert st.accounts[sub].positions[BTC_PERP].size_lots == 10
    assert BTC_PERP not in st.accounts[MASTER].positions
    fill = h.events("fill")[0]
    assert fill["maker"] == sub and fill["taker"] == OTHER
    # Back to the master, within the sub-account's free collateral.
    assert h.one(MASTER, SubAccountTransfer(sub, False, 0, 10 * USDC)).ok
    assert h.bal(sub, 0)[0] < 990 * USDC
    audit(st)


def test_master_may_act_for_its_sub_in_every_action() -> None:
    h = Harness()
    sub = with_sub(h)
    res = h.do(MASTER, ActAs(sub), Transfer(OTHER, 0, USDC), WithdrawRequest(0, USDC, b"x"))
    assert [r.code for r in res] == ["ok", "ok", "ok"]
    assert h.bal(sub, 0)[0] == 998 * USDC


def test_subaccount_refusals() -> None:
    h = Harness(make_genesis(parameters=None))
    sub = with_sub(h)
    refused(h, OTHER, "not_authorized", ActAs(sub), limit(BTC_PERP, True, 6_000_000, 1))
    refused(h, OTHER, "not_subaccount", SubAccountTransfer(sub, True, 0, USDC))
    refused(h, MASTER, "subaccount_nested", ActAs(sub), CreateSubAccount("deeper"))
    refused(h, MASTER, "insufficient_balance", SubAccountTransfer(sub, False, 0, 10**12))
    refused(h, MASTER, "invalid_amount", SubAccountTransfer(sub, True, 0, 0))
    refused(h, MASTER, "unknown_asset", SubAccountTransfer(sub, True, 77, 1))
    # The sub-account cannot move its master's funds (a sub-account is not a master).
    refused(h, MASTER, "not_subaccount", ActAs(sub), SubAccountTransfer(MASTER, True, 0, 1))


def test_subaccount_limit_from_genesis_policy() -> None:
    g = make_genesis()
    import dataclasses

    h = Harness(dataclasses.replace(g, accounts_policy=AccountsPolicy(2, 1)))
    assert h.one(MASTER, CreateSubAccount("a")).ok
    assert h.one(MASTER, CreateSubAccount("b")).order_id == 1
    refused(h, MASTER, "subaccount_limit", CreateSubAccount("c"))
    assert h.one(MASTER, ApproveAgent(AGENT, "one", 0)).ok
    refused(h, MASTER, "agent_limit", ApproveAgent(AGENT3, "two", 0))


def test_agent_trades_and_sets_leverage_but_never_moves_funds() -> None:
    h = Harness()
    sub = with_sub(h)
    assert h.one(MASTER, ApproveAgent(AGENT, "bot", 0)).ok
    assert h.events("agent_approved")[0]["name"] == "bot"
    res = h.do(
        AGENT, ActAs(MASTER), SetLeverage(BTC_PERP, 5, False), limit(BTC_PERP, True, 5_999_000, 2)
    )
    assert [r.code for r in res] == ["ok", "ok", "ok"], res
    assert h.state.accounts[MASTER].positions[BTC_PERP].leverage == 5
    assert len(h.state.accounts[MASTER].orders) == 1
    # For the master's sub-account too.
    assert h.do(AGENT, ActAs(sub), limit(BTC_PERP, True, 5_999_000, 2))[1].ok
    assert h.do(AGENT, ActAs(sub), CancelAll(None))[1].count == 1
    bad_actions: list[Action] = [
        Transfer(OTHER, 0, 1),
        WithdrawRequest(0, 1, b"x"),
        SubAccountTransfer(sub, False, 0, 1),
        ApproveAgent(AGENT3, "x", 0),
        RevokeAgent(AGENT),
        CreateSubAccount("x"),
    ]
    for bad in bad_actions:
        refused(h, AGENT, "agent_not_allowed", ActAs(MASTER), bad)
    # Without ActAs the agent acts for its own (empty) account, never the master's.
    refused(h, AGENT, "insufficient_balance", Transfer(OTHER, 0, 1))
    # The agent's nonces are its own: the master's nonce store is untouched by its transactions.
    assert h.state.nonces.kept(AGENT) and h.state.nonces.kept(AGENT) != h.state.nonces.kept(MASTER)


def test_agent_refusals_expiry_and_revocation() -> None:
    h = Harness()
    refused(h, MASTER, "invalid_agent", ApproveAgent(MASTER, "me", 0))
    refused(h, MASTER, "agent_expiry_past", ApproveAgent(AGENT, "old", h.time_ms))
    assert h.one(MASTER, ApproveAgent(AGENT, "bot", h.time_ms + 5_000)).ok
    refused(h, OTHER, "agent_in_use", ApproveAgent(AGENT, "mine", 0))
    refused(h, OTHER, "unknown_agent", RevokeAgent(AGENT))
    refused(h, AGENT, "not_authorized", ActAs(OTHER), limit(BTC_PERP, True, 5_999_000, 2))
    assert h.do(AGENT, ActAs(MASTER), limit(BTC_PERP, True, 5_999_000, 2))[1].ok
    h.block([], dt_ms=10_000)  # past the expiry
    refused(h, AGENT, "agent_expired", ActAs(MASTER), limit(BTC_PERP, True, 5_999_000, 2))
    # Approving again re-times it; revoking ends it.
    assert h.one(MASTER, ApproveAgent(AGENT, "bot2", 0)).ok
    assert h.do(AGENT, ActAs(MASTER), CancelAll(None))[1].ok
    assert h.one(MASTER, RevokeAgent(AGENT)).ok
    assert h.events("agent_revoked")[0]["reason"] == "revoked"
    refused(h, AGENT, "not_authorized", ActAs(MASTER), CancelAll(None))
    assert AGENT not in h.state.accts.agents and MASTER not in h.state.accts.agents_of


def test_revocation_earlier_in_the_block_is_seen() -> None:
    """Authority is decided when each action runs: a revoke (class 0) precedes the agent's
    order (class 3) in the same block."""
    from tests.state_machine.helpers import tx

    h = Harness()
    assert h.one(MASTER, ApproveAgent(AGENT, "bot", 0)).ok
    res = h.block([
        tx(AGENT, [ActAs(MASTER), limit(BTC_PERP, True, 5_999_000, 2)], h.next_nonce()),
        tx(MASTER, [RevokeAgent(AGENT)], h.next_nonce()),
    ])  # fmt: skip
    assert res.tx_results[0].actions[1].code == "not_authorized"
    assert res.tx_results[1].actions[0].ok


def test_records_rebuild_from_entries_and_merkle_proofs() -> None:
    h = Harness()
    sub = with_sub(h)
    assert h.one(MASTER, ApproveAgent(AGENT, "bot", 0)).ok
    assert h.one(sub, ApproveAgent(AGENT3, "x", 0)).code == "ok"  # anyone may approve for itself
    st = h.state
    clone = ExchangeState.from_entries(h.genesis, st.entries())
    assert clone.digest() == st.digest()
    assert clone.accts.agents_of[MASTER].keys() == {AGENT}
    assert clone.accts.subs[sub].master == MASTER
    # The sub-account record is a state entry: provable under the Merkle root.
    entries = dict(st.entries())
    ms = MerkleState.from_entries(entries.items())
    for key in (bytes((0x42,)) + sub, bytes((0x43,)) + AGENT, bytes((0x41,)) + MASTER):
        assert verify_proof(ms.root(), key, entries[key], ms.prove(key))


@pytest.mark.parametrize("bad", ["policy", "tiers"])
def test_genesis_sections_validated(bad: str) -> None:
    import dataclasses

    from state_machine.accounts.policy import FeeTier
    from state_machine.genesis import GenesisError, validate_genesis

    g = make_genesis()
    if bad == "policy":
        g2 = dataclasses.replace(g, accounts_policy=AccountsPolicy(10_000, 1))
        match = "accounts_policy.max_subaccounts"
    else:
        g2 = dataclasses.replace(g, fee_tiers=(FeeTier(0, 400, -500),))
        match = r"fee_tiers\[0\].maker_fee_ppm"
    with pytest.raises(GenesisError, match=match):
        validate_genesis(g2)


def test_absent_sections_keep_the_genesis_encoding() -> None:
    import dataclasses

    g = make_genesis()
    assert len(g.to_obj()) == 7
    g2 = dataclasses.replace(g, accounts_policy=AccountsPolicy())
    assert Genesis.from_wire(g2.to_wire()) == g2 and g2.hash() != g.hash()
    assert Genesis.from_wire(g.to_wire()).accounts_policy is None


# ---- the reference models, with sub-accounts and agents --------------------------------------


class _Delegating:
    """Mixin: the second trader is MASTER's sub-account (signed by MASTER or its agent AGENT);
    the third trades half the time through its agent AGENT3."""

    ACCOUNTS: ClassVar[tuple[bytes, ...]]
    h: Harness

    def setup_accounts(self) -> None:
        assert self.h.one(MASTER, CreateSubAccount("model")).message == SUB0.hex()
        assert self.h.one(MASTER, ApproveAgent(AGENT, "bot", 0)).ok
        assert self.h.one(acct(3), ApproveAgent(AGENT3, "bot", 0)).ok

    def envelope(self, who: bytes) -> tuple[bytes, list[Action]]:
        turn = self.h.nonce % 2
        if who == SUB0:
            return (MASTER if turn else AGENT), [ActAs(SUB0)]
        if who == acct(3) and turn:
            return AGENT3, [ActAs(who)]
        return who, []


SUB_FUNDS = (
    FundedBalance(SUB0, 0, 1_000_000 * USDC),
    FundedBalance(SUB0, 1, 10 * 10**8),
)


class DelegatedSpotModel(_Delegating, EngineVsReference):
    MARKET = BTC_SPOT
    ACCOUNTS = (MASTER, SUB0, acct(3), EngineVsReference.ACCOUNTS[3])
    EXTRA_BALANCES = (*EngineVsReference.EXTRA_BALANCES, *SUB_FUNDS)  # type: ignore[assignment]


class DelegatedPerpModel(_Delegating, PerpEngineVsReference):
    ACCOUNTS = (MASTER, SUB0, acct(3))
    EXTRA_BALANCES = SUB_FUNDS


assert LOT_BASE == 10**4
DelegatedSpotModel.TestCase.settings = settings(
    max_examples=examples(60), stateful_step_count=40, deadline=None
)
TestDelegatedSpotModel = DelegatedSpotModel.TestCase
DelegatedPerpModel.TestCase.settings = settings(
    max_examples=examples(60), stateful_step_count=40, deadline=None
)
TestDelegatedPerpModel = DelegatedPerpModel.TestCase
