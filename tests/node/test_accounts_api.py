"""The API's read side of sub-accounts and agents: a transaction's events when its actions act
for another account (ActAs), and fills' fees in their asset."""

from __future__ import annotations

from node.api.txevents import tx_event_indexes
from state_machine.accounts.actions import ActAs, ApproveAgent, CreateSubAccount, SubAccountTransfer
from state_machine.accounts.authority import subaccount_address
from state_machine.exchange import BlockContext, ExchangeState, apply_block
from state_machine.tx import KIND_LIMIT, TIF_GTC, CancelAll, PlaceOrder, sign_transaction
from tests.node.test_api_pieces import ALICE, BOB, GENESIS

CHAIN = "perpbft-test"
T = 1_700_000_000_000


def test_events_of_actions_acting_for_a_sub_account() -> None:
    state = ExchangeState.from_genesis(GENESIS)
    sub = subaccount_address(ALICE.public_key, 0)
    setup = sign_transaction(ALICE, CHAIN, T + 1, [
        CreateSubAccount("alpha"), SubAccountTransfer(sub, True, 0, 10_000 * 10**6),
        ApproveAgent(BOB.public_key, "bot", 0),
    ])  # fmt: skip
    res = apply_block(state, BlockContext(1, T + 100), [setup])
    results = [a.to_obj() for a in res.tx_results[0].actions]
    assert [r[0] for r in results] == ["ok", "ok", "ok"]
    kinds = [res.events[j][0] for j in tx_event_indexes(setup, results, res.events)]
    assert kinds == ["subaccount_created", "subaccount_transfer", "agent_approved"]

    order = PlaceOrder(2, True, KIND_LIMIT, TIF_GTC, 5_990_000, 10, 0, False, 5, 0)
    rejected = PlaceOrder(2, True, KIND_LIMIT, TIF_GTC, 5_990_000, 10, 0, False, 5, 0)
    by_agent = sign_transaction(BOB, CHAIN, T + 2, [ActAs(sub), order, rejected])
    res = apply_block(state, BlockContext(2, T + 200), [by_agent])
    results = [a.to_obj() for a in res.tx_results[0].actions]
    assert [r[0] for r in results] == ["ok", "ok", "duplicate_client_id"]
    kinds = [res.events[j][0] for j in tx_event_indexes(by_agent, results, res.events)]
    assert kinds == ["order_accepted", "order_rested", "order_rejected"]

    cancel = sign_transaction(BOB, CHAIN, T + 3, [ActAs(sub), CancelAll(None)])
    res = apply_block(state, BlockContext(3, T + 300), [cancel])
    results = [a.to_obj() for a in res.tx_results[0].actions]
    kinds = [res.events[j][0] for j in tx_event_indexes(cancel, results, res.events)]
    assert kinds == ["order_cancelled"]
