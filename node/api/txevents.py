"""Which events of a block belong to one transaction (for ``GET /v1/txs/{id}``).

The state machine emits one flat event list per block, and a block runs its actions by class
(non-order actions, cancels, post-only orders, other orders), so the events of one transaction
are interleaved with others'. They are attributed here by what identifies them:

* order events (``order_accepted``, ``order_rested``, ``order_cancelled``, ``order_amended``,
  and for stop / take-profit orders ``trigger_accepted`` and ``trigger_cancelled``) and fills
  by order id: the ids the transaction's results report for its placements, cancels and amends
  (order ids are unique for the chain's life, shared by resting orders and triggers); a fill
  belongs to every transaction whose order took part in it (taker or maker);
* ``trigger_fired`` by its ``trigger_id`` (a trigger placed at or through the mark fires at the
  end of its own block), and then the events of the order it placed, by that order's id;
* ``order_rejected`` by signer, market and client id of a rejected placement;
* ``cancel_all``: the ``order_cancelled`` and ``trigger_cancelled`` events of the signer with
  reason ``user`` in the market (all markets if none was named);
* ``transfer``, ``withdrawal``, ``leverage``, ``isolated_margin``, and the account actions'
  ``subaccount_created``, ``subaccount_transfer``, ``agent_approved``, ``agent_revoked`` by
  account and the action's own fields;
* the order tools' events by the TWAP or TP/SL group id the result reports (``twap_*``,
  ``tpsl_*``) with the events of the orders a TWAP's slices placed in that block, and a TP/SL
  group attached to an order by its ``parent_order_id``.

"Signer" above is the account the action acted for: the signer, or the account the last
``ActAs`` before it named.

Two transactions of one signer in one block that do the exact same transfer (or cancel-all)
get each other's identical events too; nothing else is ambiguous.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from node.api.history import event_body
from state_machine.accounts.actions import (
    ActAs,
    ApproveAgent,
    CreateSubAccount,
    RevokeAgent,
    SubAccountTransfer,
)
from state_machine.tx import (
    AdjustIsolatedMargin,
    CancelAll,
    PlaceOrder,
    PlaceOrderExtended,
    SetLeverage,
    Transaction,
    Transfer,
    WithdrawRequest,
)

ORDER_EVENTS = (
    "order_accepted",
    "order_rested",
    "order_cancelled",
    "order_amended",
    "trigger_accepted",
    "trigger_cancelled",
)
CANCEL_EVENTS = ("order_cancelled", "trigger_cancelled")
# The order tools' events and the field naming the record (a result's order id).
ALGO_ID_FIELDS = {
    "twap_accepted": "twap_id",
    "twap_slice": "twap_id",
    "twap_finished": "twap_id",
    "tpsl_accepted": "group_id",
    "tpsl_armed": "group_id",
    "tpsl_resized": "group_id",
    "tpsl_cancelled": "group_id",
}


class TxMatcher:
    """The identifying facts of one transaction and its results."""

    def __init__(self, tx: Transaction, results: Sequence[Sequence[Any]]) -> None:
        # The account the actions act for: the signer, or the one the last ActAs named.
        self.owner = tx.signer
        self.order_ids: set[int] = set()
        self.rejected: set[tuple[bytes, int, int]] = set()  # (account, market_id, client_id)
        self.cancel_all_markets: set[tuple[bytes, int | None]] = set()
        self.other: list[tuple[str, tuple[Any, ...]]] = []
        for action, result in zip(tx.actions, results, strict=False):
            self._add(action, result)

    def _add(self, action: Any, result: Sequence[Any]) -> None:
        if isinstance(action, ActAs):
            self.owner = action.account
            return
        code, order_id = result[0], result[2]
        # A result's order id is the order the action placed, cancelled or amended (a
        # withdrawal reports its withdrawal id there instead).
        if order_id and not isinstance(action, WithdrawRequest):
            self.order_ids.add(order_id)
        if isinstance(action, PlaceOrderExtended):
            action = action.order  # the order's own facts identify its events
        if isinstance(action, PlaceOrder) and code != "ok":
            self.rejected.add((self.owner, action.market_id, action.client_id))
        elif isinstance(action, CancelAll) and code == "ok":
            self.cancel_all_markets.add((self.owner, action.market_id))
        else:
            facts = _action_facts(action)
            if facts is not None:
                self.other.append((facts[0], (self.owner, *facts[1])))

    def matches(self, kind: str, body: dict[str, Any]) -> bool:
        if kind in ORDER_EVENTS:
            return body["order_id"] in self.order_ids or self._cancel_all_hit(kind, body)
        if kind == "fill":
            return bool({body["taker_order_id"], body["maker_order_id"]} & self.order_ids)
        if kind == "trigger_fired":
            return body["trigger_id"] in self.order_ids
        if kind in ALGO_ID_FIELDS:
            return body[ALGO_ID_FIELDS[kind]] in self.order_ids
        if kind == "order_rejected":
            return (body["account"], body["market_id"], body["client_id"]) in self.rejected
        return self._other_hit(kind, body)

    def _cancel_all_hit(self, kind: str, body: dict[str, Any]) -> bool:
        owner = body["account"]
        return (
            kind in CANCEL_EVENTS
            and body["reason"] == "user"
            and bool({(owner, None), (owner, body["market_id"])} & self.cancel_all_markets)
        )

    def _other_hit(self, kind: str, body: dict[str, Any]) -> bool:
        facts = _event_facts(kind, body)
        return facts is not None and (kind, facts) in self.other


def _action_facts(action: Any) -> tuple[str, tuple[Any, ...]] | None:
    """The event kind an action leaves and the facts (after its account) that identify it."""
    if isinstance(action, Transfer):
        return "transfer", (action.to, action.asset_id, action.amount_atoms)
    if isinstance(action, WithdrawRequest):
        return "withdrawal", (action.asset_id, action.amount_atoms)
    if isinstance(action, SetLeverage):
        return "leverage", (action.market_id, action.leverage)
    if isinstance(action, AdjustIsolatedMargin):
        return "isolated_margin", (action.market_id, action.delta_atoms)
    if isinstance(action, CreateSubAccount):
        return "subaccount_created", (action.name,)
    if isinstance(action, SubAccountTransfer):
        return "subaccount_transfer", (action.sub, action.deposit, action.asset_id,
                                       action.amount_atoms)  # fmt: skip
    if isinstance(action, ApproveAgent):
        return "agent_approved", (action.agent, action.name, action.expires_at_ms)
    if isinstance(action, RevokeAgent):
        return "agent_revoked", (action.agent,)
    return None


def _event_facts(kind: str, body: dict[str, Any]) -> tuple[Any, ...] | None:
    """An event's account and identifying facts, in the form of :func:`_action_facts`."""
    if kind == "transfer":
        return (body["from"], body["to"], body["asset_id"], body["amount_atoms"])
    if kind == "withdrawal":
        return (body["account"], body["asset_id"], body["amount_atoms"])
    if kind == "leverage":
        return (body["account"], body["market_id"], body["leverage"])
    if kind == "isolated_margin":
        return (body["account"], body["market_id"], body["delta_atoms"])
    if kind == "subaccount_created":
        return (body["master"], body["name"])
    if kind == "subaccount_transfer":
        return (body["master"], body["subaccount"], body["deposit"], body["asset_id"],
                body["amount_atoms"])  # fmt: skip
    if kind == "agent_approved":
        return (body["account"], body["agent"], body["name"], body["expires_at_ms"])
    if kind == "agent_revoked" and body["reason"] == "revoked":
        return (body["account"], body["agent"])
    return None


def tx_event_indexes(
    tx: Transaction, results: Sequence[Sequence[Any]], events: Sequence[Sequence[Any]]
) -> list[int]:
    """Positions in the block's event list of the events that belong to ``tx``."""
    matcher = TxMatcher(tx, results)
    # The order a trigger of this transaction placed when it fired in the same block: its
    # events come before the ``trigger_fired`` that names it, hence this first pass.
    for event in events:
        if event and event[0] == "trigger_fired":
            body = event_body(event)
            if body is not None and body["trigger_id"] in matcher.order_ids and body["order_id"]:
                matcher.order_ids.add(body["order_id"])
        elif event and event[0] == "twap_slice":
            # A slice's order, like a fired trigger's: its events come before the slice's.
            body = event_body(event)
            if body is not None and body["twap_id"] in matcher.order_ids and body["order_id"]:
                matcher.order_ids.add(body["order_id"])
        elif event and event[0] == "tpsl_accepted":
            body = event_body(event)
            if body is not None and body["parent_order_id"] in matcher.order_ids:
                matcher.order_ids.add(body["group_id"])
    out: list[int] = []
    for index, event in enumerate(events):
        body = event_body(event)
        if body is not None and matcher.matches(str(event[0]), body):
            out.append(index)
    return out
