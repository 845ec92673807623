"""The history database: one interface, two engines (SQLite by default, PostgreSQL).

Tables (the same SQL on both engines; only the byte type and the placeholder differ):

* ``progress``: one row, the last indexed height, the height from which every list is complete
  (``first_height``) and the last indexed block's timestamp. It is written in the same
  database transaction as the blocks' rows, which is what makes indexing exactly once: after
  a crash the database holds either all of a batch (and the progress past it) or none of it.
* ``events``: every event of every indexed block, keyed by its position ``(height, idx)``; the
  body is the event's canonical msgpack, exactly as the state machine emitted it.
* ``account_events``: which account list (fills, funding, ledger) each event belongs to.
* ``market_events``: per market, its trades (``fill``) and funding settlements (``funding``).
* ``candles``: OHLCV per market, interval and start, in ticks and lots; the quote volume
  (ticks x lots, which can outgrow 64 bits over a day) is a decimal integer string.
* ``pnl``: per account, interval (1h, 1d) and start, the realised PnL of its fills, the
  trading fees and the funding it paid, in USDC atoms (the PnL series).

Only the indexer writes, from one thread; readers (the API) have their own connection.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.api.history import (
    FILL_KINDS,
    FUNDING_KINDS,
    LEDGER_KINDS,
    VAULT_ADDRESS,
    VAULT_KINDS,
    HistoryIndex,
    event_body,
)
from state_machine.codec import encode

SCHEMA_VERSION = 1
ACCOUNT_LISTS = ("fills", "funding", "ledger")
MARKET_LISTS = ("trades", "funding")
# PnL series intervals by name.
PNL_INTERVALS_MS = {"1h": 3_600_000, "1d": 86_400_000}
# Candle intervals by name; a candle starts at a multiple of its length (Unix ms).
INTERVALS_MS = {
    "1m": 60_000,
    "5m": 300_000,
    "15m": 900_000,
    "1h": 3_600_000,
    "4h": 14_400_000,
    "1d": 86_400_000,
}


class IndexDbError(Exception):
    """The history database cannot be used (wrong schema, unreachable server)."""


def _driver_errors() -> tuple[type[Exception], ...]:
    try:
        import psycopg  # optional: only operators who chose PostgreSQL install it
    except ImportError:
        return (sqlite3.Error, IndexDbError)
    return (sqlite3.Error, psycopg.Error, IndexDbError)


# What a database read may raise when the database, not the request, is at fault.
DB_ERRORS = _driver_errors()


@dataclass(frozen=True, slots=True)
class BlockEvents:
    """One committed block as the indexer sees it."""

    height: int
    timestamp_ms: int
    events: Sequence[Sequence[Any]]


@dataclass(frozen=True, slots=True)
class Progress:
    height: int  # last indexed height (0: none)
    first_height: int  # every list is complete from this height
    timestamp_ms: int  # of the last indexed block


@dataclass(slots=True)
class Candle:
    market_id: int
    interval_ms: int
    start_ms: int
    open_ticks: int
    high_ticks: int
    low_ticks: int
    close_ticks: int
    volume_lots: int
    quote_ticks_lots: int
    trades: int

    def key(self) -> tuple[int, int, int]:
        return (self.market_id, self.interval_ms, self.start_ms)

    def merge(self, later: Candle) -> None:
        """Fold a later part of the same interval into this candle."""
        self.high_ticks = max(self.high_ticks, later.high_ticks)
        self.low_ticks = min(self.low_ticks, later.low_ticks)
        self.close_ticks = later.close_ticks
        self.volume_lots += later.volume_lots
        self.quote_ticks_lots += later.quote_ticks_lots
        self.trades += later.trades


@dataclass(frozen=True, slots=True)
class Row:
    """An event read back: position, block time, kind and its field values."""

    height: int
    idx: int
    timestamp_ms: int
    kind: str
    body: bytes


_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS progress (
        id INTEGER PRIMARY KEY, schema_version INTEGER NOT NULL, height BIGINT NOT NULL,
        first_height BIGINT NOT NULL, timestamp_ms BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS events (
        height BIGINT NOT NULL, idx INTEGER NOT NULL, ts_ms BIGINT NOT NULL, kind TEXT NOT NULL,
        body {blob} NOT NULL, PRIMARY KEY (height, idx))""",
    """CREATE TABLE IF NOT EXISTS account_events (
        account {blob} NOT NULL, list TEXT NOT NULL, height BIGINT NOT NULL,
        idx INTEGER NOT NULL, ts_ms BIGINT NOT NULL, PRIMARY KEY (account, list, height, idx))""",
    """CREATE TABLE IF NOT EXISTS market_events (
        market_id INTEGER NOT NULL, list TEXT NOT NULL, height BIGINT NOT NULL,
        idx INTEGER NOT NULL, ts_ms BIGINT NOT NULL, PRIMARY KEY (market_id, list, height, idx))""",
    """CREATE TABLE IF NOT EXISTS candles (
        market_id INTEGER NOT NULL, interval_ms BIGINT NOT NULL, start_ms BIGINT NOT NULL,
        open_ticks BIGINT NOT NULL, high_ticks BIGINT NOT NULL, low_ticks BIGINT NOT NULL,
        close_ticks BIGINT NOT NULL, volume_lots BIGINT NOT NULL, quote TEXT NOT NULL,
        trades BIGINT NOT NULL, PRIMARY KEY (market_id, interval_ms, start_ms))""",
    """CREATE TABLE IF NOT EXISTS pnl (
        account {blob} NOT NULL, interval_ms BIGINT NOT NULL, start_ms BIGINT NOT NULL,
        realized BIGINT NOT NULL, fees BIGINT NOT NULL, funding_paid BIGINT NOT NULL,
        PRIMARY KEY (account, interval_ms, start_ms))""",
)
_CANDLE_COLUMNS = (
    "market_id, interval_ms, start_ms, open_ticks, high_ticks, low_ticks, close_ticks, "
    "volume_lots, quote, trades"
)


