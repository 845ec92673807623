"""Transactions and actions: the wire types users sign.

A transaction is ``[version, chain_id, signer, nonce, expires_at_ms, actions, signature]``.
Several actions share one signature (a batch of orders and cancels); each action gets its own
result code when executed. The signed bytes are a domain tag, the chain id and the msgpack of
the unsigned fields, so a signature can be replayed neither on another chain nor as another kind
of message (consensus messages use their own tags). The transaction id is the SHA-256 of the
signed bytes, never of the signature, because Ed25519 signatures can be malleable.

Field meanings (semantics are implemented in the exchange state machine):

* prices are in ticks of the market (``price_ticks``), sizes in lots (``size_lots``), amounts in
  the asset's smallest unit (``amount_atoms``; USDC has 6 decimals);
* ``client_id`` 0 means "none"; ``trigger_price_ticks`` 0 means "no trigger";
* ``expires_at_ms`` 0 means "no expiry".
"""

from __future__ import annotations

from typing import ClassVar

from state_machine.accounts.actions import ACCOUNT_ACTIONS, AccountAction
from state_machine.bridge.actions import BRIDGE_ACTIONS, BridgeAction
from state_machine.codec import (
    I64,
    U8,
    U32,
    U64,
    Bool,
    Bytes,
    DecodeError,
    Enum,
    ListOf,
    Optional,
    Struct,
    Text,
    Union,
    Wire,
    encode,
    wire,
)
from state_machine.crypto import Keypair, sha256, verify
from state_machine.governance.actions import GOVERNANCE_ACTIONS, GovernanceAction
from state_machine.staking.actions import STAKING_ACTIONS, StakingAction

TX_VERSION = 1
TX_DOMAIN_TAG = b"perpbft/tx/v1\x00"
MAX_ACTIONS_PER_TX = 64
MAX_TX_BYTES = 16 * 1024
MAX_ORACLE_PRICES = 64
CHAIN_ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-"
MAX_CHAIN_ID_LEN = 32

# Order kinds.
KIND_LIMIT = 0
KIND_MARKET = 1
KIND_STOP_MARKET = 2
KIND_STOP_LIMIT = 3
KIND_TAKE_PROFIT_MARKET = 4
KIND_TAKE_PROFIT_LIMIT = 5
ORDER_KINDS = frozenset(range(6))
TRIGGER_KINDS = frozenset(
    {KIND_STOP_MARKET, KIND_STOP_LIMIT, KIND_TAKE_PROFIT_MARKET, KIND_TAKE_PROFIT_LIMIT}
)

# Time in force.
TIF_GTC = 0
TIF_IOC = 1
TIF_FOK = 2
TIF_ALO = 3  # add liquidity only (post-only)
TIFS = frozenset(range(4))

# Self-trade prevention.
STP_CANCEL_RESTING = 0
STP_CANCEL_TAKER = 1
STP_CANCEL_BOTH = 2
STP_MODES = frozenset(range(3))

PUBKEY = Bytes(exact=32)
SIGNATURE = Bytes(exact=64)


@wire
class PlaceOrder(Wire):
    TAG: ClassVar[int] = 1
    WIRE = (
        ("market_id", U32),
        ("is_buy", Bool),
        ("kind", Enum(ORDER_KINDS, "order kind")),
        ("tif", Enum(TIFS, "time in force")),
        ("price_ticks", U64),
        ("size_lots", U64),
        ("trigger_price_ticks", U64),
        ("reduce_only", Bool),
        ("client_id", U64),
        ("stp", Enum(STP_MODES, "self-trade prevention mode")),
    )
    market_id: int
    is_buy: bool
    kind: int
    tif: int
    price_ticks: int
    size_lots: int
    trigger_price_ticks: int = 0
    reduce_only: bool = False
    client_id: int = 0
    stp: int = STP_CANCEL_RESTING


@wire
class CancelOrder(Wire):
    TAG: ClassVar[int] = 2
    WIRE = (("market_id", U32), ("order_id", U64))
    market_id: int
    order_id: int


@wire
class CancelByClientId(Wire):
    TAG: ClassVar[int] = 3
    WIRE = (("market_id", U32), ("client_id", U64))
    market_id: int
    client_id: int


