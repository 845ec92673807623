"""Genesis: the chain's assets, markets, validators, funded balances and parameters.

A genesis is a tree of ``@wire`` types, so it has one canonical msgpack encoding and
``Genesis.hash()`` is SHA-256 of it. ``genesis.json`` is the human-editable form that
``perpbft testnet`` writes: the same fields by name, integers as JSON numbers, public keys as
64-character lowercase hex. :func:`genesis_from_json` is strict: unknown or missing fields, wrong
types and semantic errors (duplicate ids, a perp not quoted in USDC, tiers out of order, limits
that could overflow 64-bit arithmetic, ...) raise :class:`GenesisError` naming the field path,
e.g. ``markets[2].margin_tiers[1].mmr_ppm: must be greater than the previous tier's``.

Units (see docs/ARCHITECTURE.md, "Exchange units"): a market's price is an integer number of
ticks and its size an integer number of lots. ``lot_base_atoms`` is the base asset's atoms per
lot and ``tick_lot_atoms`` the quote atoms that one tick of price on one lot is worth, so the
notional of ``size_lots`` at ``price_ticks`` is ``price_ticks * size_lots * tick_lot_atoms``
quote atoms, exactly, with no division anywhere.

Semantic validation is kept out of ``Wire.validate`` on purpose: the codec property tests build
random instances of every wire type and must be able to round-trip them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from state_machine.accounts.policy import (
    AccountsPolicy,
    FeeTier,
    accounts_policy_error,
    fee_tiers_error,
)
from state_machine.bridge.params import BridgeParams, validate_bridge_params
from state_machine.codec import (
    U8,
    U32,
    U64,
    Bytes,
    DecodeError,
    Enum,
    ListOf,
    Optional,
    Struct,
    Text,
    Wire,
    wire,
)
from state_machine.crypto import sha256
from state_machine.governance.params import (
    DEFAULT_GOVERNANCE,
    GovernanceParams,
    governance_params_problem,
)
from state_machine.invariants import PPM
from state_machine.staking.genesis import StakingGenesis, staking_genesis_problem
from state_machine.tx import CHAIN_ID, CHAIN_ID_CHARS, MAX_CHAIN_ID_LEN

USDC_ASSET_ID = 0
USDC_DECIMALS = 6

MARKET_SPOT = 0
MARKET_PERP = 1
MARKET_KINDS = {"spot": MARKET_SPOT, "perp": MARKET_PERP}
MARKET_KIND_NAMES = {v: k for k, v in MARKET_KINDS.items()}

SYMBOL_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-/_."
# Products of price, size and tick value must stay far inside i64 so every encoded value fits.
MAX_NOTIONAL_ATOMS = 2**60
MAX_SUPPLY_ATOMS = 2**62
MAX_ITEMS = 1024


class GenesisError(ValueError):
    """An invalid genesis; the message starts with the offending field path."""


@wire
class Asset(Wire):
    WIRE = (("asset_id", U32), ("symbol", Text(16)), ("decimals", U8))
    asset_id: int
    symbol: str
    decimals: int


@wire
class MarginTier(Wire):
    """From ``notional_floor_atoms`` upward the maintenance margin rate is ``mmr_ppm``."""

    WIRE = (("notional_floor_atoms", U64), ("mmr_ppm", U32))
    notional_floor_atoms: int
    mmr_ppm: int


@wire
class Market(Wire):
    WIRE = (
        ("market_id", U32),
        ("symbol", Text(32)),
        ("kind", Enum(frozenset(MARKET_KIND_NAMES), "market kind")),
        ("base_asset_id", U32),
        ("quote_asset_id", U32),
        ("lot_base_atoms", U64),
        ("tick_lot_atoms", U64),
        ("min_notional_atoms", U64),
        ("max_price_ticks", U64),
        ("max_order_lots", U64),
        ("max_leverage", U32),
        ("margin_tiers", ListOf(Struct(MarginTier), 16)),
        ("maker_fee_ppm", U32),
        ("taker_fee_ppm", U32),
        ("price_band_ppm", U32),
        ("oracle_max_age_ms", U64),
        ("initial_price_ticks", U64),
        ("impact_notional_atoms", U64),
    )
    market_id: int
    symbol: str
    kind: int
    base_asset_id: int
    quote_asset_id: int
    lot_base_atoms: int
    tick_lot_atoms: int
    min_notional_atoms: int
    max_price_ticks: int
    max_order_lots: int
    max_leverage: int
    margin_tiers: tuple[MarginTier, ...]
    maker_fee_ppm: int
    taker_fee_ppm: int
    price_band_ppm: int
    oracle_max_age_ms: int
    initial_price_ticks: int
    impact_notional_atoms: int

    @property
    def is_perp(self) -> bool:
        return self.kind == MARKET_PERP


@wire
class Validator(Wire):
    WIRE = (("pubkey", Bytes(exact=32)), ("power", U64))
    pubkey: bytes
    power: int


@wire
class FundedBalance(Wire):
    WIRE = (("account", Bytes(exact=32)), ("asset_id", U32), ("amount_atoms", U64))
    account: bytes
    asset_id: int
    amount_atoms: int


@wire
class Parameters(Wire):
    """Chain-wide exchange parameters (funding and liquidation ones are used by the risk engine)."""

    WIRE = (
        ("max_open_orders_per_account", U32),
        ("insurance_fund_atoms", U64),
        ("funding_interval_ms", U64),
        ("funding_interest_ppm_8h", U32),
        ("funding_clamp_ppm", U32),
        ("funding_cap_ppm_per_hour", U32),
        ("mark_ema_ms", U64),
        ("liquidation_fee_ppm", U32),
        ("liquidation_partial_notional_atoms", U64),
        ("liquidation_cooldown_ms", U64),
        ("vault_market_notional_max_atoms", U64),
        ("vault_loss_limit_ppm", U32),
    )
    max_open_orders_per_account: int = 1000
    insurance_fund_atoms: int = 0
    funding_interval_ms: int = 3_600_000
    funding_interest_ppm_8h: int = 100  # 0.01 % per 8 hours
    funding_clamp_ppm: int = 500  # +-0.05 %
    funding_cap_ppm_per_hour: int = 40_000  # 4 % per hour
    mark_ema_ms: int = 150_000
    liquidation_fee_ppm: int = 5_000
    liquidation_partial_notional_atoms: int = 100_000 * 10**USDC_DECIMALS
    liquidation_cooldown_ms: int = 30_000
    # Vault risk policy (liquidation/risk.py, "The vault's own risk"): the largest notional at
    # the mark the vault may hold in one market after a takeover (0: it never takes positions
    # over), and
    # the share of its equity high-water mark it may lose before it closes its positions.
    vault_market_notional_max_atoms: int = 2_000_000 * 10**USDC_DECIMALS
    vault_loss_limit_ppm: int = 200_000  # 20 %


@wire
class Genesis(Wire):
    MAX_BYTES = 4 * 1024 * 1024
    WIRE = (
        ("chain_id", CHAIN_ID),
        ("genesis_time_ms", U64),
        ("assets", ListOf(Struct(Asset), MAX_ITEMS)),
        ("markets", ListOf(Struct(Market), MAX_ITEMS)),
        ("validators", ListOf(Struct(Validator), MAX_ITEMS)),
        ("balances", ListOf(Struct(FundedBalance), 1_000_000)),
        ("parameters", Struct(Parameters)),
        ("staking", Optional(Struct(StakingGenesis))),
        ("governance", Optional(Struct(GovernanceParams))),
        ("accounts_policy", Optional(Struct(AccountsPolicy))),
        ("fee_tiers", Optional(ListOf(Struct(FeeTier), 16))),
        ("bridge", Optional(Struct(BridgeParams))),
    )
    # The sections after ``parameters`` are optional: absent ones at the end are not encoded
    # at all, so a genesis without them keeps its bytes and hash (codec.Wire.OPTIONAL_TAIL).
    OPTIONAL_TAIL = 5
    chain_id: str
    genesis_time_ms: int
    assets: tuple[Asset, ...]
    markets: tuple[Market, ...]
    validators: tuple[Validator, ...]
    balances: tuple[FundedBalance, ...]
    parameters: Parameters
    staking: StakingGenesis | None = None
    governance: GovernanceParams | None = None

    @property
    def governance_params(self) -> GovernanceParams:
        """The governance section, or the defaults when genesis has none."""
        return self.governance if self.governance is not None else DEFAULT_GOVERNANCE
    accounts_policy: AccountsPolicy | None = None  # accounts/policy.py; None: the defaults
    fee_tiers: tuple[FeeTier, ...] | None = None  # accounts/policy.py; None: market fees only
    bridge: BridgeParams | None = None  # bridge/params.py; None: no bridge

    def hash(self) -> bytes:
        """SHA-256 of the canonical msgpack encoding."""
        return sha256(self.to_wire())

    def market(self, market_id: int) -> Market | None:
        for m in self.markets:
            if m.market_id == market_id:
                return m
        return None

    def asset(self, asset_id: int) -> Asset | None:
        for a in self.assets:
            if a.asset_id == asset_id:
                return a
        return None

    def to_json(self) -> str:
        return genesis_to_json(self)


# Optional sections, last in Genesis.WIRE (absent: the feature is off or takes its defaults).
OPTIONAL_SECTIONS = tuple(name for name, _ in Genesis.WIRE[-Genesis.OPTIONAL_TAIL :])


# --------------------------------------------------------------------------------------------
# Semantic validation
# --------------------------------------------------------------------------------------------


def _fail(path: str, msg: str) -> GenesisError:
    return GenesisError(f"{path}: {msg}")


def validate_genesis(g: Genesis) -> None:
    """Raise GenesisError naming the field if ``g`` is not a usable genesis."""
    if not g.chain_id or any(c not in CHAIN_ID_CHARS for c in g.chain_id):
        raise _fail("chain_id", f"1-{MAX_CHAIN_ID_LEN} characters of [a-z0-9-]")
    assets: dict[int, Asset] = {}
    for i, a in enumerate(g.assets):
        p = f"assets[{i}]"
        if a.asset_id in assets:
            raise _fail(f"{p}.asset_id", f"duplicate asset id {a.asset_id}")
        if not a.symbol or any(c not in SYMBOL_CHARS for c in a.symbol):
            raise _fail(f"{p}.symbol", f"1-16 characters of [{SYMBOL_CHARS}]")
        if a.decimals > 18:
            raise _fail(f"{p}.decimals", "at most 18")
        assets[a.asset_id] = a
    usdc = assets.get(USDC_ASSET_ID)
    if usdc is None or usdc.decimals != USDC_DECIMALS:
        raise _fail("assets", f"asset id {USDC_ASSET_ID} must be USDC with 6 decimals")
    market_ids: set[int] = set()
    symbols: set[str] = set()
    for i, m in enumerate(g.markets):
        _validate_market(m, f"markets[{i}]", assets, market_ids, symbols)
    if not g.validators:
        raise _fail("validators", "at least one validator")
    keys: set[bytes] = set()
    total_power = 0
    for i, v in enumerate(g.validators):
        if v.pubkey in keys:
            raise _fail(f"validators[{i}].pubkey", "duplicate validator key")
        if v.power == 0:
            raise _fail(f"validators[{i}].power", "must be positive")
        keys.add(v.pubkey)
        total_power += v.power
    if total_power >= 2**62:
        raise _fail("validators", "total voting power too large")
    if g.staking is not None:
        problem = staking_genesis_problem(g.staking, [(v.pubkey, v.power) for v in g.validators])
        if problem is not None:
            raise _fail(*problem)
    totals: dict[int, int] = {}
    seen: set[tuple[bytes, int]] = set()
    for i, b in enumerate(g.balances):
        p = f"balances[{i}]"
        if b.asset_id not in assets:
            raise _fail(f"{p}.asset_id", f"unknown asset {b.asset_id}")
        if (b.account, b.asset_id) in seen:
            raise _fail(p, "duplicate account and asset")
        seen.add((b.account, b.asset_id))
        totals[b.asset_id] = totals.get(b.asset_id, 0) + b.amount_atoms
        if totals[b.asset_id] > MAX_SUPPLY_ATOMS:
            raise _fail(f"{p}.amount_atoms", "total supply of the asset exceeds 2**62")
    params = g.parameters
    if params.max_open_orders_per_account == 0:
        raise _fail("parameters.max_open_orders_per_account", "must be positive")
    if params.funding_interval_ms == 0:
        raise _fail("parameters.funding_interval_ms", "must be positive")
    if totals.get(USDC_ASSET_ID, 0) + params.insurance_fund_atoms > MAX_SUPPLY_ATOMS:
        raise _fail("parameters.insurance_fund_atoms", "USDC supply exceeds 2**62")
    _validate_vault_policy(params)
    if g.governance is not None:
        problem = governance_params_problem(g.governance)
        if problem is not None:
            raise _fail(f"governance.{problem[0]}", problem[1])
    _validate_accounts_sections(g)
    if g.bridge is not None:
        bridge_problem = validate_bridge_params(g.bridge, [v.pubkey for v in g.validators])
        if bridge_problem is not None:
            raise GenesisError(bridge_problem)


def _validate_accounts_sections(g: Genesis) -> None:
    if g.accounts_policy is not None:
        err = accounts_policy_error(g.accounts_policy)
        if err:
            raise GenesisError("accounts_policy" + err)
    if g.fee_tiers is not None:
        err = fee_tiers_error(g.fee_tiers, [m.taker_fee_ppm for m in g.markets])
        if err:
            raise GenesisError("fee_tiers" + err)


def _validate_vault_policy(params: Parameters) -> None:
    if params.vault_market_notional_max_atoms > MAX_NOTIONAL_ATOMS:
        raise _fail("parameters.vault_market_notional_max_atoms", "at most 2**60")
    if not 1 <= params.vault_loss_limit_ppm <= PPM:
        raise _fail("parameters.vault_loss_limit_ppm", "between 1 and 1000000")


def market_problem(
    m: Market, assets: dict[int, Asset], other_ids: set[int], other_symbols: set[str]
) -> str | None:
    """Why ``m`` is not a usable market beside the others (genesis's rules), or None."""
    try:
        _validate_market(m, "market", assets, set(other_ids), set(other_symbols))
    except GenesisError as exc:
        return str(exc)
    return None


def asset_problem(a: Asset, assets: dict[int, Asset]) -> str | None:
    """Why ``a`` cannot be added to ``assets`` (genesis's rules), or None."""
    if a.asset_id in assets:
        return f"asset.asset_id: asset id {a.asset_id} exists"
    if not a.symbol or any(c not in SYMBOL_CHARS for c in a.symbol):
        return f"asset.symbol: 1-16 characters of [{SYMBOL_CHARS}]"
    if any(x.symbol == a.symbol for x in assets.values()):
        return f"asset.symbol: duplicate asset symbol {a.symbol}"
    if a.decimals > 18:
        return "asset.decimals: at most 18"
    return None


def parameters_problem(params: Parameters) -> str | None:
    """Why ``params`` are not usable exchange parameters (genesis's rules), or None."""
    try:
        if params.max_open_orders_per_account == 0:
            raise _fail("parameters.max_open_orders_per_account", "must be positive")
        if params.funding_interval_ms == 0:
            raise _fail("parameters.funding_interval_ms", "must be positive")
        _validate_vault_policy(params)
    except GenesisError as exc:
        return str(exc)
    return None


def _validate_market(
    m: Market, p: str, assets: dict[int, Asset], ids: set[int], symbols: set[str]
) -> None:
    if m.market_id in ids:
        raise _fail(f"{p}.market_id", f"duplicate market id {m.market_id}")
    ids.add(m.market_id)
    if not m.symbol or any(c not in SYMBOL_CHARS for c in m.symbol):
        raise _fail(f"{p}.symbol", f"1-32 characters of [{SYMBOL_CHARS}]")
    if m.symbol in symbols:
        raise _fail(f"{p}.symbol", f"duplicate market symbol {m.symbol}")
    symbols.add(m.symbol)
    if m.base_asset_id not in assets:
        raise _fail(f"{p}.base_asset_id", f"unknown asset {m.base_asset_id}")
    if m.quote_asset_id not in assets:
        raise _fail(f"{p}.quote_asset_id", f"unknown asset {m.quote_asset_id}")
    if m.base_asset_id == m.quote_asset_id:
        raise _fail(f"{p}.base_asset_id", "base and quote must differ")
    for name in ("lot_base_atoms", "tick_lot_atoms", "max_price_ticks", "max_order_lots"):
        if getattr(m, name) == 0:
            raise _fail(f"{p}.{name}", "must be positive")
    if m.max_price_ticks * m.max_order_lots * m.tick_lot_atoms > MAX_NOTIONAL_ATOMS:
        raise _fail(f"{p}.max_order_lots", "max price x max size x tick value exceeds 2**60")
    if m.max_order_lots * m.lot_base_atoms > MAX_NOTIONAL_ATOMS:
        raise _fail(f"{p}.max_order_lots", "max size in base atoms exceeds 2**60")
    if m.maker_fee_ppm > m.taker_fee_ppm:
        raise _fail(f"{p}.maker_fee_ppm", "must not exceed taker_fee_ppm")
    if m.taker_fee_ppm > PPM // 10:
        raise _fail(f"{p}.taker_fee_ppm", "at most 10 %")
    if m.price_band_ppm == 0 or m.price_band_ppm >= PPM:
        raise _fail(f"{p}.price_band_ppm", "between 1 and 999999")
    if m.initial_price_ticks > m.max_price_ticks:
        raise _fail(f"{p}.initial_price_ticks", "above max_price_ticks")
    if m.kind == MARKET_PERP:
        if m.quote_asset_id != USDC_ASSET_ID:
            raise _fail(f"{p}.quote_asset_id", "perpetuals are margined in USDC (asset 0)")
        if not 1 <= m.max_leverage <= 200:
            raise _fail(f"{p}.max_leverage", "between 1 and 200")
        if not m.margin_tiers:
            raise _fail(f"{p}.margin_tiers", "a perpetual needs at least one tier")
        if m.margin_tiers[0].notional_floor_atoms != 0:
            raise _fail(f"{p}.margin_tiers[0].notional_floor_atoms", "the first tier starts at 0")
        if m.oracle_max_age_ms == 0:
            raise _fail(f"{p}.oracle_max_age_ms", "must be positive")
        # Maintenance must stay below initial margin at max leverage or positions opened at
        # max leverage would be liquidatable at once.
        if 2 * m.margin_tiers[0].mmr_ppm * m.max_leverage > PPM:
            raise _fail(
                f"{p}.margin_tiers[0].mmr_ppm", "at most half the initial rate at max_leverage"
            )
        prev: MarginTier | None = None
        for j, t in enumerate(m.margin_tiers):
            tp = f"{p}.margin_tiers[{j}]"
            if t.mmr_ppm == 0 or t.mmr_ppm >= PPM:
                raise _fail(f"{tp}.mmr_ppm", "between 1 and 999999")
            if prev is not None:
                if t.notional_floor_atoms <= prev.notional_floor_atoms:
                    raise _fail(f"{tp}.notional_floor_atoms", "must increase")
                if t.mmr_ppm <= prev.mmr_ppm:
                    raise _fail(f"{tp}.mmr_ppm", "must be greater than the previous tier's")
            prev = t
    else:
        if m.max_leverage != 1:
            raise _fail(f"{p}.max_leverage", "spot markets have max_leverage 1")
        if m.margin_tiers:
            raise _fail(f"{p}.margin_tiers", "spot markets have no margin tiers")


# --------------------------------------------------------------------------------------------
# JSON form
# --------------------------------------------------------------------------------------------


def _to_json_obj(obj: Any, spec_cls: type[Wire]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, spec in spec_cls.WIRE:
        value = getattr(obj, name)
        if value is None and isinstance(spec, Optional):
            continue  # an absent optional section
        if isinstance(spec, Optional):
            spec = spec.inner
        if isinstance(spec, Struct):
            out[name] = _to_json_obj(value, spec.cls)
        elif isinstance(spec, ListOf) and isinstance(spec.item, Struct):
            item_cls = spec.item.cls
            out[name] = [_to_json_obj(v, item_cls) for v in value]
        elif isinstance(value, bytes):
            out[name] = value.hex()
        elif spec_cls is Market and name == "kind":
            out[name] = MARKET_KIND_NAMES[value]
        else:
            out[name] = value
    return out


def wire_from_json(data: Any, cls: type[Wire], path: str) -> Any:
    """A genesis-style JSON object (a market, an asset, parameters) as ``cls``; raises
    GenesisError naming the field (``perpbft gov propose`` reads proposals with it)."""
    return _from_json_obj(data, cls, path)


def genesis_to_json(g: Genesis) -> str:
    """Human-editable JSON (stable field order, one field per line)."""
    return json.dumps(_to_json_obj(g, Genesis), indent=2) + "\n"


def _from_json_obj(data: Any, cls: type[Wire], path: str) -> Any:
    if not isinstance(data, dict):
        raise _fail(path or cls.__name__, f"expected an object, got {type(data).__name__}")
    names = [n for n, _ in cls.WIRE]
    for key in data:
        if key not in names:
            raise _fail(f"{path}.{key}" if path else key, "unknown field")
    defaults = _json_defaults(cls)
    values: list[Any] = []
    for name, spec in cls.WIRE:
        fp = f"{path}.{name}" if path else name
        if name not in data or (isinstance(spec, Optional) and data[name] is None):
            if name in defaults:
                values.append(defaults[name])
                continue
            if isinstance(spec, Optional):
                values.append(None)  # an absent optional section
                continue
            raise _fail(fp, "missing field")
        if isinstance(spec, Optional):
            spec = spec.inner
        values.append(_field_from_json(data[name], spec, cls, name, fp))
    while len(values) > len(cls.WIRE) - cls.OPTIONAL_TAIL and values[-1] is None:
        values.pop()  # absent optional sections are left out of the encoding
    try:
        return cls.from_fields(values, "")
    except DecodeError as exc:
        raise _fail(path or cls.__name__, exc.reason) from None


def _field_from_json(value: Any, spec: Any, cls: type[Wire], name: str, fp: str) -> Any:
    if isinstance(spec, Optional):
        return None if value is None else _field_from_json(value, spec.inner, cls, name, fp)
    if isinstance(spec, Struct):
        return _from_json_obj(value, spec.cls, fp).to_obj()
    if isinstance(spec, ListOf):
        if not isinstance(value, list):
            raise _fail(fp, "expected a list")
        if isinstance(spec.item, Struct):
            item_cls = spec.item.cls
            return [_from_json_obj(v, item_cls, f"{fp}[{i}]").to_obj() for i, v in enumerate(value)]
        return value
    if isinstance(spec, Bytes):
        if not isinstance(value, str):
            raise _fail(fp, "expected a hex string")
        text = value[2:] if value.startswith("0x") else value
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise _fail(fp, "not valid hex") from None
        if spec.exact is not None and len(raw) != spec.exact:
            raise _fail(fp, f"expected {spec.exact} bytes ({2 * spec.exact} hex characters)")
        return raw
    if cls is Market and name == "kind":
        if value not in MARKET_KINDS:
            raise _fail(fp, f"expected one of {sorted(MARKET_KINDS)}")
        return MARKET_KINDS[value]
    if isinstance(value, bool) or (spec.__class__.__name__ == "Int" and not isinstance(value, int)):
        raise _fail(fp, f"expected an integer, got {type(value).__name__}")
    try:
        return spec.check(value, fp)
    except DecodeError as exc:
        raise GenesisError(exc.reason) from None


def _json_defaults(cls: type[Wire]) -> dict[str, Any]:
    """Fields genesis.json may omit, with the values they take: every parameter, the staking
    section's fields, and the optional sections themselves (absent)."""
    if cls is Parameters or cls is StakingGenesis:
        names = [name for name, _ in cls.WIRE]
        return dict(zip(names, cls().fields_obj(), strict=True))
    if cls is Genesis:
        return dict.fromkeys(OPTIONAL_SECTIONS)
    if cls is BridgeParams:
        return _wire_defaults(BridgeParams(1, bytes(20)), BridgeParams.WIRE[2:])
    return {}


def _wire_defaults(example: Wire, fields: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """The plain (encoded) default values of ``fields`` of a wire type."""
    return {name: spec.dump(getattr(example, name)) for name, spec in fields}


def genesis_from_json(text: str | bytes) -> Genesis:
    """Parse and validate genesis.json; raises GenesisError naming the offending field."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GenesisError(f"genesis.json: invalid JSON: {exc}") from None
    g: Genesis = _from_json_obj(data, Genesis, "")
    validate_genesis(g)
    return g


def genesis_from_wire(data: bytes) -> Genesis:
    """Decode canonical msgpack bytes and validate."""
    g = Genesis.from_wire(data)
    validate_genesis(g)
    return g


# --------------------------------------------------------------------------------------------
# Defaults for localnets and tests
# --------------------------------------------------------------------------------------------

USDC = 10**USDC_DECIMALS


def _tiers(max_leverage: int, floors_usdc: Sequence[int]) -> tuple[MarginTier, ...]:
    """Tier 0 at half the initial rate at max leverage; each next tier doubles the rate."""
    mmr = PPM // (2 * max_leverage)
    out = []
    for floor in floors_usdc:
        out.append(MarginTier(floor * USDC, mmr))
        mmr *= 2
    return tuple(out)


def default_markets() -> tuple[tuple[Asset, ...], tuple[Market, ...]]:
    """USDC, BTC (8 decimals), ETH (8 decimals); BTC/USDC, ETH/USDC, BTC-PERP, ETH-PERP.

    BTC: tick 0.01 USDC, lot 0.0001 BTC (10**4 atoms) -> one tick on one lot is 1 USDC atom.
    ETH: tick 0.01 USDC, lot 0.001 ETH (10**5 atoms) -> one tick on one lot is 10 atoms.
    """
    assets = (Asset(USDC_ASSET_ID, "USDC", 6), Asset(1, "BTC", 8), Asset(2, "ETH", 8))
    common: dict[str, Any] = {
        "quote_asset_id": USDC_ASSET_ID,
        "min_notional_atoms": 10 * USDC,
        "maker_fee_ppm": 150,
        "taker_fee_ppm": 450,
        "price_band_ppm": 100_000,
        "oracle_max_age_ms": 60_000,
        "impact_notional_atoms": 10_000 * USDC,
    }
    btc: dict[str, Any] = {
        "base_asset_id": 1,
        "lot_base_atoms": 10**4,
        "tick_lot_atoms": 1,
        "max_price_ticks": 10**10,  # 100 million USDC
        "max_order_lots": 10**8,  # 10,000 BTC
        "initial_price_ticks": 6_000_000,  # 60,000.00
    }
    eth: dict[str, Any] = {
        "base_asset_id": 2,
        "lot_base_atoms": 10**5,
        "tick_lot_atoms": 10,
        "max_price_ticks": 10**9,
        "max_order_lots": 10**8,
        "initial_price_ticks": 300_000,  # 3,000.00
    }
    markets = (
        Market(0, "BTC/USDC", MARKET_SPOT, max_leverage=1, margin_tiers=(), **btc, **common),
        Market(1, "ETH/USDC", MARKET_SPOT, max_leverage=1, margin_tiers=(), **eth, **common),
        Market(
            2,
            "BTC-PERP",
            MARKET_PERP,
            max_leverage=50,
            margin_tiers=_tiers(50, (0, 2_000_000, 10_000_000)),
            **btc,
            **common,
        ),
        Market(
            3,
            "ETH-PERP",
            MARKET_PERP,
            max_leverage=25,
            margin_tiers=_tiers(25, (0, 1_000_000, 5_000_000)),
            **eth,
            **common,
        ),
    )
    return assets, markets


def default_genesis(
    chain_id: str,
    validator_pubkeys_and_powers: Sequence[tuple[bytes, int]],
    funded_accounts: Sequence[bytes | tuple[bytes, int, int]] = (),
    genesis_time_ms: int = 1_700_000_000_000,
    parameters: Parameters | None = None,
    staking: StakingGenesis | None = None,
) -> Genesis:
    """A validated genesis with the default assets and markets.

    ``funded_accounts`` holds public keys (each gets 1,000,000 USDC, 10 BTC and 100 ETH) and/or
    explicit ``(pubkey, asset_id, amount_atoms)`` triples.
    """
    assets, markets = default_markets()
    balances: list[FundedBalance] = []
    for item in funded_accounts:
        if isinstance(item, bytes):
            balances.append(FundedBalance(item, USDC_ASSET_ID, 1_000_000 * USDC))
            balances.append(FundedBalance(item, 1, 10 * 10**8))
            balances.append(FundedBalance(item, 2, 100 * 10**8))
        else:
            account, asset_id, amount = item
            balances.append(FundedBalance(account, asset_id, amount))
    g = Genesis(
        chain_id=chain_id,
        genesis_time_ms=genesis_time_ms,
        assets=assets,
        markets=markets,
        validators=tuple(Validator(pk, power) for pk, power in validator_pubkeys_and_powers),
        balances=tuple(balances),
        parameters=parameters if parameters is not None else Parameters(),
        staking=staking,
    )
    validate_genesis(g)
    return g
