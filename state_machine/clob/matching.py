"""The matching engine: price-time priority matching, fills and resting.

An accepted order is matched against the opposite side (fills at the maker's price; self-trade
prevention and reduce-only caps apply per maker), then its remainder rests (GTC, post-only) or
is cancelled (IOC, FOK, market). Spot fills move base and quote between holds and balances,
fees taken in the asset each side receives (a buy's hold is exactly its notional); perp fills
go to the positions (perpetuals/positions.py) with fees in USDC from the cross balance.

This module is below the actions that use it (place, amend, cancel), the trigger orders and
the liquidations: it imports none of them. ``match_order`` is the hot loop; it is written
out flat on purpose (no per-order helper calls).
"""

from __future__ import annotations

from state_machine.accounts.fees import fill_rates, record_volume
from state_machine.accounts.records import Account
from state_machine.book import Book, BookSide, Order
from state_machine.clob.checks import (
    spot_hold_asset,
    spot_hold_atoms,
)
from state_machine.clob.codes import (
    NO_LIQUIDITY,
    R_IOC,
    R_REDUCE_ONLY,
    R_SELF_TRADE,
    REDUCE_ONLY_WOULD_INCREASE,
    SELF_TRADE,
    ST_CANCELLED,
    ST_FILLED,
    ST_PARTIAL,
    ST_RESTING,
)
from state_machine.genesis import MARKET_PERP, Market
from state_machine.invariants import PPM, InvariantError, check
from state_machine.perpetuals.positions import apply_position_fill
from state_machine.prices.records import MarketState
from state_machine.results import OK, ActionResult
from state_machine.state import ExchangeCore
from state_machine.tx import STP_CANCEL_BOTH, STP_CANCEL_RESTING, STP_CANCEL_TAKER, TIF_ALO, TIF_GTC


def execute_order(st: ExchangeCore, market: Market, book: Book, order: Order) -> ActionResult:
    """Match an accepted order, then rest or cancel its remainder."""
    is_buy = order.is_buy
    opp = book.asks if is_buy else book.bids
    filled = 0
    stop = ""
    keys = opp.keys
    if keys:
        best = -keys[-1] if is_buy else keys[-1]
        if (best <= order.price_ticks) if is_buy else (best >= order.price_ticks):
            filled, stop = match_order(st, market, opp, order)
    remaining = order.size_lots
    tif = order.tif
    oid = order.order_id
    if remaining == 0:
        _release_hold(st, market, order)
        return ActionResult(OK, ST_FILLED, oid, filled, ST_FILLED)
    if not stop and tif in (TIF_GTC, TIF_ALO):
        if market.kind != MARKET_PERP:
            # The hold now only needs to cover the resting remainder at the limit price.
            need = spot_hold_atoms(market, is_buy, order.price_ticks, remaining)
            excess = order.hold_atoms - need
            check(excess >= 0, "spot hold below the resting need")
            if excess:
                bal = order.account.balances[spot_hold_asset(market, is_buy)]
                bal.held_atoms -= excess
                bal.available_atoms += excess
                order.hold_atoms = need
        rest_order(st, market, order)
        st.events.append(
            (
                "order_rested",
                order.market_id,
                oid,
                order.account.pubkey,
                order.price_ticks,
                remaining,
            )
        )
        status = ST_PARTIAL if filled else ST_RESTING
        return ActionResult(OK, status, oid, filled, status)
    _release_hold(st, market, order)
    reason = stop or R_IOC
    st.events.append(
        ("order_cancelled", order.market_id, oid, order.account.pubkey, remaining, reason)
    )
    if filled:
        return ActionResult(OK, ST_PARTIAL, oid, filled, ST_CANCELLED)
    if stop == R_SELF_TRADE:
        return ActionResult(SELF_TRADE, "cancelled by self-trade prevention", oid, 0, ST_CANCELLED)
    if stop == R_REDUCE_ONLY:
        return ActionResult(
            REDUCE_ONLY_WOULD_INCREASE, "position already closed", oid, 0, ST_CANCELLED
        )
    return ActionResult(NO_LIQUIDITY, "nothing to match at the limit price", oid, 0, ST_CANCELLED)


