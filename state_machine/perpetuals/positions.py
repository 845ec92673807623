"""Perpetual positions: applying a fill to a position (cost basis, realised PnL, isolated margin
moves) and the position settings actions (``process_set_leverage``,
``process_adjust_isolated_margin``). Margin arithmetic is in perpetuals/margin.py.
"""

from __future__ import annotations

from state_machine.accounts.records import Account
from state_machine.genesis import MARKET_PERP, Market
from state_machine.invariants import check
from state_machine.perpetuals.margin import (
    free_collateral,
    market_terms,
    position_im_atoms,
    settle_funding,
    unrealized_pnl_atoms,
)
from state_machine.results import (
    INSUFFICIENT_MARGIN,
    INVALID_AMOUNT,
    NOT_PERP,
    OK,
    UNKNOWN_MARKET,
    ActionResult,
)
from state_machine.rounding import div_ceil
from state_machine.state import ExchangeCore
from state_machine.tx import AdjustIsolatedMargin, SetLeverage

INVALID_LEVERAGE = "invalid_leverage"


POSITION_OPEN = "position_open"


NOT_ISOLATED = "not_isolated"


NO_POSITION = "no_position"


def partial_close_release_atoms(margin_atoms: int, realized_atoms: int, q: int, abs_s: int) -> int:
    """Isolated margin released to cross when ``q`` of ``abs_s`` lots close with PnL
    ``realized_atoms`` (the position stays open).

    A profitable close releases its pro-rata share of the margin after the PnL. A losing close
    releases at most what the closed lots themselves have left (their margin share plus their
    loss), never margin of the lots that stay: otherwise closing a bankrupt isolated position in
    parts (ADL at its bankruptcy price against several counterparties) would move part of the
    remaining lots' margin to cross and leave the isolated record in debt.
    """
    shared = (margin_atoms + realized_atoms) * q // abs_s
    if realized_atoms < 0:
        own = margin_atoms * q // abs_s + realized_atoms
        shared = min(shared, own)
    return shared if shared > 0 else 0


def apply_position_fill(
    st: ExchangeCore, acct: Account, market: Market, d: int, price: int, fee_atoms: int
) -> int:
    """Apply a signed fill of ``d`` lots at ``price`` to ``acct``'s position; returns its PnL.

    Realised PnL uses a cost basis removed pro rata and rounded against the user (ceiling of
    the signed basis). Cross: PnL and fee settle in USDC available. Isolated: opening moves the
    IM of the added lots from cross into the isolated margin; closing credits PnL to the
    isolated margin and releases its pro-rata share to cross (all of it on a full close).
    """
    terms = market_terms(market)
    pos = acct.positions.get(terms.market_id)
    if pos is None:
        pos = st.position(acct, market)
    if pos.funding_index != st.mstates[terms.market_id].funding_index:
        settle_funding(st, acct, pos)  # funding accrued at the old size settles first
    tla = terms.tick_lot_atoms
    s = pos.size_lots
    usdc = acct.balances.get(0)
    if usdc is None:
        usdc = st.balance(acct, 0)
    realized = 0
    if s == 0 or (s > 0) == (d > 0):
        pos.entry_value += price * d
        pos.size_lots = s + d
        if pos.isolated:
            im = div_ceil(price * abs(d) * tla, pos.leverage)
            usdc.available_atoms -= im
            pos.isolated_margin_atoms += im
    else:
        abs_s = s if s > 0 else -s
        abs_d = d if d > 0 else -d
        q = abs_d if abs_d < abs_s else abs_s
        removed = div_ceil(pos.entry_value * q, abs_s)
        realized = ((price * q if s > 0 else -price * q) - removed) * tla
        pos.entry_value -= removed
        s_new = s + (q if d > 0 else -q)
        if pos.isolated:
            iso = pos.isolated_margin_atoms + realized
            if s_new == 0:
                # A negative remainder is bad debt of the isolated position: it stays in the
                # record for the risk engine (vault / ADL), never taken from cross collateral.
                release = iso if iso > 0 else 0
            else:
                release = partial_close_release_atoms(pos.isolated_margin_atoms, realized, q, abs_s)
            pos.isolated_margin_atoms = iso - release
            usdc.available_atoms += release
        else:
            usdc.available_atoms += realized
        pos.realized_pnl_atoms += realized
        rest = abs_d - q
        if rest:
            check(pos.entry_value == 0 and s_new == 0, "flip without a flat position")
            signed_rest = rest if d > 0 else -rest
            pos.entry_value = price * signed_rest
            s_new = signed_rest
            if pos.isolated:
                im = div_ceil(price * rest * tla, pos.leverage)
                usdc.available_atoms -= im
                pos.isolated_margin_atoms += im
        pos.size_lots = s_new
    usdc.available_atoms -= fee_atoms
    # st.touch of both, without a call each (typed: the compiled build sets ``dirty`` natively)
    if not usdc.dirty:
        usdc.dirty = True
        st.dirty.append(usdc)
    if not pos.dirty:
        pos.dirty = True
        st.dirty.append(pos)
    return realized


