"""The API's answers as typed models: the source of the OpenAPI schema (``node.api.openapi``).

Each model is a ``TypedDict`` whose keys are exactly those the route answers (the schema
forbids others, and ``tests/node/test_openapi.py`` validates real answers of every route
against it, so a field added to an answer without its model fails a test). ``Decimal`` and
``Hex`` are strings with a pattern. Models in ``OPEN_MODELS`` allow more keys: an event
carries the fields of its kind (the table in docs/API.md), a status answer may grow.
"""

from __future__ import annotations

from typing import Annotated, Any, NotRequired, TypedDict

Decimal = Annotated[str, "decimal"]  # "60000.5", "-0.25": exact, no exponent
Hex = Annotated[str, "hex"]  # lowercase hex bytes


class Error(TypedDict):
    code: str
    message: str


class Health(TypedDict):
    status: str
    starting: NotRequired[bool]
    height: NotRequired[int]


class Status(TypedDict):
    chain_id: str
    node_id: Hex
    moniker: str
    validator: bool
    height: int
    view: int
    leader: Hex | None
    state_root: Hex
    last_block_time_ms: int | None
    validators: list[dict[str, Any]]
    peers: list[dict[str, Any]]
    mempool: dict[str, Any]
    block_limits: dict[str, Any]
    syncing: bool
    ready: bool
    not_ready_reason: str


class Submitted(TypedDict):
    tx_id: Hex | None
    status: str
    code: NotRequired[str]
    message: NotRequired[str]


class BatchSubmitted(TypedDict):
    results: list[Submitted]


class Event(TypedDict):
    kind: str
    height: int
    timestamp_ms: int
    cursor: str
    market: NotRequired[str]


class CommittedTx(TypedDict):
    tx_id: Hex
    status: str
    height: int
    index: int
    code: str
    message: str
    results: list[dict[str, Any]]
    signer: Hex
    nonce: int
    block_hash: Hex
    timestamp_ms: int
    events: list[Event]
    inclusion_proof: dict[str, Any]


class BlockAnswer(TypedDict):
    height: int
    block_hash: Hex
    header: dict[str, Any]
    tx_ids: list[Hex]
    commit_qc: dict[str, Any]


class MarginTier(TypedDict):
    notional_floor: Decimal
    maintenance_rate_ppm: int


class MarketStats(TypedDict):
    market: str
    window_s: int
    open: Decimal | None
    high: Decimal | None
    low: Decimal | None
    last: Decimal | None
    volume: Decimal
    quote_volume: Decimal
    trades: int
    change_pct: Decimal | None


class MarketAnswer(TypedDict):
    market_id: int
    symbol: str
    kind: str
    base_asset: str
    quote_asset: str
    tick_size: Decimal
    lot_size: Decimal
    min_notional: Decimal
    max_leverage: int
    margin_tiers: list[MarginTier]
    maker_fee_ppm: int
    taker_fee_ppm: int
    price_band_ppm: int
    oracle_price: Decimal
    oracle_time_ms: int
    mark_price: Decimal
    last_trade_price: Decimal | None
    open_interest: Decimal
    volume: Decimal
    best_bid: Decimal | None
    best_ask: Decimal | None
    funding_rate_8h_ppb: int | None
    funding_rate_8h_ppm: Decimal | None
    premium_ppb: int | None
    last_funding_rate_ppb: int | None
    funding_interval_ms: int | None
    next_funding_ms: int | None
    # Governance (node/api/gov.py): trading state, open-interest cap, circuit breakers.
    state: str
    state_cause: str | None
    state_reason: str | None
    state_since_ms: int | None
    open_interest_cap: Decimal | None
    breakers: dict[str, Any] | None
    params: dict[str, Any]
    stats_24h: NotRequired[MarketStats]


class AssetAnswer(TypedDict):
    asset_id: int
    symbol: str
    decimals: int


class Markets(TypedDict):
    height: int
    markets: list[MarketAnswer]
    parameters: dict[str, Any]
    assets: list[AssetAnswer]


