"""Fee tiers by rolling 14-day volume, and maker rebates.

Theory of operation
-------------------
While a fee schedule is in force (``fee_tiers`` in genesis, or :func:`set_fee_tiers` later, e.g.
by governance), every fill adds its notional in USDC atoms (perp fills, and spot fills of markets
quoted in USDC) to both accounts' volume record: one bucket per day of block time
(``timestamp_ms // 86_400_000``), at most 14 kept, so the record is bounded and the result depends
only on the blocks. An account's tier is the last tier whose ``min_volume_atoms`` its 14-day
volume (today's bucket and the 13 before, counted before the fill) reaches; its rates replace
the market's. Below the first tier, or with no schedule, the market's own rates apply and no
volume is recorded (so chains without tiers write exactly what they wrote before).

A negative maker rate is a rebate. Perp fills settle both fees in USDC: the pool receives
``taker_fee + maker_fee``, which is never negative because the schedule's rebate rate is at most
the lowest taker rate anyone pays (accounts/policy.py) and the taker fee rounds up while the
rebate rounds down. Spot fees are taken in the asset each side receives, so a spot rebate would
be paid in a different asset than the taker fee that funds it: spot maker rates are floored at
zero. The conservation audit (audit.py) sees a rebate as a transfer from the fee pool.
"""

from __future__ import annotations

from collections.abc import Sequence

from state_machine.accounts.policy import FeeTier, fee_tiers_error
from state_machine.accounts.records import Account
from state_machine.accounts.registry import DAY_MS, AccountsRegistry
from state_machine.genesis import USDC_ASSET_ID, Market
from state_machine.state import ExchangeCore

INVALID_FEE_TIERS = "invalid_fee_tiers"


def tier_index(tiers: Sequence[FeeTier], volume_atoms: int) -> int:
    """The index of the tier a 14-day volume falls in, -1 below the first tier."""
    i = -1
    for j, t in enumerate(tiers):
        if volume_atoms < t.min_volume_atoms:
            break
        i = j
    return i


def account_rates(st: ExchangeCore, market: Market, acct: Account) -> tuple[int, int]:
    """(taker_fee_ppm, maker_fee_ppm) of ``acct`` in ``market`` now."""
    reg: AccountsRegistry = st.accts
    tiers = reg.fees.tiers
    rec = reg.volumes.get(acct.pubkey)
    volume = rec.total_atoms(st.timestamp_ms // DAY_MS) if rec is not None else 0
    i = tier_index(tiers, volume)
    if i < 0:
        return market.taker_fee_ppm, market.maker_fee_ppm
    return tiers[i].taker_fee_ppm, tiers[i].maker_fee_ppm


def fill_rates(st: ExchangeCore, market: Market, taker: Account, maker: Account) -> tuple[int, int]:
    """(the taker's taker rate, the maker's maker rate) for one fill; spot rebates floor at 0."""
    t_ppm = account_rates(st, market, taker)[0]
    m_ppm = account_rates(st, market, maker)[1]
    if not market.is_perp and m_ppm < 0:
        m_ppm = 0
    return t_ppm, m_ppm


def record_volume(
    st: ExchangeCore, market: Market, taker: Account, maker: Account, notional_atoms: int
) -> None:
    """Count a fill's notional for both sides (only markets quoted in USDC count)."""
    if market.quote_asset_id != USDC_ASSET_ID:
        return
    reg: AccountsRegistry = st.accts
    day = st.timestamp_ms // DAY_MS
    for acct in (taker, maker):
        rec = reg.volume(acct.pubkey)
        rec.add(day, notional_atoms)
        st.touch(rec)


def set_fee_tiers(st: ExchangeCore, tiers: Sequence[FeeTier]) -> str | None:
    """Put a new fee schedule in force (governance calls this). Returns why it is refused, or
    None; a refused schedule changes nothing. An empty schedule restores the market fees."""
    err = fee_tiers_error(tiers, [m.taker_fee_ppm for m in st.markets.values()])
    if err is not None:
        return f"{INVALID_FEE_TIERS}: fee_tiers{err}"
    reg: AccountsRegistry = st.accts
    reg.fees.tiers = tuple(tiers)
    st.touch(reg.fees)
    st.events.append(("fee_tiers", [t.to_obj() for t in tiers]))
    return None
