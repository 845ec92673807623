"""``perpbft indexer``: the history indexer as its own process, reading a node's blocks.

It opens the node's data dir read-only (LMDB readers beside the running node, as ``perpbft
snapshot export`` does) and writes the history database the node's ``[indexer]`` section
names; set ``mode = "external"`` there so the node serves history from that database without
indexing itself. ``--data``, ``--sqlite`` and ``--postgresql`` override the home's settings
(to index a copy of a data dir, or into another database). It runs until stopped (SIGINT or
SIGTERM), looking for new blocks every ``--poll-ms``; ``--once`` stops when it has caught up.
A kill -9 at any point loses and duplicates nothing (see ``node.indexer.indexer``).

Exit codes: 0 done (``--once``) or stopped; 2 bad usage (no store, bad database settings).
"""

from __future__ import annotations

import argparse
import json
import signal
import time
from pathlib import Path
from typing import Any

import trio

from cli.errors import EXIT_OK, CliError
from node.config import HomeError, load_config, resolve_home
from node.indexer.db import IndexDb, IndexDbError, open_db
from node.indexer.indexer import Indexer, IndexerService
from node.indexer.innode import configured_db
from node.indexer.source import DataDirSource, SourceError
from node.logs import configure_logging, fields, get_logger

log = get_logger("indexer")


def register(sub: Any) -> None:
    p = sub.add_parser("indexer", help="index a node's committed blocks into the history database")
    p.add_argument("--home", help="node home (its config names the data dir and the database)")
    p.add_argument("--data", type=Path, help="a node's data dir (default: the home's)")
    db = p.add_mutually_exclusive_group()
    db.add_argument("--sqlite", type=Path, help="SQLite database file (overrides the home's)")
    db.add_argument("--postgresql", metavar="DSN", help="PostgreSQL connection string")
    p.add_argument(
        "--blocks-per-commit", type=int, default=None, help="blocks per database transaction"
    )
    p.add_argument("--poll-ms", type=int, default=200, help="look for new blocks this often")
    p.add_argument("--once", action="store_true", help="stop when caught up")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_indexer)


def _open(args: argparse.Namespace) -> tuple[Path, IndexDb, int]:
    """The data dir, the database and the batch size the arguments name."""
    blocks = args.blocks_per_commit
    if args.home is None and args.data is not None and (args.sqlite or args.postgresql):
        data, home_db = args.data, None
    else:
        try:
            config = load_config(resolve_home(args.home))
        except HomeError as exc:
            raise CliError(str(exc)) from None
        data = args.data or config.data_path
        blocks = blocks or config.indexer.blocks_per_commit_max
        home_db = config
    if blocks is not None and not 1 <= blocks <= 100_000:
        raise CliError("--blocks-per-commit must be 1..100000")
    try:
        if args.postgresql:
            db = open_db("postgresql", Path(), args.postgresql)
        elif args.sqlite:
            db = open_db("sqlite", args.sqlite, "")
        elif home_db is not None:
            db = configured_db(home_db)
        else:
            raise CliError("name a database: --sqlite or --postgresql, or a --home")
    except IndexDbError as exc:
        raise CliError(str(exc)) from None
    return data, db, blocks or 200


def cmd_indexer(args: argparse.Namespace) -> int:
    if not args.once:
        configure_logging()  # a long-running process: its log lines go to stderr like a node's
    data, db, blocks = _open(args)
    try:
        source = DataDirSource(data)
    except SourceError as exc:
        db.close()
        raise CliError(str(exc)) from None
    indexer = Indexer(db, source, blocks)
    started = time.perf_counter()
    first = indexer.indexed_height
    try:
        if args.once:
            indexer.catch_up()
        else:
            trio.run(_serve, indexer, args.poll_ms / 1000)
    except (IndexDbError, SourceError) as exc:
        raise CliError(str(exc)) from None
    finally:
        source.close()
        db.close()
    elapsed = time.perf_counter() - started
    summary = {
        "from_height": first,
        "indexed_height": indexer.indexed_height,
        "events": indexer.events_total,
        "seconds": round(elapsed, 3),
        "events_per_s": round(indexer.events_total / elapsed) if elapsed > 0 else 0,
        "blocks": indexer.blocks_total,
        "busy_s": round(indexer.busy_s, 3),
        "cpu_s": round(indexer.cpu_s, 3),
        "events_per_busy_s": (
            round(indexer.events_total / indexer.busy_s) if indexer.busy_s > 0 else 0
        ),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"indexed heights {first + 1}..{summary['indexed_height']}: {summary['events']} "
            f"events in {summary['seconds']} s ({summary['events_per_s']} events/s)"
        )
    return EXIT_OK


async def _serve(indexer: Indexer, poll_s: float) -> None:
    service = IndexerService(indexer)
    log.info("indexer_started", extra=fields(indexed_height=indexer.indexed_height))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(service.run, poll_s)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break
        nursery.cancel_scope.cancel()
