"""Margin arithmetic for perpetual positions (integers only).

Theory of operation
-------------------
Prices used here are the market's *margin price* (``MarketState.mark_price_ticks``: the oracle
until the risk engine supplies a mark). Notional of ``n`` lots is ``n * price_ticks *
tick_lot_atoms`` quote atoms.

* Unrealised PnL of a position is ``(price * size_lots - entry_value) * tick_lot_atoms`` where
  ``entry_value`` is the exact signed cost basis in tick-lots.
* Initial margin (IM) of a market for an account counts open orders as if they all filled:
  ``exposure = max(|size + buy_lots|, |size - sell_lots|)`` (orders that reduce a position need
  no margin, and buys and sells cannot both fill into exposure), and
  ``IM = ceil(exposure * price * tick_lot_atoms / leverage)``.
* Cross margin: ``account value = USDC available + sum of cross unrealised PnL``; the account
  must keep ``value - sum(IM of cross markets) - sum(order IM of isolated markets) >= 0`` after
  any order placement, withdrawal or transfer (``free_collateral``).
* Isolated margin: the position's own ``isolated_margin_atoms`` backs it. Open orders in an
  isolated market reserve IM for the exposure they would *add* from the cross collateral; when
  a fill increases the position, that IM moves from cross into the isolated margin, and when a
  fill reduces it, the realised PnL lands in the isolated margin and a pro-rata share of it is
  released back to cross.
* Maintenance margin (MM) with notional tiers: ``MM = notional * mmr - deduction``, where the
  deduction of tier i is ``sum_{j<=i} floor_j * (mmr_j - mmr_{j-1})``, which makes MM continuous
  at every tier edge. Computed in ppm-atoms and rounded up once.

Rounding: margin requirements round up, value rounds as computed exactly (PnL is exact in
tick-lots), so every comparison is in the exchange's favour.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from state_machine.accounts.records import VAULT, Account
from state_machine.genesis import MarginTier, Market
from state_machine.perpetuals.records import Position
from state_machine.rounding import PPM, div_ceil
from state_machine.state import ExchangeCore

RATE_SCALE = 10**9  # funding rates and indexes are in parts per billion


def pending_funding_scaled(st: ExchangeCore, pos: Position) -> int:
    """Funding the position owes since its last settlement, in atoms x 1e9 (negative: due to it).

    The market's funding index accumulates rate (ppb) x oracle price (ticks) per interval, so a
    position of ``size_lots`` owes ``size_lots * (index - index_at_settlement) * tick_lot_atoms``
    / 1e9 atoms: longs pay when the rate is positive.
    """
    d = st.mstates[pos.market.market_id].funding_index - pos.funding_index
    return pos.size_lots * d * pos.market.tick_lot_atoms


def pending_funding_atoms(st: ExchangeCore, pos: Position) -> int:
    """Pending funding rounded in the exchange's favour (owed up, due down)."""
    scaled = pending_funding_scaled(st, pos)
    return div_ceil(scaled, RATE_SCALE)


def settle_funding(st: ExchangeCore, acct: Account, pos: Position) -> int:
    """Settle a position's accrued funding into its margin (lazy settlement); returns atoms paid.

    The rounding surplus (what was charged beyond the exact amount) accumulates in the market's
    ``funding_dust_scaled``; whole atoms of it move to the liquidation vault (insurance fund).
    """
    ms = st.mstates[pos.market.market_id]
    scaled = pending_funding_scaled(st, pos)
    pos.funding_index = ms.funding_index
    st.touch(pos)
    if scaled == 0:
        return 0
    amount = div_ceil(scaled, RATE_SCALE)
    if pos.isolated:
        pos.isolated_margin_atoms -= amount
    else:
        usdc = st.balance(acct, 0)
        usdc.available_atoms -= amount
        st.touch(usdc)
    ms.funding_dust_scaled += amount * RATE_SCALE - scaled
    whole = ms.funding_dust_scaled // RATE_SCALE
    if whole:
        ms.funding_dust_scaled -= whole * RATE_SCALE
        vault = st.balance(st.account(VAULT), 0)
        vault.available_atoms += whole
        st.touch(vault)
    st.touch(ms)
    st.events.append(("funding_payment", acct.pubkey, pos.market.market_id, amount))
    return amount


def tier_deductions_ppm(tiers: Sequence[MarginTier]) -> list[int]:
    """Per-tier deduction in ppm-atoms (divide by 1e6 for atoms), making MM continuous."""
    out: list[int] = []
    prev_mmr = 0
    acc = 0
    for t in tiers:
        acc += t.notional_floor_atoms * (t.mmr_ppm - prev_mmr)
        out.append(acc)
        prev_mmr = t.mmr_ppm
    return out


