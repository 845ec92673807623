"""Liquidations: margin units, the risk index, the liquidation ladder, the vault and ADL.

Theory of operation
-------------------
Everything runs at the end of each block (``end_block_liquidations``), after the block's
trades and after every perp market's mark price, funding and triggers (exchange.end_block):
margin units that may be unhealthy are found and liquidated, in key order.

* Mark = median(oracle, oracle + EMA of (book mid - oracle), median(best bid, best ask, last
  trade)); with an empty or one-sided book, the oracle. The EMA is in block time: each block
  moves it by ``(basis - ema) * dt / (dt + mark_ema_ms)``.
* Funding: premium = (max(impact bid - oracle, 0) - max(oracle - impact ask, 0)) / oracle,
  where an impact price is the average fill price of ``impact_notional_atoms`` (a side too thin
  for it contributes 0). At the end of an interval the average premium P gives the 8-hour rate
  ``F = P + clamp(interest - P, -clamp, +clamp)``; the interval pays ``F * interval / 8 h``,
  capped at ``funding_cap_ppm_per_hour`` per hour, on notional at the oracle price: the
  market's index grows by rate x oracle, and each position settles lazily (perpetuals/margin.py).
* Margin units: an account's cross positions form one unit; each isolated position is its
  own. A unit is unhealthy when its value (collateral + unrealised PnL - pending funding) is
  below its maintenance margin.
* Finding unhealthy units without scanning every position: each evaluated healthy unit gets a
  price band per market it trades, sized so that no joint move of its marks inside the bands
  can take it below maintenance: the band half-width is
  ``(value - MM) / sum(notional * (1 + max tier rate))`` of the price. Per
  market, the bands' lower and upper edges sit in sorted lists; a block pops only the units
  whose edge the new mark crossed. Units whose collateral or positions changed in the block
  (the block's dirty objects) and units on the watch list (waiting out a partial-liquidation
  cooldown, or too close to maintenance for a band) are evaluated too. Funding is covered
  exactly: a band also bounds each market's funded price (mark x 1e9 - funding index), which
  moves a position's value exactly as its funding does, so a funding tick that could hurt a
  unit pushes the funded price out of its band. The index is derived data (not in the
  state entries): a node that rebuilt its state evaluates every unit once; both find exactly
  the unhealthy units, because the bands are sound, and process them in key order.
* The ladder for an unhealthy unit: (1) cancel its open orders; if its value is at least 2/3 of
  maintenance, send reduce-only IOC orders into the book (positions above
  ``liquidation_partial_notional_atoms`` 20 % at a time, then a cooldown); (2) if it is below
  2/3 or the book did not absorb an order, the vault (the all-zero account whose USDC balance
  is the insurance fund) takes the positions over at the mark price, charging the liquidation
  fee into the vault, if its policy allows (below); (3) else the positions are closed against
  opposite positions ranked by (mark / entry, or entry / mark for shorts) x (notional /
  account value), i.e. ADL: at the mark while the unit's value is not negative (the fee still
  goes to the vault), else at the unit's bankruptcy price, the counterparties taking the loss
  beyond its value (``socialised_loss``). Accounts without positions never pay: only the vault
  and ADL counterparties absorb losses.
* The vault's own risk (the lesson of Hyperliquid's JELLY incident, March 2025: a liquidator
  that inherits every position can be made to hold far more than its capital carries). The
  vault is an account like the others and its cross unit is margined like theirs. A takeover
  is refused (``vault_refused``) if a market's vault position would grow past
  ``vault_market_notional_max_atoms`` at the mark, if the vault's equity after it would not
  cover the initial margin of its positions at each market's maximum leverage (it takes only
  what it could have opened itself), or if it would leave the vault more than
  ``vault_loss_limit_ppm`` below its equity high-water mark. After the block's liquidations,
  in the same block: a vault whose equity is below its maintenance margin but not negative
  sends reduce-only IOC orders for every position into the book, each filling no worse than
  the price that would take its equity below zero, and ADLs at the mark what the book did not
  take; a bankrupt vault (equity below zero) is ADL'd at once at its bankruptcy price
  (``socialised_loss``): the book could only add fees and slippage to its deficit. So it never
  ends a block under water, nor flat and negative. A vault beyond its loss limit sends the
  same bounded orders into the book only (it is solvent: its positions wait for the book
  rather than being forced on traders). The high-water mark (state key 0x08) is the highest
  equity at a block end since the vault last ended a block flat, and its equity at such a
  block end; the limit thus bounds one episode's losses, bad-debt payouts included. Payouts
  never exceed the vault's equity.
"""

from __future__ import annotations

from typing import Any, cast