def rest_order(st: ExchangeCore, market: Market, order: Order) -> None:
    """Put a live order on the book and into every index."""
    book = st.books[order.market_id]
    (book.bids if order.is_buy else book.asks).add(order)
    oid = order.order_id
    st.orders[oid] = order
    acct = order.account
    acct.orders[oid] = order
    if order.client_id:
        acct.client_ids[order.client_id] = order
    if book.perp and not order.reduce_only:
        pos = acct.positions.get(order.market_id)
        if pos is None:
            pos = st.position(acct, market)
        if order.is_buy:
            pos.buy_lots += order.size_lots
        else:
            pos.sell_lots += order.size_lots
    if not order.dirty:
        order.dirty = True
        st.dirty.append(order)


def _unindex(st: ExchangeCore, order: Order) -> None:
    oid = order.order_id
    del st.orders[oid]
    acct = order.account
    del acct.orders[oid]
    if order.client_id:
        del acct.client_ids[order.client_id]


def _release_hold(st: ExchangeCore, market: Market, order: Order) -> None:
    """Return a finished or cancelled order's spot hold to the available balance."""
    hold = order.hold_atoms
    if hold:
        bal = order.account.balances[spot_hold_asset(market, order.is_buy)]
        bal.held_atoms -= hold
        bal.available_atoms += hold
        order.hold_atoms = 0
        if not bal.dirty:  # st.touch(bal): every cancel of a spot order comes here
            bal.dirty = True
            st.dirty.append(bal)


def cancel_resting(st: ExchangeCore, order: Order, reason: str) -> None:
    """Remove a resting order from the book and indexes, releasing what it reserved."""
    book = st.books[order.market_id]
    (book.bids if order.is_buy else book.asks).remove(order)
    oid = order.order_id
    del st.orders[oid]
    acct = order.account
    del acct.orders[oid]
    if order.client_id:
        del acct.client_ids[order.client_id]
    if order.hold_atoms:
        _release_hold(st, book.market, order)
    if book.perp and not order.reduce_only:
        pos = acct.positions[order.market_id]
        if order.is_buy:
            pos.buy_lots -= order.size_lots
        else:
            pos.sell_lots -= order.size_lots
    if not order.dirty:
        order.dirty = True
        st.dirty.append(order)
    st.events.append(
        ("order_cancelled", order.market_id, oid, acct.pubkey, order.size_lots, reason)
    )


def _ro_capacity(order: Order) -> int:
    """Lots a reduce-only order may still fill: its account's opposite position."""
    pos = order.account.positions.get(order.market_id)
    s = pos.size_lots if pos is not None else 0
    if order.is_buy:
        return -s if s < 0 else 0
    return s if s > 0 else 0


def match_order(st: ExchangeCore, market: Market, opp: BookSide, taker: Order) -> tuple[int, str]:
    """Fill ``taker`` against ``opp`` in price-time priority. Returns (filled, stop reason)."""
    levels = opp.levels
    keys = opp.keys
    is_buy = taker.is_buy
    limit = taker.price_ticks
    perp = market.kind == MARKET_PERP
    tacct = taker.account
    stp = taker.stp
    filled = 0
    orders = st.orders
    while keys:
        k = keys[-1]
        price = -k if is_buy else k
        if (price > limit) if is_buy else (price < limit):
            break
        level = levels[price]
        dq = level.orders
        while dq:
            maker = dq[0]
            if not maker.live:
                dq.popleft()
                level.dead_count -= 1
                continue
            if maker.account is tacct:
                if stp == STP_CANCEL_TAKER:
                    return filled, R_SELF_TRADE
                cancel_resting(st, maker, R_SELF_TRADE)
                if stp == STP_CANCEL_BOTH:
                    return filled, R_SELF_TRADE
                check(stp == STP_CANCEL_RESTING, "unknown stp mode")
                if level.live_count == 0:
                    break
                dq = level.orders
                continue
            qty = taker.size_lots
            msize = maker.size_lots
            if msize < qty:
                qty = msize
            if perp and (maker.reduce_only or taker.reduce_only):
                if maker.reduce_only:
                    cap = _ro_capacity(maker)
                    if cap == 0:
                        cancel_resting(st, maker, R_REDUCE_ONLY)
                        if level.live_count == 0:
                            break
                        dq = level.orders
                        continue
                    if cap < qty:
                        qty = cap
                if taker.reduce_only:
                    cap = _ro_capacity(taker)
                    if cap == 0:
                        return filled, R_REDUCE_ONLY
                    if cap < qty:
                        qty = cap
            if perp:
                settle_perp_fill(st, market, taker, maker, price, qty)
            else:
                settle_spot_fill(st, market, taker, maker, price, qty)
            filled += qty
            taker.size_lots -= qty
            taker.filled_lots += qty
            maker.size_lots = msize - qty
            maker.filled_lots += qty
            level.total_lots -= qty
            if not maker.dirty:
                maker.dirty = True
                st.dirty.append(maker)
            if msize == qty:
                dq.popleft()
                maker.live = False
                maker.level = None
                level.live_count -= 1
                oid = maker.order_id
                del orders[oid]
                macct = maker.account
                del macct.orders[oid]
                if maker.client_id:
                    del macct.client_ids[maker.client_id]
            if taker.size_lots == 0:
                break
        if level.live_count == 0 and levels.get(price) is level:
            opp.drop_level(level)
        if taker.size_lots == 0:
            break
    return filled, ""


