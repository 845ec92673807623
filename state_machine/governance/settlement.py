"""Delisting a perp without leaving anyone below zero: who pays for the units the final
price bankrupts.

Theory of operation
-------------------
``markets.delist_perp`` closes every position of the market at the final price, longs
against shorts (``settle_positions``). That moves each position's PnL at the final price into
its unit's collateral and creates nothing: at one price the positions' PnL sums to the same
total whatever the price (their sizes net to zero), which the conservation audit counts
before and after. A unit whose loss at the final price exceeds its collateral is then below
zero. Leaving it there would be a debt nobody ever pays (an account with no position is
never liquidated), so this module settles it at once, in the same block:

1. **Deficits.** Each holder's *settlement unit*: its cross unit if it held the market in
   cross margin (value = USDC available + the unrealised PnL of its other cross positions at
   the mark - pending funding, as the liquidation ladder counts it), or the closed isolated
   position (value = margin + PnL, what was released to cross or, if negative, the record's
   bad debt). A unit with a negative value has a deficit of minus that value.
2. **The vault** (the insurance fund, liquidation/risk.py) pays first, within its governed
   limits: never more than its USDC, nor more than leaves its equity covering the margin of
   what it holds (``vault_refusal``'s "margin" rule), nor more than takes it past
   ``vault_loss_limit_ppm`` below its high-water mark (a vault over its limit pays nothing).
3. **Winners' haircut.** The rest is taken from the units that gained from the settlement
   (positive PnL at the final price, value not negative), pro rata to the gain, each at
   most its gain and its value: socialised loss, as ADL does, but among the market's own
   holders since the market cannot trade any more.
4. **Holders' equity.** If the gains do not cover it (a unit was already under water, or
   earlier realised trades left the open positions' PnL summing below zero), the rest is
   taken from the non-deficit settlement units pro rata to their remaining value, each at
   most that value. The values of all settlement units sum to the same total at the final
   price as at the mark, so when every unit was solvent at the mark (the liquidation ladder
   keeps them so) the deficits are covered in full. Only a market whose holders were
   insolvent together leaves a remainder, said by ``delist_covered``.

Accounts without a position in the market never pay. A haircut is taken from the unit's
USDC (an isolated winner's gain was released there), so an isolated holder's other cross
collateral is never touched beyond what its isolated position brought in. Every division is
exact: ``pro_rata`` hands out whole atoms, the remainder to the largest fractional shares
(ties by key order), so the vault's payment plus the haircuts equal the deficits covered to
the atom. Everything runs in account key order. Events: ``delist_vault_payment``,
``delist_haircut`` per payer, ``delist_covered`` per unit in deficit.
"""

from __future__ import annotations

from functools import cmp_to_key

from state_machine.accounts.records import VAULT, Account
from state_machine.genesis import Market
from state_machine.invariants import PPM, check, div_ceil
from state_machine.liquidation.risk import unit_value_and_mm
from state_machine.perpetuals.margin import maintenance_margin_atoms
from state_machine.perpetuals.positions import apply_position_fill
from state_machine.state import ExchangeCore


class SettlementUnit:
    """One holder's unit after the settlement: its value and what it gained."""

    __slots__ = ("acct", "gain_atoms", "isolated", "value_atoms")

    def __init__(self, acct: Account, isolated: bool, value_atoms: int, gain_atoms: int) -> None:
        self.acct = acct
        self.isolated = isolated
        self.value_atoms = value_atoms
        self.gain_atoms = gain_atoms


