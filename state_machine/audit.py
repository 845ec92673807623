"""Whole-state audits: conservation of funds and index consistency.

These walk the entire state (O(accounts + orders)), so the node runs them at start-up and every
``[storage] audit_every_blocks`` blocks (node/audit_runner.py), not every block; the tests run
them after every block, and the integration cluster harness on each node's stored state at
teardown. Each raises InvariantError naming the first broken rule.

Conservation (DESIGN section 4): for every asset,
``sum(available + held) + fee pool (+ for USDC: isolated margins + unrealised PnL of all
positions + insurance fund + staked and unbonding stake) == genesis balances (+ genesis insurance
fund + genesis self-stake minted - stake burnt by slashing + bridge deposits) - withdrawn``.
Unrealised PnL sums to ``-sum(entry_value) * tick_lot_atoms`` per market because positions net to
zero, so the identity is exact at any price: realised PnL, fees and isolated-margin moves are
transfers between these terms, never creation.
"""

from __future__ import annotations

from state_machine.algo.audit import check_algo_indexes
from state_machine.invariants import check
from state_machine.perpetuals.margin import RATE_SCALE, pending_funding_scaled
from state_machine.staking.hook import staking_supply_atoms
from state_machine.state import ExchangeCore


def supply_totals(st: ExchangeCore) -> dict[int, tuple[int, int]]:
    """asset_id -> (held by the system now, genesis supply minus withdrawals)."""
    g = st.genesis
    expected: dict[int, int] = dict.fromkeys(st.fee_pools, 0)  # genesis and listed assets
    for b in g.balances:
        expected[b.asset_id] += b.amount_atoms
    expected[0] += g.parameters.insurance_fund_atoms
    for aid, total in st.asset_totals.items():
        expected[aid] -= total.amount_atoms
    if st.bridge is not None:  # deposits through the bridge (state_machine/bridge)
        expected[0] += st.bridge.deposited_atoms
    actual: dict[int, int] = {aid: pool.amount_atoms for aid, pool in st.fee_pools.items()}
    staked, staking_minted = staking_supply_atoms(st)  # stake is USDC (staking/params.py)
    actual[0] += staked
    expected[0] += staking_minted
    for acct in st.accounts.values():
        for aid, bal in acct.balances.items():
            actual[aid] += bal.available_atoms + bal.held_atoms
        for mid, pos in acct.positions.items():
            price = st.mstates[mid].mark_price_ticks
            actual[0] += pos.isolated_margin_atoms
            actual[0] += (price * pos.size_lots - pos.entry_value) * pos.market.tick_lot_atoms
    # Funding: what positions owe but have not settled is still in their balances, and the
    # settled rounding surplus is held by the markets (both in atoms x 1e9).
    pending = 0
    dust = 0
    for acct in st.accounts.values():
        for pos in acct.positions.values():
            pending += pending_funding_scaled(st, pos)
    for ms in st.mstates.values():
        dust += ms.funding_dust_scaled
    scaled_actual = actual[0] * RATE_SCALE - pending + dust
    check(
        scaled_actual % RATE_SCALE == 0, f"funding accounting off by {scaled_actual % RATE_SCALE}"
    )
    actual[0] = scaled_actual // RATE_SCALE
    return {aid: (actual[aid], expected[aid]) for aid in expected}


def check_conservation(st: ExchangeCore) -> None:
    for aid, (actual, expected) in supply_totals(st).items():
        check(actual == expected, f"asset {aid}: {actual} atoms in the system, {expected} owed")


def check_indexes(st: ExchangeCore) -> None:
    """Books, order indexes, holds, order counters and open interest agree with each other."""
    for book in st.books.values():
        book.check_invariants()
    live = {}
    for book in st.books.values():
        for side in (book.bids, book.asks):
            for o in side.iter_orders():
                check(o.order_id not in live, f"order {o.order_id} twice on the books")
                live[o.order_id] = o
    check(sorted(live) == sorted(st.orders), "book orders differ from the order index")
    for acct in st.accounts.values():
        for oid, o in acct.orders.items():
            check(st.orders.get(oid) is o and o.account is acct, f"account index of {oid}")
        for cid, o in acct.client_ids.items():
            check(o.client_id == cid and acct.orders.get(o.order_id) is o, f"client id {cid}")
        held: dict[int, int] = {}
        buys: dict[int, int] = {}
        sells: dict[int, int] = {}
        for o in acct.orders.values():
            m = st.markets[o.market_id]
            if m.is_perp:
                check(o.hold_atoms == 0, "perp order with a spot hold")
                if not o.reduce_only:
                    d = buys if o.is_buy else sells
                    d[o.market_id] = d.get(o.market_id, 0) + o.size_lots
            else:
                aid = m.quote_asset_id if o.is_buy else m.base_asset_id
                need = (
                    o.price_ticks * o.size_lots * m.tick_lot_atoms
                    if o.is_buy
                    else o.size_lots * m.lot_base_atoms
                )
                check(o.hold_atoms == need, f"order {o.order_id} holds {o.hold_atoms} != {need}")
                held[aid] = held.get(aid, 0) + o.hold_atoms
        for aid, bal in acct.balances.items():
            check(bal.held_atoms == held.get(aid, 0), f"held {aid} of {acct.pubkey.hex()[:8]}")
            if aid != 0:
                check(bal.available_atoms >= 0, "negative non-USDC balance")
        for mid, pos in acct.positions.items():
            check(pos.buy_lots == buys.get(mid, 0), f"buy lots in {mid}")
            check(pos.sell_lots == sells.get(mid, 0), f"sell lots in {mid}")
            check(pos.size_lots != 0 or pos.entry_value == 0, "entry value without position")
    for mid, ms in st.mstates.items():
        if not st.markets[mid].is_perp:
            continue
        sizes = [a.positions[mid].size_lots for a in st.accounts.values() if mid in a.positions]
        check(sum(sizes) == 0, f"positions in market {mid} do not net to zero")
        oi = sum(s for s in sizes if s > 0)
        check(ms.open_interest_lots == oi, f"open interest {ms.open_interest_lots} != {oi}")


def audit(st: ExchangeCore) -> None:
    check_conservation(st)
    check_indexes(st)
    check_algo_indexes(st)
