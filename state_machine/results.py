"""Results of a block: the codes shared by every domain, action / transaction / block results,
and the catalogue of event kinds and their fields (the API serves these; keep them stable).

Each domain module defines its own result codes (clob/codes.py, accounts/transfers.py,
perpetuals/positions.py, prices/oracle.py); the ones several domains return live here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from state_machine.accounts.codes import ACCOUNT_EVENT_FIELDS
from state_machine.algo.codes import ALGO_EVENT_FIELDS
from state_machine.bridge.codes import BRIDGE_EVENT_FIELDS
from state_machine.governance.codes import GOV_EVENT_FIELDS
from state_machine.staking.codes import STAKING_EVENT_FIELDS

OK = "ok"


WRONG_CHAIN = "wrong_chain"


BAD_VERSION = "bad_version"


EXPIRED = "expired"


UNKNOWN_MARKET = "unknown_market"


UNKNOWN_ASSET = "unknown_asset"


INVALID_AMOUNT = "invalid_amount"
INSUFFICIENT_BALANCE = "insufficient_balance"
INSUFFICIENT_MARGIN = "insufficient_margin"
NOT_PERP = "not_perp"


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
EVENT_FIELDS.update(GOV_EVENT_FIELDS)
EVENT_FIELDS.update(ACCOUNT_EVENT_FIELDS)
EVENT_FIELDS.update(ALGO_EVENT_FIELDS)
EVENT_FIELDS.update(BRIDGE_EVENT_FIELDS)


def event_to_dict(event: Sequence[Any]) -> dict[str, Any]:
    """Name an event's fields (events are tuples ``(kind, *fields)`` for speed)."""
    names = EVENT_FIELDS[event[0]]
    out: dict[str, Any] = {"kind": event[0]}
    out.update(zip(names, event[1:], strict=True))
    return out


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
