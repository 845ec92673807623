"""Read-only queries over the exchange state for the API (plain dicts of ints, bytes, str).

Nothing here mutates state. Amounts stay integers in the state's units (ticks, lots, atoms);
the API converts them to decimal strings at the edge using the market's ``tick_lot_atoms`` and
``lot_base_atoms`` and the assets' decimals.
"""

from __future__ import annotations

from typing import Any

from state_machine.accounts.records import VAULT, Account
from state_machine.book import Order
from state_machine.clob.codes import ST_RESTING, ST_WAITING
from state_machine.genesis import MARKET_KIND_NAMES
from state_machine.invariants import PPM
from state_machine.liquidation.risk import liquidation_price_ticks, unit_value_and_mm
from state_machine.perpetuals.margin import (
    free_collateral,
    maintenance_margin_atoms,
    pending_funding_atoms,
    position_im_atoms,
    unrealized_pnl_atoms,
)
from state_machine.perpetuals.records import Position
from state_machine.state import ExchangeCore
from state_machine.triggers.records import Trigger, account_triggers, open_order_count


def book_levels(st: ExchangeCore, market_id: int, depth: int = 20) -> dict[str, Any] | None:
    """Best ``depth`` levels per side: [price_ticks, size_lots, order_count]; None if no market."""
    book = st.books.get(market_id)
    if book is None:
        return None
    return {
        "market_id": market_id,
        "height": st.height,
        "bids": [list(x) for x in book.bids.depth(depth)],
        "asks": [list(x) for x in book.asks.depth(depth)],
    }


def order_dict(o: Order) -> dict[str, Any]:
    return {
        "order_id": o.order_id,
        "market_id": o.market_id,
        "account": o.account.pubkey,
        "is_buy": o.is_buy,
        "price_ticks": o.price_ticks,
        "size_lots": o.size_lots,
        "orig_lots": o.orig_lots,
        "filled_lots": o.filled_lots,
        "client_id": o.client_id,
        "tif": o.tif,
        "reduce_only": o.reduce_only,
        "timestamp_ms": o.timestamp_ms,
        "seq": o.seq,
    }


def trigger_dict(t: Trigger) -> dict[str, Any]:
    """A waiting trigger order in the open-order form (``status`` tells them apart)."""
    return {
        "order_id": t.order_id,
        "market_id": t.market_id,
        "account": t.account.pubkey,
        "status": ST_WAITING,
        "is_buy": t.is_buy,
        "kind": t.kind,
        "trigger_price_ticks": t.trigger_price_ticks,
        "price_ticks": t.price_ticks if t.is_limit else 0,
        "size_lots": t.size_lots,
        "client_id": t.client_id,
        "reduce_only": t.reduce_only,
        "timestamp_ms": t.timestamp_ms,
    }


def open_orders(
    st: ExchangeCore, account: bytes, market_id: int | None = None
) -> list[dict[str, Any]]:
    """Resting orders, then waiting trigger orders by id (both count as open orders)."""
    acct = st.accounts.get(account)
    if acct is None:
        return []
    resting = [
        {**order_dict(o), "status": ST_RESTING}
        for o in acct.orders.values()
        if market_id is None or o.market_id == market_id
    ]
    return resting + [trigger_dict(t) for t in account_triggers(acct, market_id)]


def account_summary(st: ExchangeCore, account: bytes) -> dict[str, Any]:
    """Balances, positions with entry, unrealised PnL and margin, and cross-margin totals.

    The one derivation of an account's summary: ``GET /v1/accounts/{address}`` and the
    WebSocket account channel format this dict. Balances with nothing available or held, and
    flat positions without isolated margin, are left out. The cross unit's value and
    maintenance are exactly what the liquidation check sees (pending funding included), and
    ``liquidatable`` is value below maintenance.
    """
    acct = st.accounts.get(account)
    out: dict[str, Any] = {
        "account": account,
        "exists": acct is not None,
        "balances": [],
        "positions": [],
        "open_orders": 0,
        "waiting_triggers": 0,
        "account_value_atoms": 0,
        "maintenance_margin_atoms": 0,
        "free_collateral_atoms": 0,
        "liquidatable": False,
    }
    if acct is None:
        return out
    out["balances"] = [
        {"asset_id": aid, "available_atoms": b.available_atoms, "held_atoms": b.held_atoms}
        for aid, b in sorted(acct.balances.items())
        if b.available_atoms or b.held_atoms
    ]
    out["positions"] = [
        position_summary(st, acct, pos)
        for _, pos in sorted(acct.positions.items())
        if pos.size_lots or pos.isolated_margin_atoms
    ]
    value, maintenance = unit_value_and_mm(st, acct, None)
    out["open_orders"] = open_order_count(acct)
    out["waiting_triggers"] = len(acct.triggers)
    out["account_value_atoms"] = value
    out["maintenance_margin_atoms"] = maintenance
    out["free_collateral_atoms"] = free_collateral(st, acct)
    out["liquidatable"] = value < maintenance
    return out


