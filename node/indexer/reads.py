"""The API's history answers from the history database: account lists, market trades and
funding, candles and 24-hour statistics. Same shapes as the in-memory answers
(``node.api.queries``), with ``complete_from_height`` the indexer's ``first_height``.

Database reads run in a worker thread. Before reading, a request waits (briefly) until the
in-process indexer has indexed the height the node had committed when the request arrived,
so a client that saw its transaction commit then finds it in its history.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from node.api.history import HistoryItem, parse_cursor
from node.api.queries import Queries, QueryError
from node.api.units import format_fraction
from node.indexer.db import DB_ERRORS, INTERVALS_MS, PNL_INTERVALS_MS, Candle, IndexDb, Row
from node.logs import fields, get_logger
from state_machine.codec import decode_raw
from state_machine.results import EVENT_FIELDS

if TYPE_CHECKING:
    from node.indexer.indexer import IndexerService

log = get_logger("indexer")

STATS_WINDOW_MS = 86_400_000
CANDLES_PER_WINDOW_MAX = STATS_WINDOW_MS // INTERVALS_MS["1m"]
INDEX_WAIT_S = 2.0
WS_CANDLES_MAX = 300

T = TypeVar("T")


def interval_ms(text: str | None) -> int:
    length = INTERVALS_MS.get(text or "")
    if length is None:
        raise QueryError(
            400, "bad_interval", f"interval must be one of {', '.join(INTERVALS_MS)}"
        )
    return length


def interval_name(length_ms: int) -> str:
    return next(name for name, ms in INTERVALS_MS.items() if ms == length_ms)


def change_pct(open_ticks: int, last_ticks: int) -> str:
    """Percentage change, rounded half away from zero to 2 decimals."""
    pct = Fraction(last_ticks - open_ticks, open_ticks) * 100
    sign = -1 if pct < 0 else 1
    hundredths = math.floor(abs(pct) * 100 + Fraction(1, 2))
    return format_fraction(Fraction(sign * hundredths, 100))


class HistoryReads:
    def __init__(self, queries: Queries) -> None:
        self.queries = queries
        self.db: IndexDb | None = None
        self.service: IndexerService | None = None

    # ---- plumbing ------------------------------------------------------------------------

    async def _run(self, read: Callable[[IndexDb], T]) -> T:
        db = self.db
        if db is None:
            raise QueryError(503, "history_unavailable", "the history database is not open yet")
        service = self.service
        if service is not None and self.queries.node.chain is not None:
            await service.wait_indexed(self.queries.committed_height(), INDEX_WAIT_S)
        try:
            return await trio.to_thread.run_sync(read, db)
        except DB_ERRORS as exc:
            log.warning("history_read_failed", extra=fields(error=str(exc)[:200]))
            raise QueryError(
                503, "history_unavailable", "the history database did not answer; retry later"
            ) from None

    def item(self, row: Row) -> HistoryItem:
        event = decode_raw(row.body)
        names = EVENT_FIELDS[row.kind]
        body = dict(zip(names, event[1:], strict=True))
        return HistoryItem(row.height, row.idx, row.timestamp_ms, row.kind, body)

    def _page(
        self, rows: list[Row], limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page from ``limit + 1`` rows: the next cursor only when more items follow."""
        items = [self.item(r) for r in rows[:limit]]
        next_cursor = items[-1].cursor() if len(rows) > limit else None
        return [self.queries.event_json(i) for i in items], next_cursor

    # ---- accounts and markets ----------------------------------------------------------------

    async def history(
        self, text: str, kind: str, from_ms: int, to_ms: int, cursor: str | None, limit: int
    ) -> dict[str, Any]:
        who = self.queries.lookup_address(text)
        before = _cursor(cursor)

        def read(db: IndexDb) -> tuple[list[Row], int]:
            rows = db.account_page(who, kind, from_ms, to_ms, before, limit + 1)
            return rows, db.progress().first_height

        rows, first = await self._run(read)
        items, next_cursor = self._page(rows, limit)
        return {
            "address": who.hex(),
            kind: items,
            "next_cursor": next_cursor,
            "complete_from_height": first,
        }

    async def funding(
        self, text: str, from_ms: int, to_ms: int, cursor: str | None, limit: int
    ) -> dict[str, Any]:
        market = self.queries.lookup_market(text)
        before = _cursor(cursor)

        def read(db: IndexDb) -> tuple[list[Row], int]:
            rows = db.market_page(market.market_id, "funding", from_ms, to_ms, before, limit + 1)
            return rows, db.progress().first_height

        rows, first = await self._run(read)
        items, next_cursor = self._page(rows, limit)
        return {
            "market": market.symbol,
            "funding": items,
            "next_cursor": next_cursor,
            "complete_from_height": first,
        }

    async def trades(self, text: str, limit: int) -> dict[str, Any]:
        market = self.queries.lookup_market(text)

        def read(db: IndexDb) -> tuple[list[Row], int]:
            rows = db.market_page(market.market_id, "trades", 0, 2**62, None, limit)
            return rows, db.progress().first_height

        rows, first = await self._run(read)
        return {
            "market": market.symbol,
            "trades": [self.queries.trade_json(self.item(r)) for r in rows],
            "complete_from_height": first,
        }

    # ---- candles and statistics ----------------------------------------------------------

    def candle_json(self, candle: Candle) -> dict[str, Any]:
        units = self.queries.units[candle.market_id]
        quote = candle.quote_ticks_lots * units.tick * units.lot
        return {
            "start_ms": candle.start_ms,
            "open": units.ticks_to_price(candle.open_ticks),
            "high": units.ticks_to_price(candle.high_ticks),
            "low": units.ticks_to_price(candle.low_ticks),
            "close": units.ticks_to_price(candle.close_ticks),
            "volume": units.lots_to_size(candle.volume_lots),
            "quote_volume": format_fraction(quote),
            "trades": candle.trades,
        }

    async def candles(
        self, text: str, interval: str | None, from_ms: int, to_ms: int, limit: int
    ) -> dict[str, Any]:
        market = self.queries.lookup_market(text)
        length = interval_ms(interval)

        def read(db: IndexDb) -> tuple[list[Candle], int]:
            found = db.candles(market.market_id, length, from_ms, to_ms, limit)
            return found, db.progress().first_height

        found, first = await self._run(read)
        return {
            "market": market.symbol,
            "interval": interval_name(length),
            "candles": [self.candle_json(c) for c in found],
            "complete_from_height": first,
        }

    def recent_candles(self, market_id: int, length_ms: int) -> tuple[list[dict[str, Any]], int]:
        """The last candles of a market (the WebSocket snapshot; blocking) and the height
        they reflect."""
        db = self.db
        if db is None:
            raise QueryError(503, "history_unavailable", "the history database is not open yet")
        height = db.progress().height
        found = db.candles(market_id, length_ms, 0, 2**62, WS_CANDLES_MAX)
        return [self.candle_json(c) for c in found], height

    async def pnl(
        self, text: str, interval: str | None, from_ms: int, to_ms: int, limit: int
    ) -> dict[str, Any]:
        """The account's PnL series: per bucket the realised PnL of its fills, its trading
        fees and its funding (positive: received), their net and the running total of the
        net since the account's first indexed bucket."""
        who = self.queries.lookup_address(text)
        length = PNL_INTERVALS_MS.get(interval or "")
        if length is None:
            raise QueryError(
                400, "bad_interval", f"interval must be one of {', '.join(PNL_INTERVALS_MS)}"
            )

        def read(db: IndexDb) -> tuple[Any, Any, int]:
            buckets, before = db.pnl_series(who, length, from_ms, to_ms, limit)
            return buckets, before, db.progress().first_height

        buckets, before, first = await self._run(read)
        usdc = self.queries.signed_usdc
        total = before[0] - before[1] - before[2]
        points = []
        for start_ms, realized, fees, paid in buckets:
            net = realized - fees - paid
            total += net
            points.append({
                "start_ms": start_ms, "realized_pnl": usdc(realized), "fees": usdc(fees),
                "funding": usdc(-paid), "net": usdc(net), "cumulative_net": usdc(total),
            })  # fmt: skip
        return {
            "address": who.hex(),
            "interval": interval,
            "points": points,
            "complete_from_height": first,
        }

    async def stats(self, text: str) -> dict[str, Any]:
        market = self.queries.lookup_market(text)

        def read(db: IndexDb) -> list[Candle]:
            now_ms = db.progress().timestamp_ms
            since_ms = now_ms - STATS_WINDOW_MS + 1
            minute = INTERVALS_MS["1m"]
            return db.candles(
                market.market_id, minute, since_ms - since_ms % minute, now_ms,
                CANDLES_PER_WINDOW_MAX + 1,
            )  # fmt: skip

        found = await self._run(read)
        return self.stats_json(market.symbol, market.market_id, found)

    def stats_json(self, symbol: str, market_id: int, found: list[Candle]) -> dict[str, Any]:
        units = self.queries.units[market_id]
        out: dict[str, Any] = {"market": symbol, "window_s": STATS_WINDOW_MS // 1000}
        volume = sum(c.volume_lots for c in found)
        quote = sum(c.quote_ticks_lots for c in found) * units.tick * units.lot
        if found:
            first, last = found[0], found[-1]
            out["open"] = units.ticks_to_price(first.open_ticks)
            out["high"] = units.ticks_to_price(max(c.high_ticks for c in found))
            out["low"] = units.ticks_to_price(min(c.low_ticks for c in found))
            out["last"] = units.ticks_to_price(last.close_ticks)
        else:
            out.update(open=None, high=None, low=None, last=None)
        out["volume"] = units.lots_to_size(volume)
        out["quote_volume"] = format_fraction(Fraction(quote))
        out["trades"] = sum(c.trades for c in found)
        out["change_pct"] = (
            change_pct(found[0].open_ticks, found[-1].close_ticks)
            if found and found[0].open_ticks
            else None
        )
        return out


def _cursor(text: str | None) -> tuple[int, int] | None:
    try:
        return parse_cursor(text)
    except ValueError as exc:
        raise QueryError(400, "bad_cursor", str(exc)) from None
