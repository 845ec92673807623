"""TWAP orders: buy or sell ``size_lots`` over ``duration_ms`` in slices, one every 30 s of block
time (TWAP_SLICE_MS), each an IOC market order through the normal placement path, so every
order check applies to it (market state, reduce-only, margin or balance, price band, minimum
notional, self-trade prevention: cancel the slice).

Schedule: ``slices_total = min(duration_ms // 30 s, size_lots)`` (at least one). The first slice
is placed at the end of the accepting block, then one at the end of the first block at or after
each further 30 s; a slow chain places at most one slice per block, so it takes longer rather
than bunching slices. A slice is ``remaining / slices left`` (rounded up; what a slice did not
fill is spread over the later ones), the last one the whole remainder, at most the market's
largest order. With ``randomize`` each slice but the last is scaled by a factor in 0.8..1.2
drawn from SHA-256 of the block (height, time), the TWAP id and the slice number: the same
blocks give the same slices on every node and every replay.

Slippage: a slice fills no worse than ``max_slippage_ppm`` from the reference price (oracle, else
last trade) and the market's band. Reduce-only: each slice is reduce-only (cut to the
position); a TWAP whose position has closed finishes (``position_closed``).

It finishes when filled, after its last slice, or when cancelled (events ``twap_accepted``,
``twap_slice`` per slice with the placement's code, ``twap_finished``).
"""

from __future__ import annotations

from bisect import insort

from state_machine.accounts.records import Account
from state_machine.algo.codes import (
    INVALID_TWAP,
    R_COMPLETED,
    R_POSITION_CLOSED,
    R_USER,
    ST_RUNNING,
    TOO_MANY_TWAPS,
    UNKNOWN_TWAP,
)
from state_machine.algo.records import Twap
from state_machine.clob.checks import Reject, min_notional_error
from state_machine.clob.codes import (
    INVALID_ORDER,
    LOT_SIZE,
    NO_REFERENCE_PRICE,
    REDUCE_ONLY_WOULD_INCREASE,
    ST_CANCELLED,
)
from state_machine.clob.place import process_place_order
from state_machine.crypto import sha256
from state_machine.genesis import Market
from state_machine.invariants import PPM, div_ceil, mul_ppm_ceil, mul_ppm_floor
from state_machine.results import OK, UNKNOWN_MARKET, ActionResult
from state_machine.state import ExchangeCore
from state_machine.tx import (
    KIND_MARKET,
    STP_CANCEL_TAKER,
    TIF_IOC,
    CancelTwap,
    PlaceOrder,
    PlaceTwap,
)

TWAP_SLICE_MS = 30_000
MIN_TWAP_MS = 60_000
MAX_TWAP_MS = 24 * 3600 * 1000
MAX_TWAPS_PER_ACCOUNT = 8
RANDOM_SPREAD_PPM = 200_000  # randomised slices are 0.8..1.2 of the even slice