from state_machine.accounts.records import VAULT, Account, Balance
from state_machine.clob.matching import cancel_resting
from state_machine.clob.place import place_internal_order
from state_machine.genesis import Market
from state_machine.governance.content import DELISTED, HALTED
from state_machine.invariants import InvariantError
from state_machine.liquidation.adl import AdlRankings, on_side, ranked_holders
from state_machine.liquidation.index import Band, RiskIndex
from state_machine.perpetuals.margin import (
    RATE_SCALE,
    maintenance_margin_atoms,
    market_terms,
    tier_deductions_ppm,
)
from state_machine.perpetuals.positions import apply_position_fill
from state_machine.perpetuals.records import Position
from state_machine.prices.records import MarketState
from state_machine.rounding import PPM, div_ceil, div_floor, mul_ppm_ceil
from state_machine.state import ExchangeCore
from state_machine.triggers.records import Trigger, cancel_trigger

CROSS = 0xFFFFFFFF  # unit key suffix of an account's cross unit
# From this many unhealthy units in one block, their bands leave the index in one pass per
# edge list (RiskIndex.drop_many) rather than one at a time: same index, linear cost.
BULK_DROP_UNITS = 64


def unit_key(owner: bytes, market_id: int | None) -> bytes:
    return owner + (CROSS if market_id is None else market_id).to_bytes(4, "big")


def unit_positions(acct: Account, market_id: int | None) -> list[Position]:
    if market_id is not None:
        pos = acct.positions.get(market_id)
        return [pos] if pos is not None and (pos.size_lots or pos.isolated_margin_atoms) else []
    return [p for p in acct.positions.values() if not p.isolated and p.size_lots]


def unit_value_and_mm(st: ExchangeCore, acct: Account, market_id: int | None) -> tuple[int, int]:
    """(value, maintenance margin) of a unit at the current marks, pending funding included."""
    if market_id is None:
        bal = acct.balances.get(0)
        value = bal.available_atoms if bal is not None else 0
        positions = [p for p in acct.positions.values() if not p.isolated and p.size_lots]
    else:
        pos = acct.positions[market_id]
        value = pos.isolated_margin_atoms
        positions = [pos] if pos.size_lots or pos.isolated_margin_atoms else []
    return positions_value_and_mm(st, positions, value)


def positions_value_and_mm(
    st: ExchangeCore, positions: list[Position], collateral_atoms: int
) -> tuple[int, int]:
    """(collateral + PnL - pending funding, maintenance margin) of ``positions`` at the marks.

    The one computation behind unit_value_and_mm and evaluate_unit. It runs several times
    per liquidated unit, so pending funding (margin.pending_funding_atoms) and the tier
    lookup (margin.maintenance_margin_atoms) are written out here; test_risk.py's property
    test_inlined_maintenance_margin_equals_the_named_rule proves the tier lookup equal.
    """
    mstates = st.mstates
    value = collateral_atoms
    mm = 0
    for pos in positions:
        terms = market_terms(pos.market)
        ms = mstates[terms.market_id]
        price = ms.mark_price_ticks
        tla = terms.tick_lot_atoms
        s = pos.size_lots
        value += (price * s - pos.entry_value) * tla
        fi = ms.funding_index - pos.funding_index
        if fi and s:
            # value -= div_ceil(s * fi * tla, RATE_SCALE), written out (-ceil(x/d) = floor(-x/d))
            value += -(s * fi * tla) // RATE_SCALE
        notional = (s if s > 0 else -s) * price * tla
        for floor, mmr, deduction in terms.tiers:
            if floor <= notional:
                mm -= (deduction - notional * mmr) // PPM  # mm += div_ceil(n * mmr - d, PPM)
                break
    return value, mm


def liquidation_price_ticks(st: ExchangeCore, acct: Account, market_id: int) -> int:
    """Mark price of ``market_id`` at which the position's unit value equals its maintenance
    margin, other prices fixed; 0 if there is none (no position, or never liquidated).

    Solved per maintenance tier (MM is linear inside a tier) with exact integers; a long's
    price rounds up and a short's down, so the reported price is never past the real one.
    """
    pos = acct.positions.get(market_id)
    if pos is None or pos.size_lots == 0:
        return 0
    market = pos.market
    tla = market.tick_lot_atoms
    s = pos.size_lots
    unit = market_id if pos.isolated else None
    value, mm = unit_value_and_mm(st, acct, unit)
    price = st.mstates[market_id].mark_price_ticks
    notional = abs(s) * price * tla
    # V0, M0: the unit without this position's PnL and maintenance margin.
    v0 = value - (price * s - pos.entry_value) * tla
    m0 = mm - maintenance_margin_atoms(market, notional)
    deductions = _deductions(market)
    best = 0
    tiers = market.margin_tiers
    for i, t in enumerate(tiers):
        r = t.mmr_ppm
        num = (m0 - v0 + pos.entry_value * tla) * PPM - deductions[i]
        den = tla * (s * PPM - abs(s) * r)
        if den == 0:
            continue
        p = div_ceil(num, den) if s > 0 else div_floor(num, den)
        if p <= 0:
            continue
        n = abs(s) * p * tla
        hi = tiers[i + 1].notional_floor_atoms if i + 1 < len(tiers) else None
        if n >= t.notional_floor_atoms and (hi is None or n < hi):
            best = p
    return best