Rows = list[tuple[Any, ...]]


def block_rows(
    block: BlockEvents,
) -> tuple[Rows, Rows, Rows, list[Candle], list[PnlPart]]:
    """The rows one block adds: events, account list entries, market list entries, its
    fills as one-trade candles of every interval and its PnL parts (both merged by the
    caller)."""
    events, accounts, markets, fills, pnl = [], [], [], [], []
    h, ts = block.height, block.timestamp_ms
    for idx, event in enumerate(block.events):
        body = event_body(event)
        if body is None:
            continue
        kind = str(event[0])
        events.append((h, idx, ts, kind, encode(list(event))))
        for account, name in account_lists(kind, body):
            accounts.append((account, name, h, idx, ts))
        market_id = body.get("market_id")
        if isinstance(market_id, int) and kind in ("fill", "funding"):
            markets.append((market_id, "trades" if kind == "fill" else "funding", h, idx, ts))
        if kind == "fill":
            fills.extend(fill_candles(body, ts))
        pnl.extend(pnl_parts(kind, body, ts))
    return events, accounts, markets, fills, pnl


def account_lists(kind: str, body: dict[str, Any]) -> list[tuple[bytes, str]]:
    """Which account lists an event goes to (the rules of the in-memory index)."""
    accounts = HistoryIndex.accounts_of(body)
    if kind in VAULT_KINDS and VAULT_ADDRESS not in accounts:
        accounts.append(VAULT_ADDRESS)
    out = []
    for who in accounts:
        if kind in FILL_KINDS:
            out.append((who, "fills"))
        if kind in FUNDING_KINDS:
            out.append((who, "funding"))
        if kind in LEDGER_KINDS:
            out.append((who, "ledger"))
    return out


def fill_candles(body: dict[str, Any], timestamp_ms: int) -> list[Candle]:
    price, lots = int(body["price_ticks"]), int(body["size_lots"])
    return [
        Candle(
            body["market_id"], length, timestamp_ms - timestamp_ms % length,
            price, price, price, price, lots, price * lots, 1,
        )
        for length in INTERVALS_MS.values()
    ]  # fmt: skip


PnlKey = tuple[bytes, int, int]  # account, interval, start
PnlPart = tuple[PnlKey, int, int, int]  # key, realised, fees, funding paid


def pnl_parts(kind: str, body: dict[str, Any], timestamp_ms: int) -> list[PnlPart]:
    """What an event adds to its accounts' PnL buckets: (key, realised, fees, funding paid)."""
    if kind == "fill":
        sides = [
            (body["taker"], body["taker_realized_pnl_atoms"], body["taker_fee_atoms"], 0),
            (body["maker"], body["maker_realized_pnl_atoms"], body["maker_fee_atoms"], 0),
        ]
    elif kind == "funding_payment":
        sides = [(body["account"], 0, 0, body["amount_atoms"])]
    else:
        return []
    return [
        ((who, length, timestamp_ms - timestamp_ms % length), realized, fee, paid)
        for who, realized, fee, paid in sides
        for length in PNL_INTERVALS_MS.values()
    ]


