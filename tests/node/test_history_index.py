"""The API's recent-history index says from which height each list is complete."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from consensus.types import Block
from node.api import history
from node.api.history import HistoryIndex
from node.api.queries import Queries
from state_machine.codec import encode
from state_machine.genesis import default_genesis

A, B, C = (bytes([n]) * 32 for n in (1, 2, 3))


def transfer(src: bytes, dst: bytes) -> tuple[object, ...]:
    return ("transfer", src, dst, 0, 1_000_000)


def fill(height: int) -> tuple[object, ...]:
    return ("fill", 2, 6_000_000, 10, True, 100 + height, 200 + height, A, B, 0, 0, 0, 0)


def test_a_list_is_complete_from_the_first_height_until_its_ring_drops_items(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(history, "TRADES_PER_MARKET_MAX", 3)
    index = HistoryIndex(start_height=10)
    assert index.market_items(index.trades, 2) == ((), 10)  # nothing yet, and nothing missed
    for height in range(10, 13):
        index.add_block(height, height * 1000, [fill(height)])
    items, since = index.market_items(index.trades, 2)
    assert [i.height for i in items] == [10, 11, 12] and since == 10
    index.add_block(13, 13_000, [fill(13), fill(13)])  # drops 10 and 11
    items, since = index.market_items(index.trades, 2)
    assert [i.height for i in items] == [12, 13, 13] and since == 12


def test_forgetting_an_account_moves_every_account_list_past_that_height(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(history, "ACCOUNTS_MAX", 2)
    index = HistoryIndex()
    index.add_block(1, 1000, [transfer(A, B)])
    assert index.account_items(A, "ledger")[1] == 1
    assert index.account_items(C, "ledger") == ((), 1)
    index.add_block(2, 2000, [transfer(C, B)])  # three accounts: A, the least recent, goes
    assert A not in index.accounts
    # A may have had items the index no longer holds: complete only after height 2.
    assert index.account_items(A, "ledger") == ((), 3)
    index.add_block(3, 3000, [transfer(A, C)])  # A comes back (C goes), then C (B goes)
    items, since = index.account_items(A, "ledger")
    assert [i.height for i in items] == [3] and since == 3
    assert list(index.accounts) == [A, C]
    assert index.account_items(B, "ledger") == ((), 4)


def test_backfill_indexes_the_newest_unbroken_run_of_stored_heights(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a restart the index is rebuilt from stored events; a height whose events are gone
    (pruned) ends the run, and the lists say they are complete only from after it."""
    top, missing = 10, 6

    class Store:
        height = top

        def get_events(self, height: int) -> bytes | None:
            return None if height == missing else encode([list(transfer(A, B))])

        def get_block(self, height: int) -> bytes | None:
            return b"block %d" % height

    def header_of(raw: bytes) -> SimpleNamespace:
        height = int(raw.split()[1])
        return SimpleNamespace(header=SimpleNamespace(timestamp_ms=height * 1000))

    monkeypatch.setattr(Block, "from_wire", staticmethod(header_of))
    genesis = default_genesis("perpbft-test", [(b"\x09" * 32, 1)], [A, B])
    node = SimpleNamespace(genesis=genesis, chain=None)
    q = Queries(node)  # type: ignore[arg-type]
    node.chain = SimpleNamespace(store=Store())
    q.backfill()
    items, since = q.index.account_items(A, "ledger")
    assert [i.height for i in items] == [7, 8, 9, 10] and since == missing + 1
    assert q.index.account_items(C, "ledger") == ((), missing + 1)