def _deductions(market: Market) -> list[int]:

    return tier_deductions_ppm(market.margin_tiers)


def funded_price(ms: MarketState) -> int:
    """Mark minus the funding index, scaled by 1e9: a position's value moves with it exactly
    (``value = size * funded_price * tick_lot_atoms / 1e9 + constant``), funding included."""
    return ms.mark_price_ticks * RATE_SCALE - ms.funding_index


def risk_index(st: ExchangeCore) -> RiskIndex:
    return st.risk  # always set (state.py), replaced when market tiers change (governance)


def make_bands(
    st: ExchangeCore, positions: list[Position], value: int, mm: int
) -> list[Band] | None:
    """Sound bands for a healthy unit, or None when it is too close to maintenance for one.

    With ``tau`` (ppb) = (value - MM - slack) / sum(notional * (1 + top tier rate)): while every
    market's mark stays within ``tau`` of its current value and its funded price within
    ``tau * mark``, the value falls by at most ``tau * sum(notional)`` (funding included) and
    MM grows by at most ``tau * sum(notional * top rate)``, so the unit stays healthy. The
    slack covers the rounding of pending funding (one atom per position).
    """
    weight = 0
    marks: list[tuple[int, int, int]] = []
    for pos in positions:
        terms = market_terms(pos.market)
        ms = st.mstates[terms.market_id]
        price = ms.mark_price_ticks
        notional = abs(pos.size_lots) * price * terms.tick_lot_atoms
        weight += notional * (PPM + terms.top_mmr_ppm)
        marks.append((terms.market_id, price, funded_price(ms)))
    excess = value - mm - len(positions)
    if excess <= 0 or weight == 0:
        return None
    tau = excess * PPM * RATE_SCALE // weight
    if tau > RATE_SCALE // 2:
        tau = RATE_SCALE // 2
    marks.sort()
    return [
        (
            mid,
            div_ceil(m * (RATE_SCALE - tau), RATE_SCALE),
            m * (RATE_SCALE + tau) // RATE_SCALE,
            f - tau * m,
            f + tau * m,
        )
        for mid, m, f in marks
    ]


def band_for(
    st: ExchangeCore, acct: Account, market_id: int | None, value: int, mm: int
) -> list[Band] | None:
    """Sound bands for a healthy unit (see make_bands); None: watch it every block instead.

    Records the cross collateral the bands assume (``Balance.risk_floor``).
    """
    if market_id is None:
        bal = acct.balances.get(0)
        if bal is not None:
            bal.risk_floor = bal.available_atoms
    return make_bands(st, unit_positions(acct, market_id), value, mm)


def units_of(st: ExchangeCore, acct: Account) -> list[int | None]:
    out: list[int | None] = [None]
    out.extend(mid for mid, p in sorted(acct.positions.items()) if p.isolated)
    return out


def evaluate_all(st: ExchangeCore, idx: RiskIndex) -> None:
    """Index every unit (after a rebuild from entries); unhealthy ones go to the watch list."""
    for pubkey in sorted(st.accounts):
        if pubkey == VAULT:
            continue
        acct = st.accounts[pubkey]
        for mid in units_of(st, acct):
            key = unit_key(pubkey, mid)
            if not unit_positions(acct, mid):
                continue
            value, mm = unit_value_and_mm(st, acct, mid)
            if value < mm:
                idx.watch[key] = None
            else:
                idx.place(key, band_for(st, acct, mid, value, mm))
    idx.ready = True


def changed_units(st: ExchangeCore, objs: list[Any]) -> list[bytes]:
    """Margin units whose positions or USDC collateral are among ``objs`` (dirty objects)."""
    out: list[bytes] = []
    cross = CROSS.to_bytes(4, "big")
    accounts = st.accounts
    for obj in objs:
        t = type(obj)
        # cast: typed records are read field by field natively by the compiled build
        if t is Position:
            pos = cast(Position, obj)
            if pos.isolated:
                out.append(pos.owner + pos.key[-4:])  # the key ends with the market id
            out.append(pos.owner + cross)
        elif t is Balance:
            bal = cast(Balance, obj)
            if bal.asset_id != 0:
                continue
            # Only accounts holding cross positions have a cross unit to look at, and only if
            # the collateral fell below what the unit's band was computed with (more
            # collateral with the same positions only widens the sound band).
            floor = bal.risk_floor
            if floor is not None and bal.available_atoms >= floor:
                continue
            acct = accounts.get(bal.owner)
            if acct is not None and acct.positions:
                out.append(bal.owner + cross)
    return out