class Book(TypedDict):
    market: str
    height: int
    bids: list[list[Decimal | int]]
    asks: list[list[Decimal | int]]


class Trade(TypedDict):
    market: str
    height: int
    timestamp_ms: int
    price: Decimal
    size: Decimal
    taker_side: str
    cursor: str


class Trades(TypedDict):
    market: str
    trades: list[Trade]
    complete_from_height: int


class MarketFunding(TypedDict):
    market: str
    funding: list[Event]
    next_cursor: str | None
    complete_from_height: int


class Candle(TypedDict):
    start_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal
    trades: int


class Candles(TypedDict):
    market: str
    interval: str
    candles: list[Candle]
    complete_from_height: int


class Balance(TypedDict):
    asset: str
    available: Decimal
    held: Decimal


class PositionAnswer(TypedDict):
    market: str
    side: str
    size: Decimal
    entry_price: Decimal
    mark_price: Decimal
    unrealized_pnl: Decimal
    realized_pnl: Decimal
    notional: Decimal
    maintenance_margin: Decimal
    leverage: int
    margin_mode: str
    isolated_margin: Decimal
    pending_funding: Decimal
    liquidation_price: Decimal | None


class AccountAnswer(TypedDict):
    address: Hex
    height: int
    balances: list[Balance]
    positions: list[PositionAnswer]
    margin: dict[str, Any]
    open_orders: int
    waiting_triggers: int


class Orders(TypedDict):
    address: Hex
    height: int
    orders: list[dict[str, Any]]
    twaps: list[dict[str, Any]]  # running TWAPs with their progress (node/api/algojson.py)
    tpsl_groups: list[dict[str, Any]]  # TP/SL groups, armed or waiting for their parent


class Fills(TypedDict):
    address: Hex
    fills: list[Event]
    next_cursor: str | None
    complete_from_height: int


class AccountFunding(TypedDict):
    address: Hex
    funding: list[Event]
    next_cursor: str | None
    complete_from_height: int


class Ledger(TypedDict):
    address: Hex
    ledger: list[Event]
    next_cursor: str | None
    complete_from_height: int


class PnlPoint(TypedDict):
    start_ms: int
    realized_pnl: Decimal
    fees: Decimal
    funding: Decimal
    net: Decimal
    cumulative_net: Decimal


class PnlSeries(TypedDict):
    address: Hex
    interval: str
    points: list[PnlPoint]
    complete_from_height: int


class AccountProof(TypedDict):
    address: Hex
    height: int
    state_root: Hex
    entries: list[dict[str, Any]]
    certified_by: dict[str, Any]


class RecordProof(TypedDict):
    kind: str
    ids: dict[str, str]
    height: int
    state_root: Hex
    entries: list[dict[str, Any]]
    certified_by: dict[str, Any]


class Vault(TypedDict):
    address: Hex
    height: int
    insurance_fund: Decimal
    equity: Decimal
    maintenance_margin: Decimal
    under_water: bool
    high_water: Decimal
    loss_limit_ppm: int
    loss_limit_equity: Decimal
    over_loss_limit: bool
    exposure_cap_per_market: Decimal
    positions: list[dict[str, Any]]


# ---- staking (node/api/staking.py) ---------------------------------------------------------


class EpochSegment(TypedDict):
    """Epochs from ``first_epoch`` on (starting at ``first_height``) are ``length_blocks``."""

    first_epoch: int
    first_height: int
    length_blocks: int


