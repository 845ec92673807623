"""Perpetual position records (key 0x02: account, market)."""

from __future__ import annotations

from typing import Any

from state_machine.genesis import Market

P_POSITION = 0x02


def _u32(x: int) -> bytes:
    return x.to_bytes(4, "big")


class Position:
    """An account's record in one perp market: position, leverage, margin mode.

    ``entry_value`` is the signed cost basis in tick-lots (sum of price_ticks * lots, positive
    for a long): exact, so unrealised PnL is ``(price * size - entry_value) * tick_lot_atoms``.
    ``buy_lots``/``sell_lots`` are the open non-reduce-only order sizes (derived from the orders,
    not stored) used by the initial-margin rule.
    """

    __slots__ = (
        "buy_lots",
        "dirty",
        "entry_value",
        "funding_index",
        "isolated",
        "isolated_margin_atoms",
        "key",
        "leverage",
        "liquidation_cooldown_ms",
        "market",
        "owner",
        "realized_pnl_atoms",
        "sell_lots",
        "size_lots",
    )

    def __init__(self, owner: bytes, market: Market, leverage: int) -> None:
        self.owner = owner
        self.market = market
        self.size_lots = 0
        self.entry_value = 0
        self.realized_pnl_atoms = 0
        self.leverage = leverage
        self.isolated = False
        self.isolated_margin_atoms = 0
        self.funding_index = 0
        self.liquidation_cooldown_ms = 0  # no partial liquidation before this block time
        self.buy_lots = 0
        self.sell_lots = 0
        self.dirty = False
        self.key = b"\x02" + owner + _u32(market.market_id)  # the state key (fixed for life)

    def state_key(self) -> bytes:
        return self.key

    def state_obj(self) -> list[Any] | None:
        if (
            self.size_lots == 0
            and self.entry_value == 0
            and self.realized_pnl_atoms == 0
            and self.leverage == default_leverage(self.market)
            and not self.isolated
            and self.isolated_margin_atoms == 0
            and self.liquidation_cooldown_ms == 0
        ):
            return None
        return [
            self.size_lots,
            self.entry_value,
            self.realized_pnl_atoms,
            self.leverage,
            self.isolated,
            self.isolated_margin_atoms,
            self.funding_index,
            self.liquidation_cooldown_ms,
        ]

    def restore(self, v: list[Any]) -> None:
        """The inverse of :meth:`state_obj`."""
        (
            self.size_lots,
            self.entry_value,
            self.realized_pnl_atoms,
            self.leverage,
            self.isolated,
            self.isolated_margin_atoms,
            self.funding_index,
            self.liquidation_cooldown_ms,
        ) = v


def default_leverage(market: Market) -> int:
    """Leverage of an account that never set one: 10x, or the market's maximum if lower."""
    return min(10, market.max_leverage)
