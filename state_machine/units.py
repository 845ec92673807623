"""Refusal messages in the trader's units: decimal prices and sizes, asset and market symbols.

The state machine counts in ticks, lots and atoms; people read "60000.5 USDC" and "0.0125 BTC".
This module turns the integers of one market into exact decimal text with integer arithmetic
only (no floats in the state machine): a tick is ``tick_lot_atoms * 10**base_decimals /
lot_base_atoms`` quote atoms per whole base unit, so a price of ``t`` ticks is the rational
``t * tick_lot_atoms * 10**base_decimals / (lot_base_atoms * 10**quote_decimals)`` quote units,
and a size of ``n`` lots is ``n * lot_base_atoms / 10**base_decimals`` base units. Those
rationals are written as exact decimals when they terminate within ``MAX_PLACES`` digits
(every real market's do) and cut toward zero there otherwise.

Only refusal paths call this (messages are built when an order is refused), so nothing here is
on the matching hot path. Messages are part of a transaction's stored results, so they are
deterministic like everything else the state machine computes.
"""

from __future__ import annotations

from state_machine.genesis import Genesis, Market

MAX_PLACES = 18


def decimal_text(numerator: int, denominator: int) -> str:
    """Exact decimal text of ``numerator / denominator`` (``denominator`` > 0), cut toward
    zero after ``MAX_PLACES`` digits; no exponent, no trailing zeros."""
    sign = "-" if numerator < 0 else ""
    whole, rest = divmod(abs(numerator), denominator)
    digits: list[str] = []
    while rest and len(digits) < MAX_PLACES:
        digit, rest = divmod(rest * 10, denominator)
        digits.append(str(digit))
    return f"{sign}{whole}.{''.join(digits)}" if digits else f"{sign}{whole}"


def atoms_text(genesis: Genesis, asset_id: int, atoms: int) -> str:
    """``atoms`` of an asset as "12.5 USDC" (an asset genesis does not know: "12500000 atoms
    of asset 7")."""
    asset = genesis.asset(asset_id)
    if asset is None:
        return f"{atoms} atoms of asset {asset_id}"
    return f"{decimal_text(atoms, 10**asset.decimals)} {asset.symbol}"


class MarketText:
    """Text of one market's prices, sizes and quote amounts."""

    __slots__ = (
        "base_decimals",
        "base_symbol",
        "genesis",
        "market",
        "quote_decimals",
        "quote_symbol",
    )

    def __init__(self, genesis: Genesis, market: Market) -> None:
        base = genesis.asset(market.base_asset_id)
        quote = genesis.asset(market.quote_asset_id)
        self.genesis = genesis
        self.market = market
        self.base_decimals = 0 if base is None else base.decimals
        self.quote_decimals = 0 if quote is None else quote.decimals
        self.base_symbol = f"asset {market.base_asset_id}" if base is None else base.symbol
        self.quote_symbol = f"asset {market.quote_asset_id}" if quote is None else quote.symbol

    @property
    def symbol(self) -> str:
        return self.market.symbol

    def price(self, price_ticks: int) -> str:
        """A price as a bare decimal in quote units per base unit ("60000.5")."""
        m = self.market
        return decimal_text(
            price_ticks * m.tick_lot_atoms * 10**self.base_decimals,
            m.lot_base_atoms * 10**self.quote_decimals,
        )

    def price_with_unit(self, price_ticks: int) -> str:
        return f"{self.price(price_ticks)} {self.quote_symbol}"

    def size(self, size_lots: int) -> str:
        """A size in base units with its symbol ("0.0125 BTC")."""
        amount = decimal_text(size_lots * self.market.lot_base_atoms, 10**self.base_decimals)
        return f"{amount} {self.base_symbol}"

    def quote(self, atoms: int) -> str:
        """An amount of the quote asset ("12.5 USDC")."""
        return f"{decimal_text(atoms, 10**self.quote_decimals)} {self.quote_symbol}"

    def asset(self, asset_id: int, atoms: int) -> str:
        return atoms_text(self.genesis, asset_id, atoms)
