"""The API's recent-history index says from which height each list is complete."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import pytest

from consensus.types import Block
from node.api import history
from node.api.history import HistoryIndex
from node.api.queries import Queries
from state_machine.codec import encode
from state_machine.genesis import default_genesis
from state_machine.results import EVENT_FIELDS

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


class PlainIndex(HistoryIndex):
    """The index's rules written out event by event (a body and the named accounts for every
    event): ``HistoryIndex.add_block`` works from per-kind plans and must end in the same
    state."""

    def add_block(self, height: int, timestamp_ms: int, events: Any) -> None:
        self._height = height
        for index, event in enumerate(events):
            body = history.event_body(event)
            if body is None:
                continue
            kind = str(event[0])
            item = history.HistoryItem(height, index, timestamp_ms, kind, body)
            market_id = body.get("market_id")
            if kind == "fill" and isinstance(market_id, int):
                self._ring(self.trades, market_id, history.TRADES_PER_MARKET_MAX).append(item)
            if kind == "funding" and isinstance(market_id, int):
                self._ring(self.market_funding, market_id, history.FUNDING_PER_MARKET_MAX).append(
                    item
                )
            accounts = self.accounts_of(body)
            if kind in history.VAULT_KINDS and history.VAULT_ADDRESS not in accounts:
                accounts.append(history.VAULT_ADDRESS)
            for who in accounts:
                lists = self.accounts.pop(who, None)
                if lists is None:
                    since = self._account_complete_from()
                    lists = {
                        k: history.Ring(history.ITEMS_PER_ACCOUNT_MAX, since)
                        for k in ("fills", "funding", "ledger")
                    }
                self.accounts[who] = lists
                while len(self.accounts) > history.ACCOUNTS_MAX:
                    self.accounts.popitem(last=False)
                    self.last_forgotten_height = self._height
                if kind in history.FILL_KINDS:
                    lists["fills"].append(item)
                if kind in history.FUNDING_KINDS:
                    lists["funding"].append(item)
                if kind in history.LEDGER_KINDS:
                    lists["ledger"].append(item)


def random_event(rng: random.Random, kinds: list[str]) -> tuple[object, ...]:
    """An event of any kind with values that exercise the rules: 32-byte accounts from a small
    set (repeats within an event too), other bytes, integer or missing market ids; now and
    then a field too many or too few, or a kind no event has."""
    kind = rng.choice(kinds)
    names = EVENT_FIELDS.get(kind, ("x",))
    values: list[object] = []
    for name in names:
        roll = rng.random()
        if name == "market_id":
            values.append(rng.choice((2, 3, None)))
        elif roll < 0.6:
            values.append(bytes([rng.randrange(1, 9)]) * 32)
        elif roll < 0.7:
            values.append(b"\x01" * 31)
        else:
            values.append(rng.randrange(1_000))
    if rng.random() < 0.03:
        values.append(0)
    elif rng.random() < 0.03 and values:
        values.pop()
    return (kind, *values)


def index_state(index: HistoryIndex) -> object:
    def ring(r: history.Ring) -> object:
        items = [(i.height, i.index, i.timestamp_ms, i.kind, i.body) for i in r.items]
        return r.complete_from_height, items

    return (
        {m: ring(r) for m, r in index.trades.items()},
        {m: ring(r) for m, r in index.market_funding.items()},
        [(who, {k: ring(r) for k, r in lists.items()}) for who, lists in index.accounts.items()],
        index.last_forgotten_height,
        index._height,
    )


@pytest.mark.parametrize("seed", range(6))
def test_the_planned_index_ends_in_the_state_of_the_plain_rules(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """Every event kind, small rings and an account cap small enough to forget accounts: the
    index built from per-kind plans holds the same items in the same order, the same
    completeness heights and the same least-recently-active order as the plain rules."""
    monkeypatch.setattr(history, "ACCOUNTS_MAX", 5)
    monkeypatch.setattr(history, "ITEMS_PER_ACCOUNT_MAX", 4)
    monkeypatch.setattr(history, "TRADES_PER_MARKET_MAX", 6)
    monkeypatch.setattr(history, "FUNDING_PER_MARKET_MAX", 3)
    rng = random.Random(seed)
    kinds = [*sorted(EVENT_FIELDS), "no_such_event"]
    fast, plain = HistoryIndex(start_height=3), PlainIndex(start_height=3)
    for height in range(3, 60):
        events = [random_event(rng, kinds) for _ in range(rng.randrange(0, 12))]
        fast.add_block(height, height * 1000, events)
        plain.add_block(height, height * 1000, events)
        assert index_state(fast) == index_state(plain), height