class StakingParamsAnswer(TypedDict):
    enabled: bool
    height: int
    current_epoch: NotRequired[int]
    epoch_length_blocks: NotRequired[int]  # the genesis length; see epoch_schedule
    current_epoch_length_blocks: NotRequired[int]
    epoch_schedule: NotRequired[list[EpochSegment]]
    active_set_size: NotRequired[int]
    min_self_stake: NotRequired[Decimal]
    min_delegation: NotRequired[Decimal]
    unbonding_blocks: NotRequired[int]
    jail_blocks: NotRequired[int]
    slash_bps: NotRequired[int]
    max_commission_bps: NotRequired[int]
    max_unbondings_per_pair: NotRequired[int]
    max_validators: NotRequired[int]
    evidence_max_age_epochs: NotRequired[int]
    params_governed: NotRequired[bool]
    params: NotRequired[dict[str, int]]
    stake_asset: NotRequired[str]
    validators: NotRequired[int]
    bonded: NotRequired[Decimal]
    burnt: NotRequired[Decimal]


class ValidatorInfo(TypedDict):
    operator: Hex
    consensus_key: Hex
    p2p_address: str
    commission_bps: int
    stake: Decimal
    self_stake: Decimal
    power: int
    next_power: int
    active: bool
    jailed: bool
    jailed_until_height: int
    created_height: int


class Validators(TypedDict):
    enabled: bool
    height: int
    epoch: int
    validators: list[ValidatorInfo]


class DelegationInfo(TypedDict):
    delegator: Hex
    amount: Decimal


class ValidatorAnswer(ValidatorInfo):
    height: int
    delegations_total: int
    delegations: list[DelegationInfo]


class AccountDelegation(TypedDict):
    operator: Hex
    amount: Decimal


class UnbondingInfo(TypedDict):
    id: int
    operator: Hex
    amount: Decimal
    start_height: int
    complete_height: int


class AccountDelegations(TypedDict):
    address: Hex
    height: int
    enabled: bool
    delegations: list[AccountDelegation]
    unbondings: list[UnbondingInfo]


class EpochMember(TypedDict):
    consensus_key: Hex
    operator: Hex
    power: int


class EpochSetAnswer(TypedDict):
    epoch: int
    first_height: int
    last_height: int
    total_power: int
    members: list[EpochMember]
class ProposalAnswer(TypedDict):
    proposal_id: int
    title: str
    proposer: Hex
    content_kind: str | None
    content: dict[str, Any] | None
    status: str
    submit_height: int
    voting_end_height: int
    execute_height: int | None
    yes_power: int
    no_power: int
    abstain_power: int
    total_power: int
    message: str | None


class Proposals(TypedDict):
    height: int
    proposals: list[ProposalAnswer]


class ProposalVote(TypedDict):
    voter: Hex
    option: str
    height: int


class ProposalDetail(ProposalAnswer):
    height: int
    votes: list[ProposalVote]


class ProposalTally(TypedDict):
    height: int
    proposal_id: int
    status: str
    yes_power: int
    no_power: int
    abstain_power: int
    total_power: int
    quorum_ppm: int
    threshold_ppm: int
    outcome_if_ended_now: str
class SubAccountInfo(TypedDict):
    index: int
    address: Hex
    name: str


class SubAccounts(TypedDict):
    address: Hex
    height: int
    master: Hex | None
    index: int | None
    subaccounts: list[SubAccountInfo]
    max_subaccounts: int


class AgentInfo(TypedDict):
    agent: Hex
    name: str
    expires_at_ms: int | None
    expired: bool


class Agents(TypedDict):
    address: Hex
    height: int
    agents: list[AgentInfo]
    agent_of: Hex | None
    max_agents: int


class FeeTierInfo(TypedDict):
    tier: int
    min_volume: Decimal
    taker_fee_ppm: int
    maker_fee_ppm: int


class FeeSchedule(TypedDict):
    height: int
    tiers: list[FeeTierInfo]
    window_days: int


class FeeRates(TypedDict):
    taker_fee_ppm: int
    maker_fee_ppm: int


class AccountFees(TypedDict):
    address: Hex
    height: int
    volume_14d: Decimal
    tier: int | None
    rates: FeeRates | None
    tiers: list[FeeTierInfo]


class RouteInfo(TypedDict):
    method: str
    path: str
    summary: str


class Index(TypedDict):
    openapi: str
    routes: list[RouteInfo]


OPEN_MODELS: tuple[type, ...] = (Event, Status)