class MarketTerms:
    """What the margin arithmetic reads of a (frozen) market, as plain fields of a class the
    compiled build makes native: a ``Market`` is an interpreted dataclass, so each of its
    attributes read by compiled code is a generic lookup by name."""

    __slots__ = ("market", "market_id", "tick_lot_atoms", "tiers", "top_mmr_ppm")

    def __init__(self, market: Market) -> None:
        self.market = market
        self.market_id = market.market_id
        self.tick_lot_atoms = market.tick_lot_atoms
        tiers = market.margin_tiers
        table = [
            (t.notional_floor_atoms, t.mmr_ppm, d)
            for t, d in zip(tiers, tier_deductions_ppm(tiers), strict=True)
        ]
        table.reverse()
        # (notional floor, mmr ppm, deduction ppm-atoms) per tier, highest floor first
        self.tiers = table
        self.top_mmr_ppm = tiers[-1].mmr_ppm


class TermsCache:
    """Market object id -> its terms (the stored market guards against a reused id), and the
    last terms returned: runs of positions in one market skip the id lookup. Results never
    depend on the cache, only the speed does."""

    __slots__ = ("by_id", "last")

    def __init__(self) -> None:
        self.by_id: dict[int, MarketTerms] = {}
        self.last: MarketTerms | None = None


_TERMS_CACHE: Final = TermsCache()  # Final: compiled code holds it, no globals lookup


def market_terms(market: Market) -> MarketTerms:
    cache = _TERMS_CACHE
    last = cache.last
    if last is not None and last.market is market:
        return last
    hit = cache.by_id.get(id(market))
    if hit is None or hit.market is not market:
        hit = MarketTerms(market)
        cache.by_id[id(market)] = hit
    cache.last = hit
    return hit


def tier_table(market: Market) -> list[tuple[int, int, int]]:
    """(notional floor, mmr ppm, deduction ppm-atoms) per tier, highest floor first."""
    return market_terms(market).tiers


def maintenance_margin_atoms(market: Market, notional_atoms: int) -> int:
    """MM = notional * mmr - deduction of the notional's tier, rounded up."""
    for floor, mmr, deduction in tier_table(market):
        if floor <= notional_atoms:
            return div_ceil(notional_atoms * mmr - deduction, PPM)
    return 0


def unrealized_pnl_atoms(pos: Position, price_ticks: int) -> int:
    return (price_ticks * pos.size_lots - pos.entry_value) * pos.market.tick_lot_atoms


def position_im_atoms(pos: Position, price_ticks: int) -> int:
    """IM of the position alone (no orders) at the position's leverage, rounded up."""
    n = abs(pos.size_lots) * price_ticks * pos.market.tick_lot_atoms
    return div_ceil(n, pos.leverage)


def free_collateral(
    st: ExchangeCore, acct: Account, extra_market: int = -1, d_buy: int = 0, d_sell: int = 0
) -> int:
    """Cross account value minus cross IM (orders counted), optionally with extra order lots.

    ``d_buy``/``d_sell`` are added to the open order lots of ``extra_market`` (they may be
    negative when an amend shrinks an order). The caller must have created the market's
    Position record if the account had none.
    """
    bal = acct.balances.get(0)
    value = bal.available_atoms if bal is not None else 0
    im = 0
    mstates = st.mstates
    for mid, pos in acct.positions.items():
        s = pos.size_lots
        b = pos.buy_lots
        sl = pos.sell_lots
        if mid == extra_market:
            b += d_buy
            sl += d_sell
        if s == 0 and b == 0 and sl == 0:
            continue
        price = mstates[mid].mark_price_ticks
        tla = pos.market.tick_lot_atoms
        long_x = s + b
        short_x = sl - s
        exposure = long_x if long_x > short_x else short_x
        if exposure < 0:
            exposure = -exposure
        if pos.isolated:
            exposure -= s if s >= 0 else -s
            if exposure < 0:
                exposure = 0
        else:
            value += (price * s - pos.entry_value) * tla
            fi = mstates[mid].funding_index - pos.funding_index
            if fi and s:
                value -= -((-(s * fi * tla)) // RATE_SCALE)  # div_ceil, inlined (hot)
        # div_ceil inlined: this loop runs for every perp order placed or amended.
        im -= (-(exposure * price * tla)) // pos.leverage
    return value - im


def cross_account_value_atoms(st: ExchangeCore, acct: Account) -> int:
    bal = acct.balances.get(0)
    value = bal.available_atoms if bal is not None else 0
    for mid, pos in acct.positions.items():
        if not pos.isolated and pos.size_lots:
            value += unrealized_pnl_atoms(pos, st.mstates[mid].mark_price_ticks)
            value -= pending_funding_atoms(st, pos)
    return value


def cross_maintenance_atoms(st: ExchangeCore, acct: Account) -> int:
    mm = 0
    for mid, pos in acct.positions.items():
        if not pos.isolated and pos.size_lots:
            price = st.mstates[mid].mark_price_ticks
            notional = abs(pos.size_lots) * price * pos.market.tick_lot_atoms
            mm += maintenance_margin_atoms(pos.market, notional)
    return mm
