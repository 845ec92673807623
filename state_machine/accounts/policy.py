"""The optional genesis sections of accounts: ``accounts_policy`` and ``fee_tiers``.

Both are optional trailing sections of the genesis (codec ``OPTIONAL_TAIL``): a genesis without
them encodes, hashes and behaves exactly as before they existed. Absent ``accounts_policy``
means the defaults below; absent (or empty) ``fee_tiers`` means every account pays its market's
own fees and no trading volume is recorded in state.

Fee tiers (docs/ARCHITECTURE.md, "Fee tiers"): tier i applies to an account whose rolling
14-day volume is at least ``min_volume_atoms`` (and below the next tier's); its rates replace the
market's in every market. ``maker_fee_ppm`` may be negative: a rebate, paid out of the taker fee
of the same fill. The rebate rate is therefore capped by the lowest taker rate any account can
pay (every tier's and every market's), so each fill's taker fee (rounded up) covers the maker's
rebate (rounded down) and the fee pools never go below zero.
"""

from __future__ import annotations

from collections.abc import Sequence

from state_machine.codec import I64, U32, U64, Wire, wire

DEFAULT_MAX_SUBACCOUNTS = 16
DEFAULT_MAX_AGENTS = 8
MAX_SUBACCOUNTS_LIMIT = 256
MAX_AGENTS_LIMIT = 64
MAX_FEE_TIERS = 16
FEE_PPM_MAX = 100_000  # 10 %, the market fee's own limit (genesis.py)


@wire
class AccountsPolicy(Wire):
    """Limits per master account: sub-accounts it may create, agent keys it may approve."""

    WIRE = (("max_subaccounts", U32), ("max_agents", U32))
    max_subaccounts: int = DEFAULT_MAX_SUBACCOUNTS
    max_agents: int = DEFAULT_MAX_AGENTS


@wire
class FeeTier(Wire):
    """From ``min_volume_atoms`` of 14-day USDC volume up, these taker and maker rates."""

    WIRE = (("min_volume_atoms", U64), ("taker_fee_ppm", U32), ("maker_fee_ppm", I64))
    min_volume_atoms: int
    taker_fee_ppm: int
    maker_fee_ppm: int


DEFAULT_POLICY = AccountsPolicy()


def accounts_policy_error(policy: AccountsPolicy) -> str | None:
    """Why ``policy`` is unusable (``.field: reason``, to follow the section's path), or None."""
    if policy.max_subaccounts > MAX_SUBACCOUNTS_LIMIT:
        return f".max_subaccounts: at most {MAX_SUBACCOUNTS_LIMIT}"
    if policy.max_agents > MAX_AGENTS_LIMIT:
        return f".max_agents: at most {MAX_AGENTS_LIMIT}"
    return None


def fee_tiers_error(tiers: Sequence[FeeTier], market_taker_fees_ppm: Sequence[int]) -> str | None:
    """Why a fee schedule is unusable (``[i].field: reason``, to follow its path), or None.

    Tiers ascend strictly by volume; rates are within the market fee limit; the maker rate does
    not exceed the taker rate; and no rebate exceeds the lowest taker rate anyone can pay.
    """
    if len(tiers) > MAX_FEE_TIERS:
        return f": at most {MAX_FEE_TIERS} tiers"
    takers = [t.taker_fee_ppm for t in tiers] + list(market_taker_fees_ppm)
    lowest_taker_ppm = min(takers) if takers else 0
    prev = -1
    for i, t in enumerate(tiers):
        if t.min_volume_atoms <= prev:
            return f"[{i}].min_volume_atoms: must be greater than the previous tier's"
        prev = t.min_volume_atoms
        if t.taker_fee_ppm > FEE_PPM_MAX:
            return f"[{i}].taker_fee_ppm: at most {FEE_PPM_MAX}"
        if t.maker_fee_ppm > t.taker_fee_ppm:
            return f"[{i}].maker_fee_ppm: must not exceed taker_fee_ppm"
        if -t.maker_fee_ppm > lowest_taker_ppm:
            return (
                f"[{i}].maker_fee_ppm: a rebate of {-t.maker_fee_ppm} ppm exceeds the lowest "
                f"taker rate ({lowest_taker_ppm} ppm) that would pay it"
            )
    return None