def pro_rata(amount: int, weights: list[int], caps: list[int]) -> list[int]:
    """Split ``amount`` atoms over the entries pro rata to ``weights``, entry ``i`` taking at
    most ``caps[i]`` (water-filling: an entry whose share would pass its cap takes the cap and
    the rest is shared again among the others). Whole atoms; the remainder goes one atom each
    to the largest fractional shares, ties to the lower index. Never more than ``amount``;
    exactly ``amount`` unless every entry with a weight reaches its cap.

    Entries are capped in order of cap per unit of weight (smallest first): capping one whose
    cap is below its share only raises the share per unit of weight of the others, so the
    capped set (the water level) is the one capping them all at once would reach. O(n log n).
    """
    takes = [0] * len(weights)
    active = [i for i, w in enumerate(weights) if w > 0 and caps[i] > 0]

    def by_cap_per_weight(i: int, j: int) -> int:
        return caps[i] * weights[j] - caps[j] * weights[i] or i - j

    active.sort(key=cmp_to_key(by_cap_per_weight))
    total = sum(weights[i] for i in active)
    k = 0
    while k < len(active) and amount * weights[active[k]] >= caps[active[k]] * total:
        i = active[k]
        takes[i] = caps[i]
        amount -= caps[i]
        total -= weights[i]
        k += 1
    rest = active[k:]
    if amount <= 0 or not rest:
        return takes
    # Every exact share is below its cap, so a floor share plus one atom still fits.
    for i in rest:
        takes[i] = amount * weights[i] // total
    left = amount - sum(takes[i] for i in rest)
    for i in sorted(rest, key=lambda i: (-(amount * weights[i] % total), i))[:left]:
        takes[i] += 1
    return takes


def settle_market(st: ExchangeCore, market: Market, price: int, holders: list[Account]) -> None:
    """Close every position of ``market`` at ``price`` (holders in key order: a
    ``delist_settled`` event each), then cover the units left below zero (module
    docstring)."""
    mid = market.market_id
    before = {a.pubkey: _usdc(a) for a in holders}
    sizes = {a.pubkey: a.positions[mid].size_lots for a in holders}
    pnl = settle_positions(st, market, price, holders)
    for acct in holders:
        key = acct.pubkey
        st.events.append(("delist_settled", mid, key, sizes[key], price, pnl.get(key, 0)))
    cover_deficits(st, mid, settlement_units(st, mid, holders, pnl, before))


def settle_positions(
    st: ExchangeCore, market: Market, price: int, holders: list[Account]
) -> dict[bytes, int]:
    """Close the holders' positions pairwise, longs against shorts in key order, at
    ``price`` with no fee; returns each holder's realised PnL."""
    mid = market.market_id
    longs = [(a, a.positions[mid].size_lots) for a in holders if a.positions[mid].size_lots > 0]
    shorts = [(a, -a.positions[mid].size_lots) for a in holders if a.positions[mid].size_lots < 0]
    left_long = [q for _, q in longs]
    left_short = [q for _, q in shorts]
    pnl: dict[bytes, int] = {}
    li = si = 0
    while li < len(longs) and si < len(shorts):
        q = min(left_long[li], left_short[si])
        for acct, d in ((longs[li][0], -q), (shorts[si][0], q)):
            got = apply_position_fill(st, acct, market, d, price, 0)
            pnl[acct.pubkey] = pnl.get(acct.pubkey, 0) + got
        left_long[li] -= q
        left_short[si] -= q
        li += left_long[li] == 0
        si += left_short[si] == 0
    check(li == len(longs) and si == len(shorts), "positions do not net to zero")
    return pnl


def _usdc(acct: Account) -> int:
    bal = acct.balances.get(0)
    return bal.available_atoms if bal is not None else 0


def settlement_units(
    st: ExchangeCore,
    mid: int,
    holders: list[Account],
    pnl: dict[bytes, int],
    usdc_before: dict[bytes, int],
) -> list[SettlementUnit]:
    """Each holder's settlement unit after its position was closed (holders in key order).

    An isolated close released ``max(margin + PnL, 0)`` to cross (the only change to the
    account's USDC in the settlement: no fee) and kept a negative rest in the record."""
    out = []
    for acct in holders:
        pos = acct.positions[mid]
        if pos.isolated:
            debt = pos.isolated_margin_atoms
            value = debt if debt < 0 else _usdc(acct) - usdc_before[acct.pubkey]
        else:
            value = unit_value_and_mm(st, acct, None)[0]
        out.append(SettlementUnit(acct, pos.isolated, value, pnl.get(acct.pubkey, 0)))
    return out


