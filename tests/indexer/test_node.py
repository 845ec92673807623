"""The indexer inside a node: it backfills the blocks stored before it started, follows new
ones, and the API serves the whole history (more than the in-memory 300 heights), candles,
24-hour statistics and the WebSocket candle channel from it."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import trio
from trio_websocket import open_websocket_url

from node.api.app import build_app
from node.api.history import BACKFILL_HEIGHTS
from node.config import Config, IndexerSettings
from node.node import Node
from tests.indexer.chain import add_trade_blocks
from tests.node.test_api_pieces import ALICE, GENESIS, VALIDATOR
from tests.node.test_api_served import message, opened_node, send, served, until, ws_url

BLOCKS = BACKFILL_HEIGHTS + 40
LOT = Fraction(1, 10_000)  # BTC-PERP's lot in BTC


async def all_pages(http: httpx.AsyncClient, path: str, field: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        body = (await http.get(path, params=params)).json()
        assert body["complete_from_height"] == 1
        items += body[field]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


async def test_the_node_indexes_stored_and_new_blocks_and_serves_all_of_them(
    tmp_path: Path,
) -> None:
    with opened_node(tmp_path) as node:
        await add_trade_blocks(node, BLOCKS)  # before the API and its indexer start: backfill
        app = build_app(node)
        async with served(app) as (base, _), httpx.AsyncClient(base_url=base) as http:
            # Until the database is open the recent in-memory history answers.
            await until(lambda: app.state.api.history.db is not None, "database open")
            alice = ALICE.public_key.hex()
            fills = await all_pages(http, f"/v1/accounts/{alice}/fills", "fills")
            assert [f["height"] for f in fills] == list(range(BLOCKS, 0, -1))
            trades = (await http.get("/v1/markets/BTC-PERP/trades?limit=1000")).json()
            assert len(trades["trades"]) == BLOCKS

            answer = await http.get("/v1/markets/BTC-PERP/candles?interval=1m")
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert (body["market"], body["interval"], body["complete_from_height"]) == (
                "BTC-PERP", "1m", 1,
            )  # fmt: skip
            candles = body["candles"]
            assert sum(c["trades"] for c in candles) == BLOCKS
            assert sum(Fraction(c["volume"]) for c in candles) == BLOCKS * 10 * LOT
            starts = [c["start_ms"] for c in candles]
            assert starts == sorted(starts) and all(s % 60_000 == 0 for s in starts)
            assert set(candles[0]) == {"start_ms", "open", "high", "low", "close", "volume",
                                       "quote_volume", "trades"}  # fmt: skip
            prices = [Fraction(t["price"]) for t in reversed(trades["trades"])]
            assert Fraction(candles[0]["open"]) == prices[0]
            assert Fraction(candles[-1]["close"]) == prices[-1]
            quote = sum(Fraction(t["price"]) * Fraction(t["size"]) for t in trades["trades"])
            assert sum(Fraction(c["quote_volume"]) for c in candles) == quote

            stats = (await http.get("/v1/markets/BTC-PERP/stats")).json()
            assert stats["window_s"] == 86_400 and stats["trades"] == BLOCKS
            assert Fraction(stats["high"]) == max(prices)
            assert Fraction(stats["low"]) == min(prices)
            assert (Fraction(stats["open"]), Fraction(stats["last"])) == (prices[0], prices[-1])
            assert Fraction(stats["volume"]) == BLOCKS * 10 * LOT
            change = (prices[-1] - prices[0]) / prices[0] * 100
            assert abs(Fraction(stats["change_pct"]) - change) <= Fraction(1, 200)
            market = (await http.get("/v1/markets/BTC-PERP")).json()
            assert market["stats_24h"] == stats
            empty = (await http.get("/v1/markets/ETH-PERP/stats")).json()
            assert (empty["trades"], empty["open"], empty["change_pct"]) == (0, None, None)

            # The PnL series adds up the account's fills (realised PnL and fees).
            series = (await http.get(f"/v1/accounts/{alice}/pnl?interval=1h")).json()
            mine = [(f, "taker" if f["taker"] == alice else "maker") for f in fills]
            realized = sum(Fraction(f[f"{s}_realized_pnl"]) for f, s in mine)
            fees = sum(Fraction(f[f"{s}_fee"]) for f, s in mine)
            points = series["points"]
            assert sum(Fraction(p["realized_pnl"]) for p in points) == realized
            assert sum(Fraction(p["fees"]) for p in points) == fees
            assert Fraction(points[-1]["cumulative_net"]) == realized - fees
            assert realized != 0 and fees > 0
            if len(points) > 1:  # the running total counts the buckets before the page
                last = (await http.get(f"/v1/accounts/{alice}/pnl?interval=1h&limit=1")).json()
                assert last["points"] == points[-1:]
            bad = await http.get(f"/v1/accounts/{alice}/pnl?interval=1m")
            assert (bad.status_code, bad.json()["code"]) == (400, "bad_interval")

            for query, code in [
                ("interval=2m", "bad_interval"),
                ("", "bad_interval"),
                ("interval=1m&limit=0", "bad_parameter"),
                ("interval=1m&limit=1001", "bad_parameter"),
                ("interval=1m&from=x", "bad_parameter"),
            ]:
                bad = await http.get(f"/v1/markets/BTC-PERP/candles?{query}")
                assert (bad.status_code, bad.json()["code"]) == (400, code), query
            unknown = await http.get("/v1/markets/NOPE/candles?interval=1m")
            assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_market")

            # New blocks: the candle channel sends the changed candle once indexed.
            async with open_websocket_url(ws_url(base)) as ws:
                await send(ws, op="subscribe", id=5, channel="candles", market="BTC-PERP",
                           interval="1m")  # fmt: skip
                snapshot = await message(ws)
                assert (snapshot["type"], snapshot["seq"]) == ("snapshot", 0)
                assert snapshot["data"]["candles"] == candles[-300:]
                assert snapshot["height"] == BLOCKS
                await add_trade_blocks(node, 1)
                update = await message(ws)
                assert (update["type"], update["seq"], update["height"]) == (
                    "update", 1, BLOCKS + 1,
                )  # fmt: skip
                (changed,) = update["data"]["candles"]
                latest = (await http.get("/v1/markets/BTC-PERP/candles?interval=1m&limit=1"))
                assert [changed] == latest.json()["candles"]
                await send(ws, op="subscribe", id=6, channel="candles", market="BTC-PERP",
                           interval="7m")  # fmt: skip
                refused = await message(ws)
                assert (refused["type"], refused["code"], refused["id"]) == (
                    "error", "bad_interval", 6,
                )  # fmt: skip
            fills = await all_pages(http, f"/v1/accounts/{alice}/fills", "fills")
            assert len(fills) == BLOCKS + 1


async def test_without_a_history_database_candles_are_refused_and_history_is_recent(
    tmp_path: Path,
) -> None:
    config = Config(home=tmp_path, indexer=IndexerSettings(mode="off"))
    app = build_app(Node(config, GENESIS, VALIDATOR))
    async with served(app) as (base, _), httpx.AsyncClient(base_url=base) as http:
        answer = await http.get("/v1/markets/BTC-PERP/candles?interval=1m")
        assert (answer.status_code, answer.json()["code"]) == (404, "history_disabled")
        trades = await http.get("/v1/markets/BTC-PERP/trades")
        assert trades.status_code == 200
    assert not (tmp_path / "data").exists()  # no database file was created
    await trio.lowlevel.checkpoint()


async def test_the_recent_history_follows_blocks_itself_not_through_the_hub(
    tmp_path: Path,
) -> None:
    """The in-memory recent history subscribes to committed blocks directly: without the
    WebSocket hub it still sees every block."""
    with opened_node(tmp_path) as node:
        app = build_app(node)
        node._subscribers.remove(app.state.hub.on_block)  # no WebSocket hub at all
        await add_trade_blocks(node, 2)
        queries = app.state.api.queries
        assert queries.indexed_height == 2
        items, _ = queries.index.market_items(queries.index.trades, 2)
        assert [i.height for i in items] == [1, 2]
