"""The JSON of the order tools in the open-order listing (``GET /v1/accounts/{address}/orders``
and the WebSocket ``account`` channel): running TWAPs with their progress, TP/SL groups (armed
or waiting for their parent order to fill) and the good-til time of each open order.

Prices and sizes are decimal strings in the market's units, like the orders beside them.
"""

from __future__ import annotations

from typing import Any

from node.api.units import MarketUnits
from state_machine.algo.records import TpslGroup, Twap
from state_machine.algo.twap import TWAP_SLICE_MS
from state_machine.state import ExchangeCore


def twap_json(tw: Twap, units: MarketUnits) -> dict[str, Any]:
    return {
        "twap_id": tw.twap_id,
        "market": units.market.symbol,
        "side": "buy" if tw.is_buy else "sell",
        "size": units.lots_to_size(tw.size_lots),
        "filled": units.lots_to_size(tw.filled_lots),
        "slices_done": tw.slices_done,
        "slices_total": tw.slices_total,
        "slice_interval_ms": TWAP_SLICE_MS,
        "start_ms": tw.start_ms,
        "duration_ms": tw.duration_ms,
        "next_slice_ms": tw.next_slice_ms,
        "randomize": tw.randomize,
        "reduce_only": tw.reduce_only,
        "max_slippage_ppm": tw.max_slippage_ppm,
    }


def tpsl_json(g: TpslGroup, units: MarketUnits) -> dict[str, Any]:
    def price(ticks: int) -> str | None:
        return units.ticks_to_price(ticks) if ticks else None

    return {
        "group_id": g.group_id,
        "market": units.market.symbol,
        "position_side": "long" if g.is_long else "short",
        "status": "armed" if g.armed else "pending",
        "parent_order_id": g.parent_order_id or None,
        "take_profit_price": price(g.tp_trigger_ticks),
        "stop_loss_price": price(g.sl_trigger_ticks),
        "take_profit_order_id": g.tp_order_id or None,
        "stop_loss_order_id": g.sl_order_id or None,
    }


def algo_listing(
    st: ExchangeCore, who: bytes, units: dict[int, MarketUnits]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The account's running TWAPs and TP/SL groups, by id."""
    algo = st.algo
    twaps = [
        twap_json(t, units[t.market_id])
        for _, t in sorted(algo.twaps.items())
        if t.account.pubkey == who
    ]
    groups = [
        tpsl_json(g, units[g.market_id])
        for _, g in sorted(algo.groups.items())
        if g.account.pubkey == who
    ]
    return twaps, groups


def good_til_ms(st: ExchangeCore, order_id: int) -> int | None:
    rec = st.algo.good_til.get(order_id)
    return rec.good_til_ms if rec is not None else None