def end_block_liquidations(st: ExchangeCore, marks: list[tuple[int, int, int]], now: int) -> None:
    """The end-of-block hook: find and liquidate unhealthy units, then the vault's policy.

    ``marks`` holds (market, new mark, funded price) of every perp market, in market order,
    computed just before (exchange.end_block).
    """
    idx = risk_index(st)
    rankings = AdlRankings(st, adl_score, idx.check_adl)
    idx.adl = rankings  # kept through this block's liquidations only
    todo: dict[bytes, None] = dict.fromkeys(changed_units(st, st.dirty))
    for mid, mark, funded in marks:
        for key in idx.crossed(mid, mark, funded):
            todo[key] = None
    if not idx.ready:
        evaluate_all(st, idx)
    todo.update(idx.watch)
    todo.update(idx.pending)
    idx.pending = {}
    # Two phases so that every node liquidates the same units: first find the units that are
    # unhealthy now (the same set on a replayed and on a rebuilt node, whatever else each one
    # looks at), then liquidate them in key order. Units that liquidations push under water
    # are taken up in the next block (``pending``), on every node alike.
    unhealthy = [key for key in sorted(todo) if evaluate_unit(st, idx, key, now)]
    paused: list[bytes] = []
    if st.gov.controls:
        # A unit with a position in a halted market waits (docs/ARCHITECTURE.md, "Market
        # states"): it is looked at again every block until the market resumes.
        paused = [key for key in unhealthy if unit_paused(st, key)]
        unhealthy = [key for key in unhealthy if key not in paused]
    if len(unhealthy) >= BULK_DROP_UNITS:
        idx.drop_many(unhealthy)  # liquidate_key drops each one; in bulk it is linear
    n_dirty = len(st.dirty)
    for key in unhealthy:
        liquidate_key(st, idx, key, now)
    vault_policy(st)
    idx.adl = None
    idx.adl_checks += rankings.checks
    # Units touched by this block's liquidations are looked at again next block.
    for key in changed_units(st, st.dirty[n_dirty:]):
        idx.pending[key] = None
    for key in paused:
        idx.pending[key] = None


def market_paused(st: ExchangeCore, market_id: int) -> bool:
    """Halted or delisted (state_machine/governance): no liquidation trades there."""
    controls = st.gov.controls.get(market_id)
    return controls is not None and controls.state in (HALTED, DELISTED)


def unit_paused(st: ExchangeCore, key: bytes) -> bool:
    _, _, positions = _unit_and_positions(st, key)
    return any(p.size_lots and market_paused(st, p.market.market_id) for p in positions)


def _unit_and_positions(
    st: ExchangeCore, key: bytes
) -> tuple[Account | None, int | None, list[Position]]:
    """The account, market (None for cross) and positions (unit_positions) of a unit key, or
    (None, _, []) if it is empty."""
    owner = key[:32]
    suffix = int.from_bytes(key[32:], "big")
    mid = None if suffix == CROSS else suffix
    acct = st.accounts.get(owner)
    if (
        owner == VAULT
        or acct is None
        or (mid is not None and not (mid in acct.positions and acct.positions[mid].isolated))
    ):
        return None, mid, []
    positions = unit_positions(acct, mid)
    if not positions:
        return None, mid, []
    return acct, mid, positions


def unit_collateral_atoms(acct: Account, market_id: int | None) -> int:
    """What backs a unit besides its PnL: USDC available (cross) or the isolated margin."""
    if market_id is None:
        bal = acct.balances.get(0)
        return bal.available_atoms if bal is not None else 0
    return acct.positions[market_id].isolated_margin_atoms


def evaluate_unit(st: ExchangeCore, idx: RiskIndex, key: bytes, now: int) -> bool:
    """Re-band a healthy unit (no state change); True if the unit is unhealthy.

    One pass over the unit's positions computing what unit_value_and_mm computes (this runs
    for every unit a block touched, so it avoids its repeated list building).
    """
    acct = st.accounts.get(key[:32])
    suffix = int.from_bytes(key[32:], "big")
    if acct is None or key[:32] == VAULT:
        positions: list[Position] = []
    elif suffix == CROSS:
        bal = acct.balances.get(0)
        value = bal.available_atoms if bal is not None else 0
        if bal is not None:
            bal.risk_floor = value
        positions = [p for p in acct.positions.values() if not p.isolated and p.size_lots]
    else:
        ipos = acct.positions.get(suffix)
        if ipos is None or not ipos.isolated or not (ipos.size_lots or ipos.isolated_margin_atoms):
            positions = []
        else:
            value = ipos.isolated_margin_atoms
            positions = [ipos]
    if not positions:
        idx.drop(key)
        idx.watch.pop(key, None)
        return False
    value, mm = positions_value_and_mm(st, positions, value)
    if value < mm:
        return True
    bands = make_bands(st, positions, value, mm)
    if bands is None:
        # Too close to maintenance for a sound band: look at it every block.
        idx.drop(key)
        idx.watch[key] = None
        return False
    idx.watch.pop(key, None)
    old = idx.bands.get(key)
    if old is not None and len(old) == len(bands):
        for o, n in zip(old, bands, strict=True):
            if o[0] != n[0] or o[1] < n[1] or o[2] > n[2] or o[3] < n[3] or o[4] > n[4]:
                break
        else:
            # The old band lies inside the new sound band, so it is still sound: keep its
            # list entries (no sorted-list surgery).
            return False
    idx.drop(key)
    idx.add(key, bands)
    return False


