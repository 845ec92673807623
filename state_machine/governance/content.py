"""What a proposal changes: one member of :data:`CONTENT`, carried as canonical bytes in
:class:`actions.SubmitProposal` (``encode_content`` / ``decode_content``).

Market and parameter changes name the whole new record (a market's full parameters, the full
exchange parameters), not a diff: the proposal shows exactly what will be in force, and the
record is validated by the same rules as genesis.
"""

from __future__ import annotations

from typing import ClassVar

from state_machine.accounts.policy import MAX_FEE_TIERS, FeeTier
from state_machine.codec import (
    U32,
    U64,
    DecodeError,
    Enum,
    ListOf,
    Struct,
    Text,
    Union,
    Wire,
    decode_union,
    encode,
    wire,
)
from state_machine.genesis import Asset, Market, Parameters
from state_machine.governance.actions import MAX_CONTENT_BYTES, MAX_TITLE_CHARS, TITLE_CHARS

# Market states (records.MarketControls.state).
ACTIVE = 0
CLOSE_ONLY = 1
HALTED = 2
DELISTED = 3
STATE_NAMES = {ACTIVE: "active", CLOSE_ONLY: "close_only", HALTED: "halted", DELISTED: "delisted"}
STATE_CODES = {v: k for k, v in STATE_NAMES.items()}


@wire
class BreakerConfig(Wire):
    """A market's circuit breakers (0 turns one off). ``oracle_stale_ms``: no fresh validator
    submission for that long; ``move_ppm`` within ``move_window_ms``: the mark moved more than
    that from the window's first mark; ``band_cross_ms``: the best bid above (or best ask
    below) the price band around the oracle for that long. A tripped breaker sets the market
    to ``action`` (close_only or halted); it resumes after ``cooldown_ms`` once the oracle is
    fresh and the condition is gone."""

    WIRE = (
        ("oracle_stale_ms", U64),
        ("move_ppm", U32),
        ("move_window_ms", U64),
        ("band_cross_ms", U64),
        ("action", Enum(frozenset({CLOSE_ONLY, HALTED}), "breaker action")),
        ("cooldown_ms", U64),
    )
    oracle_stale_ms: int = 0
    move_ppm: int = 0
    move_window_ms: int = 0
    band_cross_ms: int = 0
    action: int = HALTED
    cooldown_ms: int = 60_000


BREAKERS_OFF = BreakerConfig()


@wire
class ChangeMarket(Wire):
    """Replace an existing market's parameters (same id, symbol, kind and assets)."""

    TAG: ClassVar[int] = 1
    WIRE = (("market", Struct(Market)),)
    market: Market


@wire
class SetMarketControls(Wire):
    """A market's open-interest cap (lots, 0: none) and circuit breakers."""

    TAG: ClassVar[int] = 2
    WIRE = (("market_id", U32), ("oi_cap_lots", U64), ("breakers", Struct(BreakerConfig)))
    market_id: int
    oi_cap_lots: int
    breakers: BreakerConfig


@wire
class SetMarketState(Wire):
    """Set a market active, close-only or halted (a breaker-set state is replaced; a
    governance-set one is never lifted by a breaker's cool-down)."""

    TAG: ClassVar[int] = 3
    WIRE = (
        ("market_id", U32),
        ("state", Enum(frozenset({ACTIVE, CLOSE_ONLY, HALTED}), "market state")),
        ("reason", Text(MAX_TITLE_CHARS, TITLE_CHARS)),
    )
    market_id: int
    state: int
    reason: str


@wire
class ListAsset(Wire):
    TAG: ClassVar[int] = 4
    WIRE = (("asset", Struct(Asset)),)
    asset: Asset


@wire
class ListMarket(Wire):
    """A new spot or perp market; ``initial_price_ticks`` seeds its oracle and mark until the
    validators' submissions arrive."""

    TAG: ClassVar[int] = 5
    WIRE = (("market", Struct(Market)),)
    market: Market


@wire
class DelistPerp(Wire):
    """Settle every position of a perp market at ``final_price_ticks`` (0: its mark at
    execution), cancel its orders and triggers, and close it for good."""

    TAG: ClassVar[int] = 6
    WIRE = (("market_id", U32), ("final_price_ticks", U64))
    market_id: int
    final_price_ticks: int


