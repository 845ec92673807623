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