def liquidate_key(st: ExchangeCore, idx: RiskIndex, key: bytes, now: int) -> None:
    """Run the ladder for a unit found unhealthy this block, then index or watch it."""
    idx.drop(key)
    idx.watch.pop(key, None)
    acct, mid, positions = _unit_and_positions(st, key)
    if acct is None:
        return
    value, mm = positions_value_and_mm(st, positions, unit_collateral_atoms(acct, mid))
    if value < mm:
        liquidate_unit(st, idx, acct, mid, value, mm, now)
        if not unit_positions(acct, mid):
            return
        value, mm = unit_value_and_mm(st, acct, mid)
        if value < mm:
            idx.watch[key] = None
            return
    idx.place(key, band_for(st, acct, mid, value, mm))


def liquidate_unit(
    st: ExchangeCore,
    idx: RiskIndex,
    acct: Account,
    mid: int | None,
    value: int,
    mm: int,
    now: int,
) -> None:

    params = st.parameters
    st.events.append(("liquidation", acct.pubkey, mid, value, mm))
    # 1. Cancel the unit's open orders (they could only add risk). A cancel may release what an
    # order held, so the unit's value is read again after any.
    cancelled = False
    for o in list(acct.orders.values()):
        m = st.markets[o.market_id]
        if not m.is_perp:
            continue
        in_unit = (
            o.market_id == mid if mid is not None else not acct.positions[o.market_id].isolated
        )
        if in_unit:
            cancel_resting(st, o, "liquidation")
            cancelled = True

    # (guarded: a sort with a key function costs a call even for no triggers, once per unit)
    for t in sorted(acct.triggers.values(), key=_order_id) if acct.triggers else ():
        in_unit = (
            t.market_id == mid
            if mid is not None
            else not (t.market_id in acct.positions and acct.positions[t.market_id].isolated)
        )
        if in_unit:
            cancel_trigger(st, t, "liquidation")
            cancelled = True
    absorbed = True
    if 3 * value >= 2 * mm:
        positions = unit_positions(acct, mid)
        if len(positions) > 1:
            positions.sort(key=_largest_first)
        for pos in positions:
            market = pos.market
            pmid = market.market_id
            s = pos.size_lots
            if s == 0:
                continue
            mark = st.mstates[pmid].mark_price_ticks
            q = abs(s)
            if q * mark * market.tick_lot_atoms > params.liquidation_partial_notional_atoms:
                if now < pos.liquidation_cooldown_ms:
                    continue
                q = div_ceil(q, 5)
                pos.liquidation_cooldown_ms = now + params.liquidation_cooldown_ms
                st.touch(pos)
            filled = place_internal_order(st, acct, pmid, s < 0, q, "liquidation")
            if filled:
                fee = -(
                    (-(filled * mark * market.tick_lot_atoms * params.liquidation_fee_ppm)) // PPM
                )
                _charge_liquidation_fee(st, acct, pos, fee)
            if filled < q:
                absorbed = False
        value, mm = unit_value_and_mm(st, acct, mid)
        if value >= mm or (absorbed and 3 * value >= 2 * mm):
            return
    elif cancelled:
        value, mm = unit_value_and_mm(st, acct, mid)
    backstop(st, acct, mid, value)


def _order_id(t: Trigger) -> int:
    return t.order_id


def _largest_first(p: Position) -> tuple[int, int]:
    """The book rung's order: largest size in tick-lot atoms first, then market id."""
    return (-abs(p.size_lots) * p.market.tick_lot_atoms, p.market.market_id)


def _market_id(p: Position) -> int:
    return p.market.market_id


def _charge_liquidation_fee(st: ExchangeCore, acct: Account, pos: Position, fee: int) -> None:
    """Liquidation fee to the vault, never more than the unit has left (no bad debt from fees)."""
    value, _ = unit_value_and_mm(st, acct, pos.market.market_id if pos.isolated else None)
    fee = min(fee, max(value, 0))
    if fee <= 0:
        return
    if pos.isolated:
        pos.isolated_margin_atoms -= fee
        st.touch(pos)
    else:
        bal = st.balance(acct, 0)
        bal.available_atoms -= fee
        st.touch(bal)
    vault = st.balance(st.account(VAULT), 0)
    vault.available_atoms += fee
    st.touch(vault)
    st.events.append(("liquidation_fee", acct.pubkey, pos.market.market_id, fee))


