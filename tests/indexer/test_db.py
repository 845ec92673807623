"""The history database, on SQLite and on a real PostgreSQL server: rows, pages, candles,
the progress record, and the history routes answering exactly as the in-memory history."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from node.api.app import build_app
from node.api.server import serve_api
from node.config import Config
from node.indexer.db import BlockEvents, IndexDb, IndexDbError
from node.indexer.reads import change_pct
from node.node import Node
from tests.node.test_api_pieces import (
    ALICE,
    BOB,
    GENESIS,
    HISTORY_HEIGHTS,
    VALIDATOR,
    history_events,
    local_server_config,
)
from tests.node.test_api_served import opened_node, served, until

MINUTE_MS = 60_000


def fill(price_ticks: int, lots: int) -> tuple[Any, ...]:
    return ("fill", 2, price_ticks, lots, True, 1, 2, ALICE.public_key, BOB.public_key,
            0, 0, 0, 0)  # fmt: skip


def test_progress_and_rows_are_written_together_and_a_height_only_once(index_db: IndexDb) -> None:
    assert index_db.progress().height == 0
    index_db.write_blocks([BlockEvents(1, 1000, history_events(1))], first_height=1)
    progress = index_db.progress()
    assert (progress.height, progress.first_height, progress.timestamp_ms) == (1, 1, 1000)
    assert index_db.counts() == {
        "events": 5, "account_events": 8, "market_events": 2, "candles": 6, "pnl": 4,
    }  # fmt: skip
    with pytest.raises(IndexDbError, match="already indexed"):
        index_db.write_blocks([BlockEvents(1, 1000, history_events(1))], first_height=1)
    # The refused batch changed nothing.
    assert index_db.counts()["events"] == 5 and index_db.progress().height == 1


def test_pages_are_newest_first_and_strictly_before_the_cursor(index_db: IndexDb) -> None:
    blocks = [BlockEvents(h, h * 1000, history_events(h)) for h in HISTORY_HEIGHTS]
    index_db.write_blocks(blocks, first_height=1)
    alice = ALICE.public_key
    rows = index_db.account_page(alice, "ledger", 0, 10**12, None, 100)
    assert len(rows) == 15
    assert [(r.height, r.idx) for r in rows[:3]] == [(5, 2), (5, 1), (5, 0)]
    rows = index_db.account_page(alice, "ledger", 0, 10**12, (5, 1), 2)
    assert [(r.height, r.idx, r.kind) for r in rows] == [(5, 0, "fill"), (4, 2, "transfer")]
    rows = index_db.market_page(2, "funding", 2000, 4000, None, 10)
    assert [r.height for r in rows] == [4, 3, 2]


def test_candles_fold_fills_across_blocks_and_batches(index_db: IndexDb) -> None:
    start = 1_795_310_580_000  # a whole minute
    index_db.write_blocks(
        [
            BlockEvents(1, start + 1_000, [fill(600, 3), fill(610, 1)]),
            BlockEvents(2, start + 2_000, [fill(590, 2)]),
        ],
        first_height=1,
    )
    changed = index_db.write_blocks(
        [BlockEvents(3, start + 59_999, [fill(605, 4)]), BlockEvents(4, start + MINUTE_MS, [])],
        first_height=1,
    )
    minute = [c for c in changed if c.interval_ms == MINUTE_MS]
    assert len(minute) == 1 and len(changed) == 6  # one candle of each interval changed
    (c,) = index_db.candles(2, MINUTE_MS, 0, 2**62, 10)
    assert c == minute[0]
    assert (c.start_ms, c.open_ticks, c.high_ticks, c.low_ticks, c.close_ticks) == (
        start, 600, 610, 590, 605,
    )  # fmt: skip
    quote = 600 * 3 + 610 + 590 * 2 + 605 * 4
    assert (c.volume_lots, c.quote_ticks_lots, c.trades) == (10, quote, 4)
    index_db.write_blocks([BlockEvents(5, start + MINUTE_MS + 5, [fill(700, 1)])], first_height=1)
    later = index_db.candles(2, MINUTE_MS, 0, 2**62, 10)
    assert [x.start_ms for x in later] == [start, start + MINUTE_MS]  # oldest first
    assert [x.start_ms for x in index_db.candles(2, MINUTE_MS, 0, 2**62, 1)] == [start + MINUTE_MS]


def test_change_pct_rounds_half_away_from_zero() -> None:
    assert change_pct(59_000, 60_000) == "1.69"
    assert change_pct(60_000, 59_000) == "-1.67"
    assert change_pct(200, 201) == "0.5"
    assert change_pct(100, 100) == "0"


# ---- the routes: the database answers exactly as the in-memory history ---------------------


def history_queries(alice: str) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = [("/v1/markets/BTC-PERP/trades", {"limit": 3})]
    paths = [
        "/v1/markets/BTC-PERP/funding",
        f"/v1/accounts/{alice}/fills",
        f"/v1/accounts/{alice}/funding",
        f"/v1/accounts/{alice}/ledger",
        f"/v1/accounts/{BOB.public_key.hex()}/ledger",
    ]
    for path in paths:
        out += [
            (path, {}),
            (path, {"limit": 2}),
            (path, {"limit": 2, "cursor": "4.2"}),
            (path, {"from": 2000, "to": 4000, "limit": 1}),
            (path, {"cursor": "1.0"}),
        ]
    return out


async def test_history_routes_from_the_database_answer_as_the_memory_history(
    tmp_path: Path, db_settings: dict[str, str], index_db: IndexDb
) -> None:
    memory_app = build_app(Node(Config(home=tmp_path / "m"), GENESIS, VALIDATOR))
    db_app = build_app(Node(Config(home=tmp_path / "d"), GENESIS, VALIDATOR))
    for height in HISTORY_HEIGHTS:
        memory_app.state.api.queries.index.add_block(height, height * 1000, history_events(height))
    blocks = [BlockEvents(h, h * 1000, history_events(h)) for h in HISTORY_HEIGHTS]
    index_db.write_blocks(blocks, first_height=1)
    db_app.state.api.history.db = index_db
    async with trio.open_nursery() as nursery:
        memory_base = (await nursery.start(serve_api, memory_app, local_server_config()))[0]
        db_base = (await nursery.start(serve_api, db_app, local_server_config()))[0]
        async with httpx.AsyncClient() as http:
            for path, params in history_queries(ALICE.public_key.hex()):
                want = await http.get(memory_base + path, params=params)
                got = await http.get(db_base + path, params=params)
                assert want.status_code == got.status_code == 200, (path, got.text)
                assert got.json() == want.json(), (path, params)
                assert got.json()[next(iter(got.json().keys() - {
                    "market", "address", "next_cursor", "complete_from_height"}))] or \
                    params.get("cursor") == "1.0", (path, params)  # fmt: skip
            bad = await http.get(db_base + "/v1/markets/BTC-PERP/funding?cursor=x")
            assert (bad.status_code, bad.json()["code"]) == (400, "bad_cursor")
        nursery.cancel_scope.cancel()
    assert json.dumps(db_settings)  # the backend under test is in the test id


def test_pnl_buckets_sum_fills_and_funding_and_carry_the_total_before_a_page(
    index_db: IndexDb,
) -> None:
    hour = 3_600_000
    alice = ALICE.public_key
    fill_event = ("fill", 2, 600, 1, True, 1, 2, alice, BOB.public_key, 30, 10, 500, -500)
    index_db.write_blocks(
        [
            BlockEvents(1, 5 * hour + 1, [fill_event, ("funding_payment", alice, 2, 7)]),
            BlockEvents(2, 5 * hour + 2, [fill_event]),
            BlockEvents(3, 6 * hour, [("funding_payment", alice, 2, -4)]),
        ],
        first_height=1,
    )
    buckets, before = index_db.pnl_series(alice, hour, 0, 2**62, 10)
    assert buckets == [(5 * hour, 1000, 60, 7), (6 * hour, 0, 0, -4)] and before == (0, 0, 0)
    buckets, before = index_db.pnl_series(alice, hour, 0, 2**62, 1)
    assert buckets == [(6 * hour, 0, 0, -4)] and before == (1000, 60, 7)
    maker, _ = index_db.pnl_series(BOB.public_key, hour, 0, 2**62, 10)
    assert maker == [(5 * hour, -1000, 20, 0)]
    # The route's default upper bound is the largest 64-bit integer; an account with no bucket
    # in the range must still get an answer (the totals before it), not a database error.
    top = 2**63 - 1
    assert index_db.pnl_series(b"\x09" * 32, hour, 0, top, 10) == ([], (0, 0, 0))
    assert index_db.pnl_series(alice, hour, 7 * hour, top, 10) == ([], (1000, 60, 3))


async def test_a_database_that_fails_a_read_is_a_503_and_the_market_answer_stays(
    tmp_path: Path,
) -> None:
    with opened_node(tmp_path) as node:
        app = build_app(node)
        history = app.state.api.history
        async with served(app) as (base, _), httpx.AsyncClient(base_url=base) as http:
            await until(lambda: history.db is not None, "database open")
            history.db._r.close()  # the reader connection is gone: reads fail in the driver
            for path in ("/v1/markets/BTC-PERP/candles?interval=1m",
                         f"/v1/accounts/{ALICE.public_key.hex()}/fills"):  # fmt: skip
                answer = await http.get(path)
                assert (answer.status_code, answer.json()["code"]) == (503, "history_unavailable")
            market = await http.get("/v1/markets/BTC-PERP")
            assert market.status_code == 200, market.text
            assert "stats_24h" not in market.json()
