"""Staking parameters (chain-wide, from genesis; the defaults are the localnet's)."""

from __future__ import annotations

import dataclasses

from consensus.types import MAX_VALIDATORS

# Stake is USDC (asset 0, 6 decimals); voting power is whole USDC of stake.
STAKE_ASSET_ID = 0
ATOMS_PER_POWER = 1_000_000
BPS = 10_000


@dataclasses.dataclass(frozen=True, slots=True)
class StakingParams:
    epoch_length_blocks: int = 600  # 5 minutes at 2 blocks/s
    active_set_size: int = 16  # top N by stake
    min_self_stake_atoms: int = 1_000 * ATOMS_PER_POWER
    min_delegation_atoms: int = 10 * ATOMS_PER_POWER
    unbonding_blocks: int = 7_200  # one hour at 2 blocks/s
    jail_blocks: int = 1_200
    slash_bps: int = 500  # 5 % of the stake is burnt per equivocation
    max_commission_bps: int = 5_000
    max_unbondings_per_pair: int = 7  # open unbonding entries per (delegator, validator)
    max_validators: int = 1_024  # registered, active or not

    def __post_init__(self) -> None:
        if self.epoch_length_blocks < 1:
            raise ValueError("epoch_length_blocks must be >= 1")
        if not 1 <= self.active_set_size <= MAX_VALIDATORS:
            raise ValueError(f"active_set_size must be in 1..{MAX_VALIDATORS}")
        if self.min_self_stake_atoms < ATOMS_PER_POWER or self.min_delegation_atoms < 1:
            raise ValueError("minimum stakes must be at least one unit of voting power")
        if self.unbonding_blocks < self.epoch_length_blocks:
            raise ValueError("the unbonding period must cover at least one epoch")
        if not 0 <= self.slash_bps <= BPS or not 0 <= self.max_commission_bps <= BPS:
            raise ValueError("fractions are basis points in 0..10000")
        if self.jail_blocks < 0 or self.max_unbondings_per_pair < 1 or self.max_validators < 1:
            raise ValueError("jail_blocks >= 0, max_unbondings_per_pair and max_validators >= 1")

    @property
    def evidence_max_age_epochs(self) -> int:
        """Evidence about an epoch older than this many epochs is refused: every stake that was
        bonded then has finished unbonding, so nothing is left to slash."""
        return self.unbonding_blocks // self.epoch_length_blocks


# ---- governed staking parameters (governance kind SetStakingParams) ----------------------------

# Every field but the epoch length (its own governance kind: consensus hands over sets at
# epoch boundaries, so a change of length needs its own rules), in wire order.
GOVERNED_FIELDS = (
    "active_set_size",
    "min_self_stake_atoms",
    "min_delegation_atoms",
    "unbonding_blocks",
    "jail_blocks",
    "slash_bps",
    "max_commission_bps",
    "max_unbondings_per_pair",
    "max_validators",
)
# Bounds a proposal cannot cross (genesis may): the unbonding period bounds how many epoch
# sets and evidence records are kept, so it bounds memory; a jail longer than about two
# months at 2 blocks/s is a ban, which the stake's owner should not get by a parameter.
MAX_GOVERNED_PERIOD_BLOCKS = 10_000_000
MAX_GOVERNED_VALIDATORS = 65_536


def governed_values(params: StakingParams) -> tuple[int, ...]:
    return tuple(getattr(params, name) for name in GOVERNED_FIELDS)


def with_governed(params: StakingParams, values: tuple[int, ...]) -> StakingParams:
    """``params`` with the governed fields replaced (the epoch length kept); raises
    ValueError like :class:`StakingParams` when the result is unusable."""
    if len(values) != len(GOVERNED_FIELDS):
        raise ValueError(f"expected {len(GOVERNED_FIELDS)} governed staking parameters")
    return dataclasses.replace(params, **dict(zip(GOVERNED_FIELDS, values, strict=True)))


def governed_params_problem(current: StakingParams, values: tuple[int, ...]) -> str | None:
    """Why ``values`` cannot replace the governed fields of ``current`` (the parameters in
    force, so the unbonding period is checked against the epoch length in force), or None."""
    named = dict(zip(GOVERNED_FIELDS, values, strict=True))
    for name in ("unbonding_blocks", "jail_blocks"):
        if named[name] > MAX_GOVERNED_PERIOD_BLOCKS:
            return f"{name}: at most {MAX_GOVERNED_PERIOD_BLOCKS}"
    if named["max_validators"] > MAX_GOVERNED_VALIDATORS:
        return f"max_validators: at most {MAX_GOVERNED_VALIDATORS}"
    try:
        with_governed(current, values)
    except ValueError as exc:
        return str(exc)
    return None