def position_summary(st: ExchangeCore, acct: Account, pos: Position) -> dict[str, Any]:
    """One position at the current mark: size, entry, PnL, margin, funding, liquidation."""
    mid = pos.market.market_id
    price = st.mstates[mid].mark_price_ticks
    size = pos.size_lots
    notional = abs(size) * price * pos.market.tick_lot_atoms
    return {
        "market_id": mid,
        "size_lots": size,
        # Entry price in ticks, rounded toward zero; entry_value is the exact basis.
        "entry_price_ticks": abs(pos.entry_value) // abs(size) if size else 0,
        "entry_value": pos.entry_value,
        "mark_price_ticks": price,
        "notional_atoms": notional,
        "unrealized_pnl_atoms": unrealized_pnl_atoms(pos, price),
        "realized_pnl_atoms": pos.realized_pnl_atoms,
        "leverage": pos.leverage,
        "isolated": pos.isolated,
        "isolated_margin_atoms": pos.isolated_margin_atoms,
        "initial_margin_atoms": position_im_atoms(pos, price),
        "maintenance_margin_atoms": maintenance_margin_atoms(pos.market, notional),
        "pending_funding_atoms": pending_funding_atoms(st, pos),
        # 0 when no mark price would liquidate it (or it is flat).
        "liquidation_price_ticks": liquidation_price_ticks(st, acct, mid),
    }


def market_info(st: ExchangeCore, market_id: int) -> dict[str, Any] | None:
    market = st.markets.get(market_id)
    if market is None:
        return None
    ms = st.mstates[market_id]
    book = st.books[market_id]
    return {
        "market_id": market_id,
        "symbol": market.symbol,
        "kind": MARKET_KIND_NAMES[market.kind],
        "base_asset_id": market.base_asset_id,
        "quote_asset_id": market.quote_asset_id,
        "lot_base_atoms": market.lot_base_atoms,
        "tick_lot_atoms": market.tick_lot_atoms,
        "min_notional_atoms": market.min_notional_atoms,
        "max_leverage": market.max_leverage,
        "maker_fee_ppm": market.maker_fee_ppm,
        "taker_fee_ppm": market.taker_fee_ppm,
        "oracle_price_ticks": ms.oracle_price_ticks,
        "oracle_time_ms": ms.oracle_time_ms,
        "mark_price_ticks": ms.mark_price_ticks,
        "last_trade_price_ticks": ms.last_trade_price_ticks,
        "last_trade_time_ms": ms.last_trade_time_ms,
        "open_interest_lots": ms.open_interest_lots,
        "volume_lots": ms.volume_lots,
        "best_bid_ticks": book.bids.best_price(),
        "best_ask_ticks": book.asks.best_price(),
    }


def markets(st: ExchangeCore) -> list[dict[str, Any]]:
    return [info for mid in st.markets if (info := market_info(st, mid)) is not None]


def vault_summary(st: ExchangeCore) -> dict[str, Any]:
    """The liquidation vault as its risk policy sees it (liquidation/risk.py).

    ``equity_atoms`` (USDC + unrealised PnL - pending funding), ``maintenance_atoms``,
    ``under_water`` (equity below maintenance: the vault is closed out at the block's end, so
    a committed state shows it only if nothing could act), ``high_water_atoms`` and
    ``loss_limit_equity_atoms`` (the equity below which it de-risks), and per market with a
    position: ``size_lots``, ``entry_value``, ``mark_price_ticks``, ``notional_atoms`` at the
    mark, ``unrealized_pnl_atoms`` and the ``cap_atoms`` the takeover rule applies.
    """
    params = st.parameters
    vault = st.accounts.get(VAULT)
    usdc = vault.balances.get(0) if vault is not None else None
    equity, mm = unit_value_and_mm(st, vault, None) if vault is not None else (0, 0)
    peak = st.vault_peak.amount_atoms
    markets_out: list[dict[str, Any]] = []
    for mid, pos in sorted(vault.positions.items()) if vault is not None else ():
        if not pos.size_lots:
            continue
        mark = st.mstates[mid].mark_price_ticks
        markets_out.append(
            {
                "market_id": mid,
                "size_lots": pos.size_lots,
                "entry_value": pos.entry_value,
                "mark_price_ticks": mark,
                "notional_atoms": abs(pos.size_lots) * mark * pos.market.tick_lot_atoms,
                "unrealized_pnl_atoms": unrealized_pnl_atoms(pos, mark),
                "cap_atoms": params.vault_market_notional_max_atoms,
            }
        )
    limit_ppm = params.vault_loss_limit_ppm
    return {
        "height": st.height,
        "usdc_atoms": usdc.available_atoms if usdc is not None else 0,
        "equity_atoms": equity,
        "maintenance_atoms": mm,
        "under_water": equity < mm,
        "high_water_atoms": peak,
        "loss_limit_ppm": limit_ppm,
        "loss_limit_equity_atoms": -((-peak * (PPM - limit_ppm)) // PPM),
        "markets": markets_out,
    }