def fok_fillable(
    st: ExchangeCore,
    market: Market,
    opp: BookSide,
    acct: Account,
    is_buy: bool,
    limit: int,
    size: int,
    stp: int,
) -> bool:
    """Dry run of matching: would a fill-or-kill order fill entirely?

    Mirrors match_order exactly: own orders are skipped (cancel-resting) or stop the taker,
    reduce-only makers fill at most their account's remaining opposite position, tracking
    how earlier fills in this dry run changed each maker's position.
    """
    perp = market.kind == MARKET_PERP
    moved: dict[bytes, int] = {}  # maker account -> position change so far in this dry run
    need = size
    sign = 1 if opp.is_bid else -1
    for k in reversed(opp.keys):
        price = sign * k
        if (price > limit) if is_buy else (price < limit):
            break
        for o in opp.levels[price].orders:
            if not o.live:
                continue
            if o.account is acct:
                if stp == STP_CANCEL_RESTING:
                    continue
                return False
            q = o.size_lots
            if perp and o.reduce_only:
                pos = o.account.positions.get(o.market_id)
                s = (pos.size_lots if pos is not None else 0) + moved.get(o.account.pubkey, 0)
                cap = (-s if s < 0 else 0) if o.is_buy else (s if s > 0 else 0)
                if cap == 0:
                    continue
                q = min(q, cap)
            q = min(q, need)
            if perp:
                pk = o.account.pubkey
                moved[pk] = moved.get(pk, 0) + (q if o.is_buy else -q)
            need -= q
            if need == 0:
                return True
    return False


def record_fill(
    st: ExchangeCore,
    ms: MarketState,
    taker: Order,
    maker: Order,
    price: int,
    qty: int,
    taker_fee_atoms: int,
    maker_fee_atoms: int,
    taker_pnl_atoms: int,
    maker_pnl_atoms: int,
) -> None:
    """A fill's market statistics (last trade, volume) and its ``fill`` event."""
    ms.last_trade_price_ticks = price
    ms.last_trade_time_ms = st.timestamp_ms
    ms.volume_lots += qty
    if not ms.dirty:  # st.touch(ms), once per fill
        ms.dirty = True
        st.dirty.append(ms)
    st.events.append(
        ("fill", ms.market.market_id, price, qty, taker.is_buy, taker.order_id, maker.order_id,
         taker.account.pubkey, maker.account.pubkey, taker_fee_atoms, maker_fee_atoms,
         taker_pnl_atoms, maker_pnl_atoms)
    )  # fmt: skip