def _move_position(
    st: ExchangeCore, market: Market, src: Account, dst: Account, qty: int, price: int
) -> None:
    """``src`` sells ``qty`` (negative: buys) of its position to ``dst`` at ``price``, no fee."""

    mid = market.market_id
    ms = st.mstates[mid]
    spos = st.position(src, market)
    dpos = st.position(dst, market)
    s_old, d_old = spos.size_lots, dpos.size_lots
    apply_position_fill(st, src, market, -qty, price, 0)
    apply_position_fill(st, dst, market, qty, price, 0)
    ms.open_interest_lots += (
        max(spos.size_lots, 0) - max(s_old, 0) + max(dpos.size_lots, 0) - max(d_old, 0)
    )
    st.touch(ms)
    st.events.append(("position_transfer", mid, src.pubkey, dst.pubkey, qty, price))


def backstop(st: ExchangeCore, acct: Account, mid: int | None, value: int) -> None:
    """Step 2 and 3: the vault takes the positions at mark if its policy allows, else ADL
    (at the mark while the unit's value is not negative, else at its bankruptcy price).
    ``value``: the unit's value now (unit_value_and_mm)."""
    params = st.parameters
    vault_acct = st.account(VAULT)
    vault = st.balance(vault_acct, 0)
    positions = unit_positions(acct, mid)  # a new list
    if len(positions) > 1:
        positions.sort(key=_market_id)
    notional = sum(
        abs(p.size_lots) * st.mstates[p.market.market_id].mark_price_ticks * p.market.tick_lot_atoms
        for p in positions
    )
    fee = min(mul_ppm_ceil(notional, params.liquidation_fee_ppm), max(value, 0))
    refusal = vault_refusal(st, vault_acct, positions, fee, max(-value, 0))
    if fee > 0:
        # Charged before the positions move: closing an isolated position releases its margin
        # to cross, and a fee taken from the emptied record afterwards would read as bad debt.
        # A refused takeover (ADL at the mark) costs the unit the same fee.
        _pay(st, acct, mid, -fee)
        vault.available_atoms += fee
    if refusal is None:
        for pos in positions:
            if pos.size_lots:
                mark = st.mstates[pos.market.market_id].mark_price_ticks
                _move_position(st, pos.market, acct, vault_acct, pos.size_lots, mark)
        st.events.append(("backstop", acct.pubkey, mid, value, fee))
    else:
        st.events.append(("vault_refused", acct.pubkey, mid, refusal, value))
        adl(st, acct, mid, positions, at_mark=value >= 0)
        if fee > 0:
            st.events.append(("liquidation_fee", acct.pubkey, mid, fee))
    cover_bad_debt(st, acct, mid)


def _pay(st: ExchangeCore, acct: Account, mid: int | None, amount: int) -> None:
    """Credit (or debit, if negative) the unit's collateral."""
    if mid is None:
        bal = st.balance(acct, 0)
        bal.available_atoms += amount
        st.touch(bal)
    else:
        pos = acct.positions[mid]
        pos.isolated_margin_atoms += amount
        st.touch(pos)
    vault = st.balance(st.account(VAULT), 0)
    st.touch(vault)


def cover_bad_debt(st: ExchangeCore, acct: Account, mid: int | None) -> None:
    """A unit left with negative collateral and no positions: the vault covers what it can."""
    if unit_positions(acct, mid) and mid is None:
        return
    if mid is not None:
        pos = acct.positions[mid]
        if pos.size_lots:
            return
        debt = -pos.isolated_margin_atoms
    else:
        debt = -st.balance(acct, 0).available_atoms
    if debt <= 0:
        return
    vault_acct = st.account(VAULT)
    vault = st.balance(vault_acct, 0)
    # Never more than the vault's equity: a payout must not leave the vault under water.
    equity, _ = unit_value_and_mm(st, vault_acct, None)
    cover = min(debt, max(min(vault.available_atoms, equity), 0))
    if cover:
        vault.available_atoms -= cover
        _pay(st, acct, mid, cover)
        st.events.append(("insurance_payout", acct.pubkey, mid, cover))


def bankruptcy_price_ticks(st: ExchangeCore, acct: Account, mid: int | None, pos: Position) -> int:
    """Price of ``pos`` at which the unit's value is zero, the rest at mark; rounded so the
    bankrupt account does not end below zero (long: up, short: down)."""
    value, _ = unit_value_and_mm(st, acct, mid)
    price = st.mstates[pos.market.market_id].mark_price_ticks
    tla = pos.market.tick_lot_atoms
    s = pos.size_lots
    v0 = value - (price * s - pos.entry_value) * tla
    num = pos.entry_value * tla - v0
    den = s * tla
    p = div_ceil(num, den) if s > 0 else div_floor(num, den)
    return max(p, 1)