def sum_pnl(parts: Sequence[PnlPart]) -> dict[PnlKey, list[int]]:
    out: dict[PnlKey, list[int]] = {}
    for key, realized, fee, paid in parts:
        have = out.setdefault(key, [0, 0, 0])
        have[0] += realized
        have[1] += fee
        have[2] += paid
    return out


def merge_candles(parts: Sequence[Candle]) -> dict[tuple[int, int, int], Candle]:
    """Parts in chain order folded per (market, interval, start)."""
    out: dict[tuple[int, int, int], Candle] = {}
    for part in parts:
        have = out.get(part.key())
        if have is None:
            out[part.key()] = Candle(*_candle_tuple(part))
        else:
            have.merge(part)
    return out


def _candle_tuple(c: Candle) -> tuple[int, ...]:
    return (
        c.market_id, c.interval_ms, c.start_ms, c.open_ticks, c.high_ticks, c.low_ticks,
        c.close_ticks, c.volume_lots, c.quote_ticks_lots, c.trades,
    )  # fmt: skip


def _candle_of(row: Sequence[Any]) -> Candle:
    values = list(row)
    values[8] = int(values[8])
    return Candle(*(int(v) for v in values))


class IndexDb:
    """The history database over a DB-API connection; subclasses open one engine.

    SQL is written with ``?`` placeholders; ``_sql`` turns them into the engine's."""

    BLOB = "BLOB"
    PLACEHOLDER = "?"

    def __init__(self) -> None:
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()

    # ---- engine hooks ----------------------------------------------------------------------

    def _writer(self) -> Any:
        raise NotImplementedError

    def _reader(self) -> Any:
        raise NotImplementedError

    @contextmanager
    def _transaction(self, conn: Any) -> Iterator[Any]:
        raise NotImplementedError
        yield

    def close(self) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    # ---- schema ----------------------------------------------------------------------------

    def _sql(self, text: str) -> str:
        return text if self.PLACEHOLDER == "?" else text.replace("?", self.PLACEHOLDER)

    def create_schema(self) -> None:
        conn = self._writer()
        with self._write_lock, self._transaction(conn) as cur:
            for statement in _SCHEMA:
                cur.execute(statement.format(blob=self.BLOB))
            cur.execute(
                "CREATE INDEX IF NOT EXISTS account_events_ts ON account_events "
                "(account, list, ts_ms)"
            )
            cur.execute("SELECT schema_version FROM progress WHERE id = 0")
            row = cur.fetchone()
            if row is None:
                cur.execute(
                    self._sql("INSERT INTO progress VALUES (0, ?, 0, 1, 0)"), (SCHEMA_VERSION,)
                )
            elif int(row[0]) != SCHEMA_VERSION:
                raise IndexDbError(
                    f"history database schema {row[0]}, this build uses {SCHEMA_VERSION}; "
                    "delete the database and let the indexer rebuild it from stored blocks"
                )

    # ---- writing (the indexer) -------------------------------------------------------------

    def progress(self) -> Progress:
        return self._progress(self._reader(), self._read_lock)

    def _progress(self, conn: Any, lock: threading.Lock) -> Progress:
        with lock:
            cur = conn.cursor()
            cur.execute("SELECT height, first_height, timestamp_ms FROM progress WHERE id = 0")
            row = cur.fetchone()
        if row is None:
            raise IndexDbError("history database has no progress row (schema not created)")
        return Progress(int(row[0]), int(row[1]), int(row[2]))

    def write_blocks(self, blocks: Sequence[BlockEvents], first_height: int) -> list[Candle]:
        """Index consecutive blocks following the last indexed height, with the progress, in
        one transaction; ``first_height`` is the new progress's. Returns the candles they
        changed (as they are now stored), oldest first."""
        if not blocks:
            return []
        conn = self._writer()
        with self._write_lock, self._transaction(conn) as cur:
            cur.execute("SELECT height FROM progress WHERE id = 0")
            last = int(cur.fetchone()[0])
            if blocks[0].height <= last:
                raise IndexDbError(f"height {blocks[0].height} is already indexed (at {last})")
            rows: dict[str, list[tuple[Any, ...]]] = {
                "events": [], "account_events": [], "market_events": [],
            }  # fmt: skip
            candle_parts: list[Candle] = []
            pnl: list[PnlPart] = []
            for block in blocks:
                events, accounts, markets, fills, block_pnl = block_rows(block)
                pnl += block_pnl
                rows["events"] += events
                rows["account_events"] += accounts
                rows["market_events"] += markets
                candle_parts.extend(fills)
            # One statement per table and batch: a round trip per block costs PostgreSQL
            # more than the rows themselves.
            for table, table_rows in rows.items():
                self._insert(cur, table, 5, table_rows)
            changed = self._upsert_candles(cur, merge_candles(candle_parts))
            self._add_pnl(cur, sum_pnl(pnl))
            cur.execute(
                self._sql(
                    "UPDATE progress SET height = ?, first_height = ?, timestamp_ms = ? "
                    "WHERE id = 0"
                ),
                (blocks[-1].height, first_height, blocks[-1].timestamp_ms),
            )
        return changed

    def skip_to(self, height: int, first_height: int) -> None:
        """Record that the heights up to ``height`` cannot be indexed (pruned before the
        indexer saw them): lists are complete only from ``first_height``."""
        conn = self._writer()
        with self._write_lock, self._transaction(conn) as cur:
            cur.execute(
                self._sql("UPDATE progress SET height = ?, first_height = ? WHERE id = 0"),
                (height, first_height),
            )

    def _insert(self, cur: Any, table: str, width: int, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            marks = ", ".join("?" * width)
            cur.executemany(self._sql(f"INSERT INTO {table} VALUES ({marks})"), rows)

    def _upsert_candles(self, cur: Any, merged: dict[tuple[int, int, int], Candle]) -> list[Candle]:
        out = []
        for key, part in merged.items():
            cur.execute(
                self._sql(
                    f"SELECT {_CANDLE_COLUMNS} FROM candles "
                    "WHERE market_id = ? AND interval_ms = ? AND start_ms = ?"
                ),
                key,
            )
            row = cur.fetchone()
            candle = part if row is None else _candle_of(row)
            if row is not None:
                candle.merge(part)
            values: list[int | str] = list(_candle_tuple(candle))
            values[8] = str(values[8])
            marks = ", ".join("?" * len(values))
            cur.execute(
                self._sql(
                    f"INSERT INTO candles ({_CANDLE_COLUMNS}) VALUES ({marks}) "
                    "ON CONFLICT (market_id, interval_ms, start_ms) DO UPDATE SET "
                    "high_ticks = excluded.high_ticks, low_ticks = excluded.low_ticks, "
                    "close_ticks = excluded.close_ticks, volume_lots = excluded.volume_lots, "
                    "quote = excluded.quote, trades = excluded.trades"
                ),
                values,
            )
            out.append(candle)
        return out

    def _add_pnl(self, cur: Any, sums: dict[PnlKey, list[int]]) -> None:
        rows = [(*key, *values) for key, values in sums.items()]
        if rows:
            cur.executemany(
                self._sql(
                    "INSERT INTO pnl VALUES (?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (account, interval_ms, start_ms) DO UPDATE SET "
                    "realized = pnl.realized + excluded.realized, "
                    "fees = pnl.fees + excluded.fees, "
                    "funding_paid = pnl.funding_paid + excluded.funding_paid"
                ),
                rows,
            )

    # ---- reading (the API) -----------------------------------------------------------------

    def _read(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        conn = self._reader()
        with self._read_lock:
            cur = conn.cursor()
            cur.execute(self._sql(sql), tuple(args))
            return [tuple(r) for r in cur.fetchall()]

    def account_page(
        self,
        account: bytes,
        name: str,
        from_ms: int,
        to_ms: int,
        before: tuple[int, int] | None,
        limit: int,
    ) -> list[Row]:
        """Up to ``limit`` items of one account list, newest first, strictly older than
        ``before``, with block time in [from_ms, to_ms]."""
        return self._page("account_events", "account", account, name, from_ms, to_ms, before, limit)

    def market_page(
        self,
        market_id: int,
        name: str,
        from_ms: int,
        to_ms: int,
        before: tuple[int, int] | None,
        limit: int,
    ) -> list[Row]:
        return self._page(
            "market_events", "market_id", market_id, name, from_ms, to_ms, before, limit
        )

    def _page(
        self,
        table: str,
        owner_column: str,
        owner: Any,
        name: str,
        from_ms: int,
        to_ms: int,
        before: tuple[int, int] | None,
        limit: int,
    ) -> list[Row]:
        h, i = before if before is not None else (2**62, 0)
        rows = self._read(
            f"SELECT e.height, e.idx, e.ts_ms, e.kind, e.body FROM {table} a "
            "JOIN events e ON e.height = a.height AND e.idx = a.idx "
            f"WHERE a.{owner_column} = ? AND a.list = ? AND a.ts_ms >= ? AND a.ts_ms <= ? "
            "AND (a.height < ? OR (a.height = ? AND a.idx < ?)) "
            "ORDER BY a.height DESC, a.idx DESC LIMIT ?",
            (owner, name, from_ms, to_ms, h, h, i, limit),
        )
        return [Row(int(r[0]), int(r[1]), int(r[2]), str(r[3]), bytes(r[4])) for r in rows]

    def candles(
        self, market_id: int, interval_ms: int, from_ms: int, to_ms: int, limit: int
    ) -> list[Candle]:
        """The newest ``limit`` candles starting in [from_ms, to_ms], oldest first."""
        rows = self._read(
            f"SELECT {_CANDLE_COLUMNS} FROM candles WHERE market_id = ? AND interval_ms = ? "
            "AND start_ms >= ? AND start_ms <= ? ORDER BY start_ms DESC LIMIT ?",
            (market_id, interval_ms, from_ms, to_ms, limit),
        )
        return [_candle_of(r) for r in reversed(rows)]

    def pnl_series(
        self, account: bytes, interval_ms: int, from_ms: int, to_ms: int, limit: int
    ) -> tuple[list[tuple[int, int, int, int]], tuple[int, int, int]]:
        """The newest ``limit`` buckets starting in [from_ms, to_ms], oldest first, as
        (start_ms, realised, fees, funding paid); and the totals of the buckets before them."""
        rows = self._read(
            "SELECT start_ms, realized, fees, funding_paid FROM pnl WHERE account = ? "
            "AND interval_ms = ? AND start_ms >= ? AND start_ms <= ? "
            "ORDER BY start_ms DESC LIMIT ?",
            (account, interval_ms, from_ms, to_ms, limit),
        )
        buckets = [(int(a), int(b), int(c), int(d)) for a, b, c, d in reversed(rows)]
        # Totals before the first bucket served, or up to to_ms when none is (to_ms + 1 could
        # pass the database's 64-bit integers: to_ms defaults to the largest one).
        before_op, bound = ("<", buckets[0][0]) if buckets else ("<=", to_ms)
        before = self._read(
            "SELECT COALESCE(SUM(realized), 0), COALESCE(SUM(fees), 0), "
            "COALESCE(SUM(funding_paid), 0) FROM pnl "
            f"WHERE account = ? AND interval_ms = ? AND start_ms {before_op} ?",
            (account, interval_ms, bound),
        )[0]
        return buckets, (int(before[0]), int(before[1]), int(before[2]))

    def counts(self) -> dict[str, int]:
        """Rows per table (for operators and tests)."""
        out = {}
        for table in ("events", "account_events", "market_events", "candles", "pnl"):
            out[table] = int(self._read(f"SELECT COUNT(*) FROM {table}", ())[0][0])
        return out


class SqliteDb(IndexDb):
    """One file, Python's own sqlite3; WAL so the API reads while the indexer writes, and
    synchronous=FULL so a committed batch survives power loss, not only a crash."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._w = self._connect()
            self._r = self._connect()
        except sqlite3.Error as exc:
            raise IndexDbError(f"cannot open the history database {self.path}: {exc}") from None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def _writer(self) -> Any:
        return self._w

    def _reader(self) -> Any:
        return self._r

    @contextmanager
    def _transaction(self, conn: Any) -> Iterator[Any]:
        cur = conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")

    def close(self) -> None:
        self._w.close()
        self._r.close()

    def describe(self) -> str:
        return f"sqlite:{self.path}"


class PostgresDb(IndexDb):
    """PostgreSQL through psycopg 3 (imported only when configured)."""

    BLOB = "BYTEA"
    PLACEHOLDER = "%s"

    def __init__(self, dsn: str) -> None:
        super().__init__()
        import psycopg  # the optional dependency: only operators who chose PostgreSQL need it

        self._dsn = dsn
        try:
            self._w = psycopg.connect(dsn, autocommit=True)
            self._r = psycopg.connect(dsn, autocommit=True)
        except psycopg.Error as exc:
            raise IndexDbError(f"cannot connect to the history database: {exc}") from None

    def _writer(self) -> Any:
        return self._w

    def _reader(self) -> Any:
        return self._r

    @contextmanager
    def _transaction(self, conn: Any) -> Iterator[Any]:
        with conn.transaction(), conn.cursor() as cur:
            yield cur

    def close(self) -> None:
        self._w.close()
        self._r.close()

    def describe(self) -> str:
        return "postgresql"


def open_db(backend: str, sqlite_path: Path, postgresql_dsn: str) -> IndexDb:
    """The configured database, its schema created if new."""
    db: IndexDb = PostgresDb(postgresql_dsn) if backend == "postgresql" else SqliteDb(sqlite_path)
    try:
        db.create_schema()
    except BaseException:
        db.close()
        raise
    return db
