"""Price records: a market's state (key 0x04: oracle, mark, last trade, funding accumulators)
and the validators' oracle submissions (key 0x05)."""

from __future__ import annotations

from typing import Any

from state_machine.genesis import Market

P_MARKET = 0x04
P_ORACLE = 0x05


def _u32(x: int) -> bytes:
    return x.to_bytes(4, "big")


class MarketState:
    __slots__ = (
        "basis_ema_ticks",
        "dirty",
        "funding_dust_scaled",
        "funding_index",
        "funding_rate_ppb",
        "last_trade_price_ticks",
        "last_trade_time_ms",
        "mark_price_ticks",
        "mark_time_ms",
        "market",
        "next_funding_ms",
        "open_interest_lots",
        "oracle_price_ticks",
        "oracle_time_ms",
        "premium_samples",
        "premium_sum_ppb",
        "volume_lots",
    )

    def __init__(self, market: Market) -> None:
        self.market = market
        self.oracle_price_ticks = market.initial_price_ticks
        self.oracle_time_ms = 0
        # Price used for margin; equals the oracle until the risk engine computes a mark.
        self.mark_price_ticks = market.initial_price_ticks
        self.last_trade_price_ticks = 0
        self.last_trade_time_ms = 0
        self.open_interest_lots = 0
        self.volume_lots = 0
        # Risk engine (perps): EMA of book mid minus oracle, funding accumulators.
        self.basis_ema_ticks = 0
        self.mark_time_ms = 0
        self.funding_index = 0  # cumulative sum of interval rate (ppb) x oracle price (ticks)
        self.next_funding_ms = 0
        self.premium_sum_ppb = 0
        self.premium_samples = 0
        self.funding_dust_scaled = 0  # rounding surplus of settled funding, atoms x 1e9
        self.funding_rate_ppb = 0  # the last interval's rate
        self.dirty = False

    def state_key(self) -> bytes:
        return b"\x04" + _u32(self.market.market_id)

    def state_obj(self) -> list[Any] | None:
        return [
            self.oracle_price_ticks,
            self.oracle_time_ms,
            self.mark_price_ticks,
            self.last_trade_price_ticks,
            self.last_trade_time_ms,
            self.open_interest_lots,
            self.volume_lots,
            self.basis_ema_ticks,
            self.mark_time_ms,
            self.funding_index,
            self.next_funding_ms,
            self.premium_sum_ppb,
            self.premium_samples,
            self.funding_dust_scaled,
            self.funding_rate_ppb,
        ]

    def restore(self, v: list[Any]) -> None:
        """The inverse of :meth:`state_obj`."""
        (
            self.oracle_price_ticks,
            self.oracle_time_ms,
            self.mark_price_ticks,
            self.last_trade_price_ticks,
            self.last_trade_time_ms,
            self.open_interest_lots,
            self.volume_lots,
            self.basis_ema_ticks,
            self.mark_time_ms,
            self.funding_index,
            self.next_funding_ms,
            self.premium_sum_ppb,
            self.premium_samples,
            self.funding_dust_scaled,
            self.funding_rate_ppb,
        ) = v

    def reference_price(self) -> int:
        """The price orders are banded around: the oracle, else the last trade, else 0."""
        return self.oracle_price_ticks or self.last_trade_price_ticks


class OracleSubmission:
    __slots__ = ("dirty", "market_id", "price_ticks", "timestamp_ms", "validator")

    def __init__(self, market_id: int, validator: bytes, price_ticks: int, ts: int) -> None:
        self.market_id = market_id
        self.validator = validator
        self.price_ticks = price_ticks
        self.timestamp_ms = ts
        self.dirty = False

    def state_key(self) -> bytes:
        return b"\x05" + _u32(self.market_id) + self.validator

    def state_obj(self) -> list[Any] | None:
        return [self.price_ticks, self.timestamp_ms]

    @classmethod
    def from_state(cls, key: bytes, v: list[Any]) -> OracleSubmission:
        """The inverse of :meth:`state_key` and :meth:`state_obj`."""
        return cls(int.from_bytes(key[1:5], "big"), key[5:37], v[0], v[1])