@wire
class CancelAll(Wire):
    """Cancel every open order of the signer in one market, or in all markets if None."""

    TAG: ClassVar[int] = 4
    WIRE = (("market_id", Optional(U32)),)
    market_id: int | None


@wire
class AmendOrder(Wire):
    TAG: ClassVar[int] = 5
    WIRE = (
        ("market_id", U32),
        ("order_id", U64),
        ("price_ticks", U64),
        ("size_lots", U64),
    )
    market_id: int
    order_id: int
    price_ticks: int
    size_lots: int


@wire
class Transfer(Wire):
    TAG: ClassVar[int] = 6
    WIRE = (("to", PUBKEY), ("asset_id", U32), ("amount_atoms", U64))
    to: bytes
    asset_id: int
    amount_atoms: int


@wire
class WithdrawRequest(Wire):
    TAG: ClassVar[int] = 7
    WIRE = (("asset_id", U32), ("amount_atoms", U64), ("destination", Bytes(max_len=64)))
    asset_id: int
    amount_atoms: int
    destination: bytes


@wire
class SetLeverage(Wire):
    TAG: ClassVar[int] = 8
    WIRE = (("market_id", U32), ("leverage", U32), ("isolated", Bool))
    market_id: int
    leverage: int
    isolated: bool


@wire
class AdjustIsolatedMargin(Wire):
    """Move ``delta_atoms`` of USDC into (positive) or out of (negative) an isolated position."""

    TAG: ClassVar[int] = 9
    WIRE = (("market_id", U32), ("delta_atoms", I64))
    market_id: int
    delta_atoms: int


@wire
class OraclePrice(Wire):
    WIRE = (("market_id", U32), ("price_ticks", U64))
    market_id: int
    price_ticks: int


@wire
class OracleUpdate(Wire):
    """A validator's price submissions; accepted only from a validator's key."""

    TAG: ClassVar[int] = 10
    WIRE = (("prices", ListOf(Struct(OraclePrice), MAX_ORACLE_PRICES, min_len=1)),)
    prices: tuple[OraclePrice, ...]


# ---- order tools: good-til-time, attached and position TP/SL, TWAP (tags 64..71) -------------
# state_machine/algo/ runs them; 0 in a price or time field means "none".


@wire
class PlaceOrderExtended(Wire):
    """A ``PlaceOrder`` with a good-til time (cancelled at the first block at or after it) and
    a take-profit / stop-loss pair that arms when the order fills (a new tag, so the encoding
    of every existing ``PlaceOrder`` is unchanged)."""

    TAG: ClassVar[int] = 64
    WIRE = (
        ("order", Struct(PlaceOrder)),
        ("good_til_ms", U64),
        ("tp_trigger_ticks", U64),
        ("sl_trigger_ticks", U64),
    )
    order: PlaceOrder
    good_til_ms: int = 0
    tp_trigger_ticks: int = 0
    sl_trigger_ticks: int = 0

    @property
    def tif(self) -> int:
        """The order's time in force (post-only ones run with the post-only orders)."""
        return self.order.tif

    @property
    def market_id(self) -> int:
        return self.order.market_id


@wire
class PlaceTwap(Wire):
    """Buy or sell ``size_lots`` over ``duration_ms`` in one IOC slice every 30 s of block time,
    each no worse than ``max_slippage_ppm`` from the reference price."""

    TAG: ClassVar[int] = 65
    WIRE = (
        ("market_id", U32),
        ("is_buy", Bool),
        ("size_lots", U64),
        ("duration_ms", U64),
        ("randomize", Bool),
        ("reduce_only", Bool),
        ("max_slippage_ppm", U32),
    )
    market_id: int
    is_buy: bool
    size_lots: int
    duration_ms: int
    randomize: bool = False
    reduce_only: bool = False
    max_slippage_ppm: int = 30_000


@wire
class CancelTwap(Wire):
    TAG: ClassVar[int] = 66
    WIRE = (("market_id", U32), ("twap_id", U64))
    market_id: int
    twap_id: int


@wire
class SetPositionTpsl(Wire):
    """A take-profit and/or stop-loss on the signer's whole position (one cancels the other;
    replaces the position's previous pair)."""

    TAG: ClassVar[int] = 67
    WIRE = (("market_id", U32), ("tp_trigger_ticks", U64), ("sl_trigger_ticks", U64))
    market_id: int
    tp_trigger_ticks: int
    sl_trigger_ticks: int