@wire
class ChangeParameters(Wire):
    """Replace the exchange-wide parameters (funding, liquidation, the vault's limits, the
    open-order limit); ``insurance_fund_atoms`` is the genesis mint and cannot change."""

    TAG: ClassVar[int] = 7
    WIRE = (("parameters", Struct(Parameters)),)
    parameters: Parameters


@wire
class SetFeeTiers(Wire):
    """Replace the fee tiers by 14-day volume (state_machine/accounts/fees.py); an empty list
    leaves every market at its own fees."""

    TAG: ClassVar[int] = 8
    WIRE = (("tiers", ListOf(Struct(FeeTier), MAX_FEE_TIERS)),)
    tiers: tuple[FeeTier, ...]


@wire
class SetStakingParams(Wire):
    """Replace the staking parameters (state_machine/staking/params.py) except the epoch
    length, which has its own kind: every field names the value in force from execution on.
    What a change does to what is in flight is in docs/ARCHITECTURE.md (governed staking
    parameters)."""

    TAG: ClassVar[int] = 9
    WIRE = (
        ("active_set_size", U32),
        ("min_self_stake_atoms", U64),
        ("min_delegation_atoms", U64),
        ("unbonding_blocks", U64),
        ("jail_blocks", U64),
        ("slash_bps", U32),
        ("max_commission_bps", U32),
        ("max_unbondings_per_pair", U32),
        ("max_validators", U32),
    )
    active_set_size: int
    min_self_stake_atoms: int
    min_delegation_atoms: int
    unbonding_blocks: int
    jail_blocks: int
    slash_bps: int
    max_commission_bps: int
    max_unbondings_per_pair: int
    max_validators: int


@wire
class SetBlockLimits(Wire):
    """New chain-wide block limits, in force from block ``execution height +
    BLOCK_LIMITS_DELAY_BLOCKS`` (state_machine/governance/chainparams.py) on."""

    TAG: ClassVar[int] = 10
    WIRE = (("max_block_txs", U32), ("max_block_bytes", U32), ("max_block_actions", U32))
    max_block_txs: int
    max_block_bytes: int
    max_block_actions: int


@wire
class SetEpochLength(Wire):
    """Blocks per epoch from the first epoch whose validator set is not fixed yet (the epoch
    after next when it runs); validated in ``governance/epochlength.py``."""

    TAG: ClassVar[int] = 11
    WIRE = (("length_blocks", U32),)
    length_blocks: int


Content = (
    ChangeMarket
    | SetMarketControls
    | SetMarketState
    | ListAsset
    | ListMarket
    | DelistPerp
    | ChangeParameters
    | SetFeeTiers
    | SetStakingParams
    | SetBlockLimits
    | SetEpochLength
)
CONTENT = Union(
    (
        ChangeMarket,
        SetMarketControls,
        SetMarketState,
        ListAsset,
        ListMarket,
        DelistPerp,
        ChangeParameters,
        SetFeeTiers,
        SetStakingParams,
        SetBlockLimits,
        SetEpochLength,
    ),
    "proposal content",
)
CONTENT_KINDS = {
    ChangeMarket: "change_market",
    SetMarketControls: "market_controls",
    SetMarketState: "market_state",
    ListAsset: "list_asset",
    ListMarket: "list_market",
    DelistPerp: "delist_perp",
    ChangeParameters: "change_parameters",
    SetFeeTiers: "fee_tiers",
    SetStakingParams: "staking_params",
    SetBlockLimits: "block_limits",
    SetEpochLength: "epoch_length",
}


def encode_content(content: Content) -> bytes:
    return encode(CONTENT.dump(content))


def decode_content(data: bytes) -> Content:
    """Raises DecodeError naming the field when ``data`` is not one canonical content."""
    result = decode_union(CONTENT, data, MAX_CONTENT_BYTES)
    if not isinstance(result, tuple(CONTENT_KINDS)):
        raise DecodeError("proposal content: unknown kind")
    return result  # type: ignore[return-value]