def slices_for(duration_ms: int, size_lots: int) -> int:
    return max(1, min(duration_ms // TWAP_SLICE_MS, size_lots))


def reference_price(st: ExchangeCore, mid: int) -> int:
    ms = st.mstates[mid]
    return ms.oracle_price_ticks or ms.last_trade_price_ticks


def twap_shape_error(market: Market, a: PlaceTwap) -> Reject | None:
    """Duration, size and slippage of a new TWAP."""
    if not MIN_TWAP_MS <= a.duration_ms <= MAX_TWAP_MS:
        return INVALID_TWAP, f"duration must be {MIN_TWAP_MS}..{MAX_TWAP_MS} ms"
    if not 0 < a.max_slippage_ppm < PPM:
        return INVALID_TWAP, f"max slippage must be 1..{PPM - 1} ppm"
    slices = slices_for(a.duration_ms, a.size_lots)
    if a.size_lots == 0 or a.size_lots > slices * market.max_order_lots:
        return LOT_SIZE, f"size must be 1..{slices * market.max_order_lots} lots"
    if a.reduce_only and not market.is_perp:
        return INVALID_ORDER, "reduce-only applies to perpetuals"
    return None


def twap_account_error(
    st: ExchangeCore, acct: Account, market: Market, a: PlaceTwap
) -> Reject | None:
    """The account's side of a new TWAP: the TWAP limit, reduce-only, the slices' notional."""
    if st.algo.twap_count.get(acct.pubkey, 0) >= MAX_TWAPS_PER_ACCOUNT:
        return TOO_MANY_TWAPS, f"at most {MAX_TWAPS_PER_ACCOUNT} running TWAPs per account"
    if a.reduce_only and not closes_position(acct, a.market_id, a.is_buy):
        return REDUCE_ONLY_WOULD_INCREASE, "reduce-only TWAP would open or increase a position"
    ref = reference_price(st, a.market_id)
    if ref == 0:
        return NO_REFERENCE_PRICE, "no oracle or last trade"
    even = a.size_lots // slices_for(a.duration_ms, a.size_lots)
    return min_notional_error(st, market, ref, even, a.reduce_only)


def closes_position(acct: Account, mid: int, is_buy: bool) -> bool:
    pos = acct.positions.get(mid)
    return pos is not None and pos.size_lots != 0 and (pos.size_lots > 0) != is_buy


def process_place_twap(st: ExchangeCore, acct: Account, a: PlaceTwap) -> ActionResult:
    mid = a.market_id
    market = st.markets.get(mid)
    if market is None:
        return ActionResult(UNKNOWN_MARKET, f"no market {mid}")
    err = twap_shape_error(market, a) or twap_account_error(st, acct, market, a)
    if err is not None:
        return ActionResult(err[0], err[1])
    tid = st.next_seq
    st.next_seq = tid + 1
    now = st.timestamp_ms
    slices = slices_for(a.duration_ms, a.size_lots)
    tw = Twap(tid, mid, acct, [a.is_buy, a.size_lots, 0, a.duration_ms, now, now, 0, slices,
                               a.randomize, a.reduce_only, a.max_slippage_ppm])  # fmt: skip
    st.algo.add_twap(tw)
    st.touch(tw)
    st.events.append(
        ("twap_accepted", mid, tid, acct.pubkey, a.is_buy, a.size_lots, a.duration_ms, slices,
         a.randomize, a.reduce_only, a.max_slippage_ppm)
    )  # fmt: skip
    return ActionResult(OK, ST_RUNNING, tid, 0, ST_RUNNING)


def process_cancel_twap(st: ExchangeCore, acct: Account, a: CancelTwap) -> ActionResult:
    tw = st.algo.twaps.get(a.twap_id)
    if tw is None or tw.account is not acct or tw.market_id != a.market_id:
        return ActionResult(UNKNOWN_TWAP, f"no running TWAP {a.twap_id} in market {a.market_id}")
    st.algo.unschedule_twap(tw)
    finish_twap(st, tw, R_USER)
    return ActionResult(OK, ST_CANCELLED, tw.twap_id, tw.filled_lots, ST_CANCELLED)


def finish_twap(st: ExchangeCore, tw: Twap, reason: str) -> None:
    """Forget a TWAP already taken off the schedule."""
    st.algo.remove_twap(tw)
    st.touch(tw)
    st.events.append(
        ("twap_finished", tw.market_id, tw.twap_id, tw.account.pubkey, tw.filled_lots, reason)
    )


def slice_factor_ppm(height: int, timestamp_ms: int, twap_id: int, slice_no: int) -> int:
    """The randomised slice's scale in ppm, 0.8..1.2, from the block and the slice."""
    seed = b"perpbft/twap-slice\x00" + b"".join(
        x.to_bytes(8, "big") for x in (height, timestamp_ms, twap_id, slice_no)
    )
    draw = int.from_bytes(sha256(seed)[:8], "big") % (2 * RANDOM_SPREAD_PPM + 1)
    return PPM - RANDOM_SPREAD_PPM + draw


def slice_lots(st: ExchangeCore, tw: Twap) -> int:
    """The next slice's size (see the module docstring)."""
    remaining = tw.size_lots - tw.filled_lots
    left = tw.slices_total - tw.slices_done
    lots = remaining if left <= 1 else div_ceil(remaining, left)
    if tw.randomize and left > 1:
        f = slice_factor_ppm(st.height, st.timestamp_ms, tw.twap_id, tw.slices_done)
        lots = min(max(lots * f // PPM, min_notional_lots(st, tw), 1), remaining)
    return min(lots, st.markets[tw.market_id].max_order_lots)


def min_notional_lots(st: ExchangeCore, tw: Twap) -> int:
    """The fewest lots a slice needs to meet the market's minimum notional at the reference
    price (1 for a reduce-only TWAP, which the minimum does not bind): a randomised slice
    scaled down is never so small that the market refuses it."""
    market = st.markets[tw.market_id]
    ref = reference_price(st, tw.market_id)
    if tw.reduce_only or ref == 0:
        return 1
    return div_ceil(market.min_notional_atoms, ref * market.tick_lot_atoms)


def worst_price(ref_ticks: int, is_buy: bool, slippage_ppm: int) -> int:
    """The slice's limit: ``slippage_ppm`` from the reference, rounded inward (0: no price)."""
    if ref_ticks == 0:
        return 0
    if is_buy:
        return mul_ppm_floor(ref_ticks, PPM + slippage_ppm)
    return max(mul_ppm_ceil(ref_ticks, PPM - slippage_ppm), 1)


def place_slice(st: ExchangeCore, tw: Twap) -> None:
    """Place the next slice (normal placement path) and record what it filled."""
    mid = tw.market_id
    lots = slice_lots(st, tw)
    worst = worst_price(reference_price(st, mid), tw.is_buy, tw.max_slippage_ppm)
    order = PlaceOrder(mid, tw.is_buy, KIND_MARKET, TIF_IOC, worst, lots, 0, tw.reduce_only, 0,
                       STP_CANCEL_TAKER)  # fmt: skip
    res = process_place_order(st, tw.account, order)
    tw.filled_lots += res.filled_lots
    tw.slices_done += 1
    st.touch(tw)
    st.events.append(
        ("twap_slice", mid, tw.twap_id, tw.account.pubkey, tw.slices_done, lots, res.code,
         res.order_id, res.filled_lots, tw.filled_lots)
    )  # fmt: skip


def run_twaps(st: ExchangeCore) -> None:
    """End block: one slice of every TWAP that is due, by (due time, id)."""
    algo = st.algo
    now = st.timestamp_ms
    for tw in algo.take_due_twaps(now):
        if tw.reduce_only and not closes_position(tw.account, tw.market_id, tw.is_buy):
            finish_twap(st, tw, R_POSITION_CLOSED)
            continue
        place_slice(st, tw)
        if tw.filled_lots >= tw.size_lots or tw.slices_done >= tw.slices_total:
            finish_twap(st, tw, R_COMPLETED)
            continue
        tw.next_slice_ms += TWAP_SLICE_MS
        insort(algo.twap_due, (tw.next_slice_ms, tw.twap_id))