def settle_spot_fill(
    st: ExchangeCore, market: Market, taker: Order, maker: Order, price: int, qty: int
) -> None:
    """Move base and quote between the two accounts; fees in the asset each one receives."""
    quote_atoms = price * qty * market.tick_lot_atoms  # notional_atoms, inlined (per fill)
    base_atoms = qty * market.lot_base_atoms
    if st.accts.fees.tiers:  # fee tiers in force (accounts/fees.py)
        taker_ppm, maker_ppm = fill_rates(st, market, taker.account, maker.account)
        record_volume(st, market, taker.account, maker.account, quote_atoms)
    else:
        taker_ppm, maker_ppm = market.taker_fee_ppm, market.maker_fee_ppm
    if taker.is_buy:
        buyer, seller = taker, maker
        buyer_fee_ppm, seller_fee_ppm = taker_ppm, maker_ppm
    else:
        buyer, seller = maker, taker
        buyer_fee_ppm, seller_fee_ppm = maker_ppm, taker_ppm
    # trade_fee_atoms, inlined (twice per fill); the property test in
    # tests/state_machine/test_check_fast_paths.py runs fills against the named formula.
    base_fee = -((-base_atoms * buyer_fee_ppm) // PPM)
    quote_fee = -((-quote_atoms * seller_fee_ppm) // PPM)
    qa = market.quote_asset_id
    ba = market.base_asset_id
    bacct = buyer.account
    sacct = seller.account
    touch = st.touch
    # buyer: quote leaves its hold, base arrives (minus fee)
    bq = bacct.balances[qa]
    bq.held_atoms -= quote_atoms
    buyer.hold_atoms -= quote_atoms
    bb = bacct.balances.get(ba)
    if bb is None:
        bb = st.balance(bacct, ba)
    bb.available_atoms += base_atoms - base_fee
    # seller: base leaves its hold, quote arrives (minus fee)
    sb = sacct.balances[ba]
    sb.held_atoms -= base_atoms
    seller.hold_atoms -= base_atoms
    sq = sacct.balances.get(qa)
    if sq is None:
        sq = st.balance(sacct, qa)
    sq.available_atoms += quote_atoms - quote_fee
    if buyer.hold_atoms < 0 or seller.hold_atoms < 0:  # check(), without a call per fill
        raise InvariantError("spot hold overdrawn")
    dirty = st.dirty
    for bal in (bq, bb, sb, sq):  # st.touch of each, without four calls per fill
        if not bal.dirty:
            bal.dirty = True
            dirty.append(bal)
    if base_fee:
        pool = st.fee_pools[ba]
        pool.amount_atoms += base_fee
        touch(pool)
    if quote_fee:
        pool = st.fee_pools[qa]
        pool.amount_atoms += quote_fee
        touch(pool)
    if taker.is_buy:
        tfee, mfee = base_fee, quote_fee
    else:
        tfee, mfee = quote_fee, base_fee
    record_fill(st, st.mstates[market.market_id], taker, maker, price, qty, tfee, mfee, 0, 0)


def settle_perp_fill(
    st: ExchangeCore, market: Market, taker: Order, maker: Order, price: int, qty: int
) -> None:
    mid = market.market_id
    notional = price * qty * market.tick_lot_atoms  # notional_atoms, inlined (per fill)
    tacct = taker.account
    macct = maker.account
    if st.accts.fees.tiers:  # fee tiers in force; a negative maker fee is a rebate
        taker_ppm, maker_ppm = fill_rates(st, market, tacct, macct)
        record_volume(st, market, tacct, macct, notional)
    else:
        taker_ppm, maker_ppm = market.taker_fee_ppm, market.maker_fee_ppm
    tfee = -((-notional * taker_ppm) // PPM)  # trade_fee_atoms, inlined (per fill)
    mfee = -((-notional * maker_ppm) // PPM)  # trade_fee_atoms, inlined (per fill)
    tpos = tacct.positions[mid]
    mpos = macct.positions.get(mid)
    if mpos is None:
        mpos = st.position(macct, market)
    t_old = tpos.size_lots
    m_old = mpos.size_lots
    if maker.is_buy:
        tpnl = apply_position_fill(st, tacct, market, -qty, price, tfee)
        mpnl = apply_position_fill(st, macct, market, qty, price, mfee)
        if not maker.reduce_only:
            mpos.buy_lots -= qty
    else:
        tpnl = apply_position_fill(st, tacct, market, qty, price, tfee)
        mpnl = apply_position_fill(st, macct, market, -qty, price, mfee)
        if not maker.reduce_only:
            mpos.sell_lots -= qty
    pool = st.fee_pools[0]
    pool.amount_atoms += tfee + mfee
    if tfee + mfee < 0:  # check(), without a call per fill
        raise InvariantError("a maker rebate exceeds the taker fee that pays it")
    st.touch(pool)
    ms = st.mstates[mid]
    t_new = tpos.size_lots
    m_new = mpos.size_lots
    ms.open_interest_lots += (
        (t_new if t_new > 0 else 0)
        - (t_old if t_old > 0 else 0)
        + (m_new if m_new > 0 else 0)
        - (m_old if m_old > 0 else 0)
    )
    record_fill(st, ms, taker, maker, price, qty, tfee, mfee, tpnl, mpnl)