def _perp_market(st: ExchangeCore, mid: int) -> tuple[Market | None, ActionResult | None]:
    market = st.markets.get(mid)
    if market is None:
        return None, ActionResult(UNKNOWN_MARKET, f"no market {mid}")
    if market.kind != MARKET_PERP:
        return None, ActionResult(NOT_PERP, f"market {mid} is not a perpetual")
    return market, None


def _has_open_orders(acct: Account, mid: int) -> bool:
    return any(o.market_id == mid for o in acct.orders.values())


def process_set_leverage(st: ExchangeCore, acct: Account, a: SetLeverage) -> ActionResult:
    market, err = _perp_market(st, a.market_id)
    if market is None:
        assert err is not None
        return err
    if not 1 <= a.leverage <= market.max_leverage:
        return ActionResult(INVALID_LEVERAGE, f"leverage must be 1..{market.max_leverage}")
    pos = st.position(acct, market)
    busy = pos.size_lots != 0 or _has_open_orders(acct, market.market_id)
    if a.isolated != pos.isolated and busy:
        return ActionResult(POSITION_OPEN, "close the position and orders to change margin mode")
    old = (pos.leverage, pos.isolated)
    pos.leverage, pos.isolated = a.leverage, a.isolated
    ok = free_collateral(st, acct) >= 0
    if ok and pos.isolated and pos.size_lots:
        price = st.mstates[market.market_id].mark_price_ticks
        equity = pos.isolated_margin_atoms + unrealized_pnl_atoms(pos, price)
        ok = equity >= position_im_atoms(pos, price)
    if not ok:
        pos.leverage, pos.isolated = old
        return ActionResult(INSUFFICIENT_MARGIN, "margin does not cover the new leverage")
    st.touch(pos)
    st.events.append(("leverage", acct.pubkey, market.market_id, a.leverage, a.isolated))
    return ActionResult(OK, "ok")


def process_adjust_isolated_margin(
    st: ExchangeCore, acct: Account, a: AdjustIsolatedMargin
) -> ActionResult:
    market, err = _perp_market(st, a.market_id)
    if market is None:
        assert err is not None
        return err
    pos = acct.positions.get(market.market_id)
    if pos is None or not pos.isolated:
        return ActionResult(NOT_ISOLATED, "the market is not in isolated margin mode")
    if pos.size_lots == 0:
        return ActionResult(NO_POSITION, "no isolated position to adjust")
    delta = a.delta_atoms
    if delta == 0:
        return ActionResult(INVALID_AMOUNT, "delta must be non-zero")
    usdc = st.balance(acct, 0)
    if delta > 0:
        if usdc.available_atoms < delta or free_collateral(st, acct) - delta < 0:
            return ActionResult(INSUFFICIENT_MARGIN, "cross margin cannot spare that much")
    else:
        price = st.mstates[market.market_id].mark_price_ticks
        remaining = pos.isolated_margin_atoms + delta
        equity = remaining + unrealized_pnl_atoms(pos, price)
        if remaining < 0 or equity < position_im_atoms(pos, price):
            return ActionResult(INSUFFICIENT_MARGIN, "position would fall below initial margin")
    usdc.available_atoms -= delta
    pos.isolated_margin_atoms += delta
    st.touch(usdc)
    st.touch(pos)
    st.events.append(("isolated_margin", acct.pubkey, market.market_id, delta))
    return ActionResult(OK, "ok")