def adl_score(
    st: ExchangeCore, market: Market, a: Account, pos: Position | None, long_side: bool
) -> int | None:
    """An opposite position's ADL score (profit ratio x notional / unit value; a unit at or
    below zero value first), or None if ``pos`` is not on ``long_side``."""
    if not on_side(pos, long_side):
        return None
    terms = market_terms(market)
    mark = st.mstates[terms.market_id].mark_price_ticks
    value, _ = unit_value_and_mm(st, a, terms.market_id if pos.isolated else None)
    notional = abs(pos.size_lots) * mark * terms.tick_lot_atoms
    entry_abs = abs(pos.entry_value)
    size = abs(pos.size_lots)
    # profit ratio: mark/entry (long) or entry/mark (short); entry price = entry_abs/size
    if long_side:
        ratio_num, ratio_den = mark * size, entry_abs
    else:
        ratio_num, ratio_den = entry_abs, mark * size
    if value <= 0:
        return 2**120  # already at or below zero value: deleverage first
    return ratio_num * notional * 10**12 // (ratio_den * value)


def adl_ranking(
    st: ExchangeCore, market: Market, bankrupt: Account, long_side: bool, lots: int | None = None
) -> list[tuple[Account, Position]]:
    """Opposite positions to deleverage, highest ``adl_score`` first (ties by public key);
    vault last; with ``lots``, the first ones that cover as many lots. During a block's
    liquidations the rankings are kept (liquidation/adl.py)."""
    rankings = risk_index(st).adl or AdlRankings(st, adl_score)
    ranking = rankings.ranked(market, long_side)
    return ranked_holders(st, ranking, market, bankrupt, long_side, lots)


def adl(
    st: ExchangeCore,
    acct: Account,
    mid: int | None,
    positions: list[Position],
    at_mark: bool = False,
) -> None:
    """Close the unit's positions against ranked opposite positions, at the mark (``at_mark``:
    the unit can pay for its own loss) or at its bankruptcy price (the counterparties take the
    loss beyond the unit's value: a ``socialised_loss`` event says how much, against the mark).

    The vault's own ADL is reported as ``vault_adl`` events, a trader's as ``adl``.
    """
    is_vault = acct.pubkey == VAULT
    for pos in positions:
        if pos.size_lots == 0:
            continue
        market = pos.market
        mark = st.mstates[market.market_id].mark_price_ticks
        price = mark if at_mark else bankruptcy_price_ticks(st, acct, mid, pos)
        size = abs(pos.size_lots)
        left = size
        is_long = pos.size_lots > 0
        for other, opos in adl_ranking(st, market, acct, not is_long, size):
            if left == 0:
                break
            q = min(left, abs(opos.size_lots))
            # The bankrupt side sells (if long) q to the counterparty, which closes its short.
            _move_position(st, market, acct, other, q if is_long else -q, price)
            if is_vault:
                st.events.append(("vault_adl", market.market_id, other.pubkey, q, price))
            else:
                st.events.append(("adl", market.market_id, acct.pubkey, other.pubkey, q, price))
            left -= q
        if left != 0:  # check(), without a call per ADL
            raise InvariantError("positions do not net to zero")
        loss = (price - mark if is_long else mark - price) * size * market.tick_lot_atoms
        if loss > 0:
            st.events.append(("socialised_loss", market.market_id, acct.pubkey, loss))


def vault_over_loss_limit(st: ExchangeCore, equity: int) -> bool:
    """``equity`` is more than ``vault_loss_limit_ppm`` below the vault's high-water mark (its
    highest equity at a block end since it last ended a block holding no position)."""
    peak = st.vault_peak.amount_atoms
    limit = st.parameters.vault_loss_limit_ppm
    return peak > 0 and equity * PPM < peak * (PPM - limit)