def vault_budget_atoms(st: ExchangeCore) -> int:
    """What the vault may pay for deficits now: at most its USDC, at most what leaves its
    equity covering the margin of its positions (the larger of maintenance and initial at
    maximum leverage, as a takeover needs), and at most what keeps it within
    ``vault_loss_limit_ppm`` of its high-water mark."""
    vault = st.accounts.get(VAULT)
    if vault is None:
        return 0
    equity, _ = unit_value_and_mm(st, vault, None)
    carry = 0
    for m, pos in sorted(vault.positions.items()):
        if pos.isolated or not pos.size_lots:
            continue
        market = pos.market
        notional = abs(pos.size_lots) * st.mstates[m].mark_price_ticks * market.tick_lot_atoms
        carry += max(
            maintenance_margin_atoms(market, notional), div_ceil(notional, market.max_leverage)
        )
    budget = min(_usdc(vault), equity - carry)
    peak = st.vault_peak.amount_atoms
    if peak > 0:
        floor = div_ceil(peak * (PPM - st.parameters.vault_loss_limit_ppm), PPM)
        budget = min(budget, equity - floor)
    return budget if budget > 0 else 0


def cover_deficits(st: ExchangeCore, mid: int, units: list[SettlementUnit]) -> None:
    """Cover every settlement unit's deficit: the vault, then the winners' haircut, then
    the holders' equity (module docstring), all pro rata in whole atoms."""
    deficits = [-u.value_atoms if u.value_atoms < 0 else 0 for u in units]
    need = sum(deficits)
    if need == 0:
        return
    vault_pay = min(vault_budget_atoms(st), need)
    if vault_pay:
        vault_usdc = st.balance(st.account(VAULT), 0)
        vault_usdc.available_atoms -= vault_pay
        st.touch(vault_usdc)
        st.events.append(("delist_vault_payment", mid, vault_pay))
        for u in units:  # the vault may itself be a holder: its unit's value follows
            if u.acct.pubkey == VAULT and not u.isolated and u.value_atoms >= 0:
                u.value_atoms -= vault_pay
    room = [u.value_atoms if u.value_atoms > 0 else 0 for u in units]
    gains = [u.gain_atoms if u.gain_atoms > 0 and room[i] else 0 for i, u in enumerate(units)]
    haircut = pro_rata(need - vault_pay, gains, [min(g, room[i]) for i, g in enumerate(gains)])
    room = [r - haircut[i] for i, r in enumerate(room)]
    taken = sum(haircut)
    extra = pro_rata(need - vault_pay - taken, room, room)
    for i, u in enumerate(units):
        amount = haircut[i] + extra[i]
        if amount:
            usdc = st.balance(u.acct, 0)
            usdc.available_atoms -= amount
            st.touch(usdc)
            st.events.append(("delist_haircut", mid, u.acct.pubkey, amount, u.gain_atoms))
    pool = vault_pay + taken + sum(extra)
    covered = pro_rata(pool, deficits, deficits)
    check(sum(covered) == pool, "delisting deficits covered differ from what was paid")
    for i, u in enumerate(units):
        if deficits[i]:
            _credit_unit(st, u, mid, covered[i])
            st.events.append(("delist_covered", mid, u.acct.pubkey, deficits[i], covered[i]))


def _credit_unit(st: ExchangeCore, u: SettlementUnit, mid: int, amount: int) -> None:
    if u.isolated:
        pos = u.acct.positions[mid]
        pos.isolated_margin_atoms += amount
        st.touch(pos)
    else:
        usdc = st.balance(u.acct, 0)
        usdc.available_atoms += amount
        st.touch(usdc)
