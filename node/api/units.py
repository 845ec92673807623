"""Exact conversion between decimal strings at the edge and integer ticks, lots and atoms.

The state machine counts price in ticks and size in lots (see ``state_machine.genesis``). A
market's tick, in quote units per base unit, is
``tick_lot_atoms * 10**base_decimals / (lot_base_atoms * 10**quote_decimals)`` and its lot, in
base units, is ``lot_base_atoms / 10**base_decimals``. Conversions use exact rationals: a
decimal that is not a whole number of ticks or lots is rejected, never rounded.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction

from state_machine.genesis import Asset, Genesis, Market

DECIMAL_RE = re.compile(r"^(0|[1-9][0-9]{0,29})(\.[0-9]{1,30})?$")
MAX_DECIMAL_CHARS = 64


class UnitError(ValueError):
    """A decimal string that cannot be converted exactly; ``code`` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_decimal(text: object, field: str) -> Fraction:
    """A non-negative decimal string (no exponent, no sign, no spaces) as an exact Fraction."""
    if not isinstance(text, str):
        raise UnitError("bad_decimal", f'{field}: expected a decimal string like "1.25"')
    if len(text) > MAX_DECIMAL_CHARS or not DECIMAL_RE.match(text):
        raise UnitError("bad_decimal", f"{field}: {text[:40]!r} is not a plain decimal number")
    whole, _, frac = text.partition(".")
    return Fraction(int(whole + frac), 10 ** len(frac))


def format_fraction(value: Fraction, max_places: int = 18) -> str:
    """Exact decimal text of ``value`` if it terminates within ``max_places``; else rounded
    toward zero at ``max_places``."""
    sign = "-" if value < 0 else ""
    value = abs(value)
    whole = value.numerator // value.denominator
    rest = value - whole
    digits = ""
    for _ in range(max_places):
        if rest == 0:
            break
        rest *= 10
        d = rest.numerator // rest.denominator
        digits += str(d)
        rest -= d
    return f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"


class AssetTable:
    """Assets by id (genesis's and the listed ones): what MarketUnits needs of a genesis."""

    __slots__ = ("by_id",)

    def __init__(self, assets: Sequence[Asset]) -> None:
        self.by_id = {a.asset_id: a for a in assets}

    def asset(self, asset_id: int) -> Asset | None:
        return self.by_id.get(asset_id)


class MarketUnits:
    """Tick and lot arithmetic of one market."""

    __slots__ = ("base_decimals", "lot", "market", "quote_decimals", "tick")

    def __init__(self, genesis: Genesis | AssetTable, market: Market) -> None:
        base = genesis.asset(market.base_asset_id)
        quote = genesis.asset(market.quote_asset_id)
        assert base is not None and quote is not None, "validated genesis has both assets"
        self.market = market
        self.base_decimals = base.decimals
        self.quote_decimals = quote.decimals
        self.tick = Fraction(
            market.tick_lot_atoms * 10**base.decimals,
            market.lot_base_atoms * 10**quote.decimals,
        )
        self.lot = Fraction(market.lot_base_atoms, 10**base.decimals)

    def price_to_ticks(self, text: object, field: str = "price") -> int:
        value = parse_decimal(text, field)
        ticks = value / self.tick
        if ticks.denominator != 1:
            raise UnitError(
                "tick_size", f"{field}: {text} is not a multiple of the tick {self.tick_text()}"
            )
        if ticks.numerator > self.market.max_price_ticks:
            raise UnitError("price_too_high", f"{field}: {text} is above the market maximum")
        return ticks.numerator

    def size_to_lots(self, text: object, field: str = "size") -> int:
        value = parse_decimal(text, field)
        lots = value / self.lot
        if lots.denominator != 1:
            raise UnitError(
                "lot_size", f"{field}: {text} is not a multiple of the lot {self.lot_text()}"
            )
        if lots.numerator > self.market.max_order_lots:
            raise UnitError("size_too_large", f"{field}: {text} is above the market maximum")
        return lots.numerator

    def ticks_to_price(self, ticks: int) -> str:
        return format_fraction(ticks * self.tick)

    def lots_to_size(self, lots: int) -> str:
        return format_fraction(lots * self.lot)

    def tick_text(self) -> str:
        return format_fraction(self.tick)

    def lot_text(self) -> str:
        return format_fraction(self.lot)


def atoms_to_decimal(atoms: int, decimals: int) -> str:
    return format_fraction(Fraction(atoms, 10**decimals))


def decimal_to_atoms(text: object, decimals: int, field: str = "amount") -> int:
    value = parse_decimal(text, field) * 10**decimals
    if value.denominator != 1:
        raise UnitError("too_many_decimals", f"{field}: at most {decimals} decimal places")
    atoms: int = value.numerator
    return atoms