@wire
class CancelTpsl(Wire):
    TAG: ClassVar[int] = 68
    WIRE = (("market_id", U32), ("group_id", U64))
    market_id: int
    group_id: int


ORDER_TOOL_ACTIONS = (PlaceOrderExtended, PlaceTwap, CancelTwap, SetPositionTpsl, CancelTpsl)


Action = (
    PlaceOrder
    | CancelOrder
    | CancelByClientId
    | CancelAll
    | AmendOrder
    | Transfer
    | WithdrawRequest
    | SetLeverage
    | AdjustIsolatedMargin
    | OracleUpdate
    | PlaceOrderExtended
    | PlaceTwap
    | CancelTwap
    | SetPositionTpsl
    | CancelTpsl
    | StakingAction  # state_machine/staking: validators, delegation, evidence
    | GovernanceAction  # state_machine/governance: proposals and votes
    | AccountAction  # state_machine/accounts/actions.py: ActAs, sub-accounts, agents
    | BridgeAction  # state_machine/bridge: deposits and withdrawals through the EVM bridge
)

ACTION = Union(
    (
        PlaceOrder,
        CancelOrder,
        CancelByClientId,
        CancelAll,
        AmendOrder,
        Transfer,
        WithdrawRequest,
        SetLeverage,
        AdjustIsolatedMargin,
        OracleUpdate,
        *STAKING_ACTIONS,
        *GOVERNANCE_ACTIONS,
        *ACCOUNT_ACTIONS,
        *ORDER_TOOL_ACTIONS,
        *BRIDGE_ACTIONS,
    ),
    "action",
)

CHAIN_ID = Text(MAX_CHAIN_ID_LEN, CHAIN_ID_CHARS)


@wire
class Transaction(Wire):
    MAX_BYTES: ClassVar[int] = MAX_TX_BYTES
    WIRE = (
        ("version", U8),
        ("chain_id", CHAIN_ID),
        ("signer", PUBKEY),
        ("nonce", U64),
        ("expires_at_ms", U64),
        ("actions", ListOf(ACTION, MAX_ACTIONS_PER_TX, min_len=1)),
        ("signature", SIGNATURE),
    )
    version: int
    chain_id: str
    signer: bytes
    nonce: int
    expires_at_ms: int
    actions: tuple[Action, ...]
    signature: bytes

    def validate(self, path: str) -> None:
        if self.version != TX_VERSION:
            raise DecodeError(f"{path}.version: unsupported transaction version {self.version}")
        if not self.chain_id:
            raise DecodeError(f"{path}.chain_id: empty")

    def signing_bytes(self) -> bytes:
        return signing_bytes(
            self.version, self.chain_id, self.signer, self.nonce, self.expires_at_ms, self.actions
        )

    def tx_id(self) -> bytes:
        """SHA-256 of the signed bytes: independent of the (malleable) signature."""
        return sha256(self.signing_bytes())

    @staticmethod
    def tx_id_from(signing_bytes: bytes) -> bytes:
        """The tx id when the signing bytes are already at hand."""
        return sha256(signing_bytes)

    def signature_valid(self) -> bool:
        return verify(self.signer, self.signing_bytes(), self.signature)


def signing_bytes(
    version: int,
    chain_id: str,
    signer: bytes,
    nonce: int,
    expires_at_ms: int,
    actions: tuple[Action, ...],
) -> bytes:
    unsigned = [version, chain_id, signer, nonce, expires_at_ms, [ACTION.dump(a) for a in actions]]
    return TX_DOMAIN_TAG + chain_id.encode("ascii") + b"\x00" + encode(unsigned)


def sign_transaction(
    key: Keypair,
    chain_id: str,
    nonce: int,
    actions: tuple[Action, ...] | list[Action],
    expires_at_ms: int = 0,
) -> Transaction:
    """Build and sign a transaction (the client side of the envelope)."""
    actions_t = tuple(actions)
    body = signing_bytes(TX_VERSION, chain_id, key.public_key, nonce, expires_at_ms, actions_t)
    return Transaction(
        TX_VERSION, chain_id, key.public_key, nonce, expires_at_ms, actions_t, key.sign(body)
    )
