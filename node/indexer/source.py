"""Where the indexer reads committed blocks: the node's own store, or a node's data dir.

Both read the events and the block (for its timestamp) that the node committed in one LMDB
transaction, so a height is either fully there or absent. :class:`DataDirSource` opens the
LMDB environment read-only with the reader lock table, as ``perpbft snapshot export`` does:
it may run in another process beside a running node, which never reuses pages it reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import lmdb

from consensus.types import Block
from node.indexer.db import BlockEvents
from node.storage import MAX_DBS, Store, StoreError, height_key, store_path, unseal
from state_machine.codec import DecodeError, decode_raw


class SourceError(Exception):
    """The blocks cannot be read (no store, damaged record)."""


class BlockSource(Protocol):
    def top_height(self) -> int:
        """The last committed height (0: none)."""
        ...

    def base_height(self) -> int:
        """The lowest height whose block and events are still stored."""
        ...

    def read(self, height: int) -> BlockEvents | None:
        """The block's events and time, None when not stored."""
        ...


def block_events(height: int, raw_block: bytes, raw_events: bytes) -> BlockEvents:
    try:
        timestamp_ms = Block.from_wire(raw_block).header.timestamp_ms
        events = decode_raw(raw_events)
    except DecodeError as exc:
        raise SourceError(f"stored block {height} does not decode: {exc}") from None
    if not isinstance(events, list):
        raise SourceError(f"stored events of block {height} are not a list")
    return BlockEvents(height, timestamp_ms, events)


class StoreSource:
    """The running node's own :class:`Store` (the in-process indexer)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def top_height(self) -> int:
        return self.store.height

    def base_height(self) -> int:
        return self.store.meta.base_height

    def read(self, height: int) -> BlockEvents | None:
        try:
            raw_block = self.store.get_block(height)
            raw_events = self.store.get_events(height)
        except StoreError as exc:
            raise SourceError(str(exc)) from None
        if raw_block is None or raw_events is None:
            return None
        return block_events(height, raw_block, raw_events)


class DataDirSource:
    """A node's data dir, read-only (``perpbft indexer``)."""

    def __init__(self, data_dir: Path) -> None:
        path = store_path(data_dir)
        if not (path / "data.mdb").exists():
            raise SourceError(f"no store at {path}")
        try:
            self.env = lmdb.open(
                str(path), readonly=True, max_dbs=MAX_DBS, subdir=True, lock=True
            )
            # Without a transaction argument py-lmdb opens the handles in one of its own that
            # it commits (handles opened in an aborted read transaction are discarded).
            self.dbs = {
                name: self.env.open_db(name.encode(), create=False) for name in ("blocks", "events")
            }
        except lmdb.Error as exc:
            raise SourceError(f"cannot open {path}: {exc}") from None

    def _edge(self, last: bool) -> int:
        with self.env.begin() as txn:
            cur = txn.cursor(db=self.dbs["events"])
            found = cur.last() if last else cur.first()
            return int.from_bytes(cur.key(), "big") if found else 0

    def top_height(self) -> int:
        return self._edge(last=True)

    def base_height(self) -> int:
        return self._edge(last=False) or self.top_height() + 1

    def read(self, height: int) -> BlockEvents | None:
        key = height_key(height)
        with self.env.begin() as txn:
            raw_block: Any = txn.get(key, db=self.dbs["blocks"])
            raw_events: Any = txn.get(key, db=self.dbs["events"])
            if raw_block is None or raw_events is None:
                return None
            try:
                block = unseal(bytes(raw_block), f"block {height}")
                events = unseal(bytes(raw_events), f"events {height}")
            except StoreError as exc:
                raise SourceError(str(exc)) from None
        return block_events(height, block, events)

    def close(self) -> None:
        self.env.close()
