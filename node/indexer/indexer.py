"""The indexer: committed blocks' events into the history database, exactly once.

Theory of operation
-------------------
The indexer is a follower of the block store, never of a stream: it asks the database for
the last indexed height ``h`` (``progress``), reads heights ``h + 1 ..`` from its
:class:`~node.indexer.source.BlockSource` (the node's store, or a node's data dir), and writes
a batch of them together with the new progress in ONE database transaction. Hence:

* exactly once across crashes: a kill -9 before the commit loses the whole batch and the
  restart reads the same heights again; after it, the progress says they are done. Nothing
  else records progress, so nothing can be written twice (and ``events`` is keyed by its
  position, so a second write would fail rather than duplicate);
* backfill is the same loop: a fresh database starts at the store's lowest stored height, so
  a new indexer on an old node indexes everything the node still stores;
* in the node, a committed-block subscription only wakes the loop (``Node.subscribe``); the
  work runs in a worker thread, never on the consensus loop, and a slow database makes the
  index lag, never consensus.

Heights pruned before the indexer read them cannot be indexed: the indexer skips to the
store's lowest height and moves ``first_height`` (every list's ``complete_from_height``)
there, so answers say the older part is missing instead of looking empty.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from node.indexer.db import BlockEvents, Candle, IndexDb
from node.indexer.source import BlockSource
from node.logs import fields, get_logger
from node.metrics import Metrics

log = get_logger("indexer")

IDLE_POLL_S = 0.2  # how often an indexer without block notifications looks for new blocks
ERROR_RETRY_S = 2.0
EVENTS_PER_COMMIT_MAX = 200_000


@dataclass(slots=True)
class Step:
    """What one step indexed."""

    first: int = 0
    last: int = 0
    events: int = 0
    candles: list[Candle] = field(default_factory=list)
    skipped_to: int = 0


class Indexer:
    def __init__(self, db: IndexDb, source: BlockSource, blocks_per_commit_max: int = 200) -> None:
        self.db = db
        self.source = source
        self.blocks_per_commit_max = blocks_per_commit_max
        self.indexed_height = db.progress().height
        self.events_total = 0
        self.blocks_total = 0
        # Time spent in steps that wrote something: wall (perf_counter) and this thread's CPU
        # (thread_time), so throughput is events per second of indexing work, and the cost an
        # in-process indexer adds to its node is known per block.
        self.busy_s = 0.0
        self.cpu_s = 0.0

    def step(self) -> Step:
        """Index the next batch of stored blocks (blocking: run it in a worker thread)."""
        started_s, started_cpu_s = time.perf_counter(), time.thread_time()
        step = self._step()
        if step.events or step.last:
            self.busy_s += time.perf_counter() - started_s
            self.cpu_s += time.thread_time() - started_cpu_s
        return step

    def _step(self) -> Step:
        progress = self.db.progress()
        top = self.source.top_height()
        step = Step()
        next_height = progress.height + 1
        if next_height > top:
            return step
        base = self.source.base_height()
        first_height = progress.first_height
        if progress.height == 0:
            first_height = max(1, base)  # a fresh index: backfill from the oldest stored block
            next_height = first_height
        elif next_height < base:
            log.warning(
                "indexer_gap", extra=fields(indexed=progress.height, lowest_stored=base)
            )
            self.db.skip_to(base - 1, base)
            step.skipped_to = base
            return step
        blocks: list[BlockEvents] = []
        events = 0
        while next_height <= top and len(blocks) < self.blocks_per_commit_max:
            block = self.source.read(next_height)
            if block is None:
                break  # pruned meanwhile: the next step sees the new base
            blocks.append(block)
            events += len(block.events)
            next_height += 1
            if events >= EVENTS_PER_COMMIT_MAX:
                break
        if not blocks:
            return step
        step.candles = self.db.write_blocks(blocks, first_height)
        step.first, step.last, step.events = blocks[0].height, blocks[-1].height, events
        self.indexed_height = step.last
        self.events_total += events
        self.blocks_total += len(blocks)
        return step

    def catch_up(self, until_height: int | None = None) -> int:
        """Index until the source's top (or ``until_height``); returns events indexed."""
        total = 0
        while True:
            step = self.step()
            total += step.events
            if not step.last and not step.skipped_to:
                return total
            if until_height is not None and self.indexed_height >= until_height:
                return total


class IndexerService:
    """The indexer as a trio task: woken by committed blocks (or polling), it indexes in a
    worker thread and tells listeners (the WebSocket candle channel) what changed."""

    def __init__(self, indexer: Indexer, metrics: Metrics | None = None) -> None:
        self.indexer = indexer
        self.metrics = metrics
        self._wake = trio.Event()
        self._advanced = trio.Event()
        self.listeners: list[Callable[[int, list[Candle]], None]] = []
        self._published = (0.0, 0.0, 0)  # busy_s, cpu_s, blocks already in the metrics

    @property
    def indexed_height(self) -> int:
        return self.indexer.indexed_height

    def on_block(self, executed: object) -> None:
        """``Node.subscribe`` callback: a block is stored; wake the loop (nothing more here,
        this runs inside the consensus loop)."""
        self._wake.set()

    async def wait_indexed(self, height: int, timeout_s: float) -> bool:
        """Wait until ``height`` is indexed or the timeout passes; True if it is."""
        with trio.move_on_after(timeout_s):
            while self.indexer.indexed_height < height:
                await self._advanced.wait()
        return self.indexer.indexed_height >= height

    async def run(self, poll_s: float | None = None) -> None:
        """Index forever; ``poll_s`` also looks for new blocks that often (a separate
        process, which gets no notifications)."""
        while True:
            self._wake = trio.Event()
            try:
                step = await trio.to_thread.run_sync(self.indexer.step)
            except Exception:  # a database outage: log, wait, retry; the node keeps running
                log.exception("indexer_failed")
                if self.metrics is not None:
                    self.metrics.indexer_failures.inc()
                await trio.sleep(ERROR_RETRY_S)
                continue
            if step.last or step.skipped_to:
                self._publish(step)
                continue
            with trio.move_on_after(poll_s if poll_s is not None else IDLE_POLL_S * 10):
                await self._wake.wait()

    def _publish_work(self, metrics: Metrics) -> None:
        """The indexer's work since the last publication into its counters."""
        ix = self.indexer
        busy_s, cpu_s, blocks = self._published
        metrics.indexer_busy_seconds.inc(ix.busy_s - busy_s)
        metrics.indexer_cpu_seconds.inc(ix.cpu_s - cpu_s)
        metrics.indexer_blocks.inc(ix.blocks_total - blocks)
        self._published = (ix.busy_s, ix.cpu_s, ix.blocks_total)

    def _publish(self, step: Step) -> None:
        if self.metrics is not None:
            self.metrics.indexer_height.set(self.indexer.indexed_height)
            self.metrics.indexer_events.inc(step.events)
            self._publish_work(self.metrics)
        advanced, self._advanced = self._advanced, trio.Event()
        advanced.set()
        for listener in list(self.listeners):
            try:
                listener(self.indexer.indexed_height, step.candles)
            except Exception:
                log.exception("indexer_listener_failed")