def vault_refusal(
    st: ExchangeCore, vault: Account, positions: list[Position], fee: int, debt: int
) -> str | None:
    """Why the vault may not take ``positions`` over (None: it may).

    ``loss_limit``: after it (fee in, debt paid) the vault would be over its loss limit (a
    vault over it is closing what it has, not adding; the limit also bounds what one episode
    of takeovers can pay out of the fund for bad debt);
    ``exposure_cap``: a market's vault position would grow past
    ``vault_market_notional_max_atoms`` at the mark; ``margin``: after the takeover (fee in,
    the unit's debt ``debt`` paid out) its equity would not cover the initial margin of its
    positions at each market's maximum leverage (nor their maintenance margin), or its USDC
    would not cover the debt. The vault takes only what it could have opened itself: a
    takeover that left it at its maintenance margin would be closed again by the next move.
    """
    equity, _ = unit_value_and_mm(st, vault, None)
    if vault_over_loss_limit(st, equity + fee - debt):
        return "loss_limit"
    sizes = {m: p.size_lots for m, p in vault.positions.items() if p.size_lots}
    grown: set[int] = set()
    for pos in positions:
        m = pos.market.market_id
        old = sizes.get(m, 0)
        sizes[m] = old + pos.size_lots
        if abs(sizes[m]) > abs(old):
            grown.add(m)
    cap = st.parameters.vault_market_notional_max_atoms
    mm = 0  # the larger of initial (at max leverage) and maintenance margin, per market
    for m in sorted(sizes):
        market = st.markets[m]
        notional = abs(sizes[m]) * st.mstates[m].mark_price_ticks * market.tick_lot_atoms
        if m in grown and notional > cap:
            return "exposure_cap"
        mm += max(
            maintenance_margin_atoms(market, notional),
            div_ceil(notional, market.max_leverage),
        )
    usdc = vault.balances.get(0)
    if equity + fee - debt < mm or (usdc.available_atoms if usdc else 0) < debt:
        return "margin"
    return None


def vault_derisk(st: ExchangeCore, vault: Account) -> None:
    """Reduce-only IOC orders closing every vault position into the book, largest notional
    first, each no worse than the price that would take the vault's equity (at least zero)
    below zero: the book may reduce what the vault holds, never leave it flat and negative.

    With equity ``E`` at the mark and ``q`` lots, the fills may lose at most
    ``B = E - fee bound`` against the mark, so a long sells no lower than ``mark - B / q``
    (per lot, in tick-lots) and a short buys no higher than ``mark + B / q``. The fee bound
    is the taker fee on the largest notional such an order can fill (``q x mark + E``) plus an
    atom of rounding per lot. The vault pays the taker fee like anyone.
    """

    positions = sorted(
        unit_positions(vault, None),
        key=lambda p: (
            -abs(p.size_lots)
            * st.mstates[p.market.market_id].mark_price_ticks
            * p.market.tick_lot_atoms,
            p.market.market_id,
        ),
    )
    for pos in positions:
        market = pos.market
        s = pos.size_lots
        q = abs(s)
        tla = market.tick_lot_atoms
        mark = st.mstates[market.market_id].mark_price_ticks
        equity = max(unit_value_and_mm(st, vault, None)[0], 0)
        fee_bound = mul_ppm_ceil(q * mark * tla + equity, market.taker_fee_ppm) + q
        slack_ticks = (equity - fee_bound) // (q * tla)  # floor: never past the budget
        worst = mark - slack_ticks if s > 0 else mark + slack_ticks
        worst = max(1, min(worst, market.max_price_ticks))  # the band edge applies too
        place_internal_order(st, vault, market.market_id, s < 0, q, "vault_derisk", worst)


def vault_policy(st: ExchangeCore) -> None:
    """The vault's own risk, after the block's liquidations: under water (equity below its
    maintenance margin) it closes everything into the book and ADLs the rest in this block;
    over its loss limit it closes into the book what the book takes. Then the high-water
    mark follows its equity: the highest since it last held no position, its equity when it
    holds none."""
    vault = st.accounts.get(VAULT)
    if vault is None:
        return
    equity, mm = unit_value_and_mm(st, vault, None)
    if not unit_positions(vault, None):
        _set_vault_peak(st, max(equity, 0))
        return
    if equity < mm:
        st.events.append(("vault_under_water", equity, mm))
        if equity >= 0:
            # Bankrupt (equity < 0), the book could only add fees and slippage to a deficit
            # that ADL passes on: it goes straight to ADL at its bankruptcy price.
            vault_derisk(st, vault)
        rest = sorted(
            (p for p in unit_positions(vault, None) if not market_paused(st, p.market.market_id)),
            key=lambda p: p.market.market_id,
        )
        if rest:
            equity, _ = unit_value_and_mm(st, vault, None)
            adl(st, vault, None, rest, at_mark=equity >= 0)
    elif vault_over_loss_limit(st, equity):
        st.events.append(("vault_loss_limit", equity, st.vault_peak.amount_atoms))
        vault_derisk(st, vault)
    equity, _ = unit_value_and_mm(st, vault, None)
    if not unit_positions(vault, None):
        _set_vault_peak(st, max(equity, 0))
    else:
        _set_vault_peak(st, max(st.vault_peak.amount_atoms, equity, 0))


def _set_vault_peak(st: ExchangeCore, amount_atoms: int) -> None:
    if st.vault_peak.amount_atoms != amount_atoms:
        st.vault_peak.amount_atoms = amount_atoms
        st.touch(st.vault_peak)
