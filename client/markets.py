"""One market as a node publishes it at ``GET /v1/markets``, with exact tick and lot
arithmetic: a price or size that is not a whole number of ticks or lots is refused here,
before anything is signed."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from client.errors import CliError, OffGridError
from node.api.units import UnitError, format_fraction, parse_decimal


class MarketInfo:
    """One market as the node publishes it, with exact tick and lot arithmetic."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.market_id = int(body["market_id"])
        self.symbol = str(body["symbol"])
        self.kind = str(body["kind"])
        self.tick = parse_decimal(body["tick_size"], "tick_size")
        self.lot = parse_decimal(body["lot_size"], "lot_size")

    def price_to_ticks(self, text: str, what: str = "price") -> int:
        return _whole_units(text, self.tick, what, "tick", body=self.body["tick_size"])

    def size_to_lots(self, text: str, what: str = "size") -> int:
        return _whole_units(text, self.lot, what, "lot", body=self.body["lot_size"])

    def ticks_to_price(self, ticks: int) -> str:
        return format_fraction(ticks * self.tick)

    def lots_to_size(self, lots: int) -> str:
        return format_fraction(lots * self.lot)


def _whole_units(text: str, unit: Fraction, what: str, unit_name: str, body: str) -> int:
    try:
        value = parse_decimal(text, what)
    except UnitError as exc:
        raise CliError(exc.message) from None
    count = value / unit
    if count.denominator != 1:
        raise OffGridError(f"{what} {text} is not a whole number of {unit_name}s ({body})")
    if count.numerator == 0:
        raise CliError(f"{what} must be positive")
    return int(count.numerator)
