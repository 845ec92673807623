"""The history database inside the node (``[indexer] mode``).

``in_process``: once the store is open, the node indexes its own blocks (woken by each
committed block through ``Node.subscribe``) and the API reads the database. ``external``: a
separate ``perpbft indexer`` fills the database and the node only reads it. The database is
opened with retries: a PostgreSQL server that is down at start-up makes history answer
``503 history_unavailable`` until it is back, and never stops the node.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import trio

from node.indexer.db import Candle, IndexDb, IndexDbError, open_db
from node.indexer.indexer import ERROR_RETRY_S, Indexer, IndexerService
from node.indexer.reads import HistoryReads
from node.indexer.source import StoreSource
from node.logs import fields, get_logger

if TYPE_CHECKING:
    from node.config import Config
    from node.node import Node

log = get_logger("indexer")


def configured_db(config: Config) -> IndexDb:
    """Open the database ``[indexer]`` names (blocking)."""
    settings = config.indexer
    return open_db(settings.backend, config.path(settings.sqlite_file), settings.postgresql_dsn)


async def open_with_retry(config: Config) -> IndexDb:
    while True:
        try:
            return await trio.to_thread.run_sync(configured_db, config)
        except IndexDbError as exc:
            log.error("indexer_db_unavailable", extra=fields(error=str(exc)))
            await trio.sleep(ERROR_RETRY_S)


async def run_in_node(
    node: Node, reads: HistoryReads, listeners: Sequence[Callable[[int, list[Candle]], None]]
) -> None:
    """Open the database for ``reads`` and, in ``in_process`` mode, index the node's blocks."""
    await node.ready.wait()
    db = await open_with_retry(node.config)
    try:
        if node.config.indexer.mode != "in_process":
            reads.db = db
            await trio.sleep_forever()
        chain = node.chain
        if chain is None:
            raise RuntimeError("the node is ready without an open chain")
        indexer = Indexer(db, StoreSource(chain.store), node.config.indexer.blocks_per_commit_max)
        service = IndexerService(indexer, node.metrics)
        service.listeners.extend(listeners)
        # Both at once: a read never finds the database without the indexer to wait for.
        reads.service, reads.db = service, db
        unsubscribe = node.subscribe(service.on_block)
        log.info(
            "indexer_started",
            extra=fields(database=db.describe(), indexed_height=indexer.indexed_height),
        )
        try:
            await service.run()
        finally:
            unsubscribe()
    finally:
        reads.db = reads.service = None
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(db.close)
