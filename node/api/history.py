"""Recent history served by the API: trades per market, fills/funding/ledger per account.

Built from the events of executed blocks (``Node.subscribe``) and, at startup, from the events
stored for the last ``BACKFILL_HEIGHTS`` heights, so a restarted node still answers recent
history. Everything is bounded: per-market and per-account rings and a cap on the number of
accounts tracked (the least recently active is forgotten first). Older history is in the
stored events by height (``Store.get_events``); this index is a cache of the recent part.

An item's cursor is ``"<height>.<index>"`` (its event position); pages go from newest to
oldest and ``cursor`` asks for items strictly older than the given one.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from typing import Any

from state_machine.exchange import EVENT_FIELDS

TRADES_PER_MARKET_MAX = 2_000
FUNDING_PER_MARKET_MAX = 2_000
ITEMS_PER_ACCOUNT_MAX = 2_000
ACCOUNTS_MAX = 50_000
BACKFILL_HEIGHTS = 300

# Event kinds per account history list.
FILL_KINDS = ("fill",)
FUNDING_KINDS = ("funding", "funding_payment")
LEDGER_KINDS = (
    "transfer",
    "withdrawal",
    "isolated_margin",
    "liquidation",
    "liquidation_fee",
    "backstop",
    "position_transfer",
    "insurance_payout",
    "adl",
    "funding_payment",
    "fill",
)
ACCOUNT_FIELDS = ("account", "taker", "maker", "from", "to", "bankrupt", "counterparty")


class HistoryItem:
    __slots__ = ("body", "height", "index", "kind", "timestamp_ms")

    def __init__(
        self, height: int, index: int, timestamp_ms: int, kind: str, body: dict[str, Any]
    ) -> None:
        self.height = height
        self.index = index
        self.timestamp_ms = timestamp_ms
        self.kind = kind
        self.body = body

    @property
    def position(self) -> tuple[int, int]:
        return (self.height, self.index)

    def cursor(self) -> str:
        return f"{self.height}.{self.index}"


def parse_cursor(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    h, sep, i = text.partition(".")
    if not sep or not h.isdigit() or not i.isdigit() or len(text) > 40:
        raise ValueError("cursor must look like <height>.<index>")
    return int(h), int(i)


def event_body(event: Sequence[Any]) -> dict[str, Any] | None:
    names = EVENT_FIELDS.get(event[0]) if event else None
    if names is None or len(names) != len(event) - 1:
        return None
    return dict(zip(names, event[1:], strict=True))


class HistoryIndex:
    def __init__(self) -> None:
        self.trades: dict[int, deque[HistoryItem]] = {}
        self.market_funding: dict[int, deque[HistoryItem]] = {}
        self.accounts: OrderedDict[bytes, dict[str, deque[HistoryItem]]] = OrderedDict()

    def add_block(self, height: int, timestamp_ms: int, events: Iterable[Sequence[Any]]) -> None:
        for index, event in enumerate(events):
            body = event_body(event)
            if body is None:
                continue
            kind = str(event[0])
            item = HistoryItem(height, index, timestamp_ms, kind, body)
            market_id = body.get("market_id")
            if kind == "fill" and isinstance(market_id, int):
                self._ring(self.trades, market_id, TRADES_PER_MARKET_MAX).append(item)
            if kind == "funding" and isinstance(market_id, int):
                self._ring(self.market_funding, market_id, FUNDING_PER_MARKET_MAX).append(item)
            for who in self.accounts_of(body):
                lists = self._account(who)
                if kind in FILL_KINDS:
                    lists["fills"].append(item)
                if kind in FUNDING_KINDS:
                    lists["funding"].append(item)
                if kind in LEDGER_KINDS:
                    lists["ledger"].append(item)

    @staticmethod
    def _ring(table: dict[int, deque[HistoryItem]], key: int, size: int) -> deque[HistoryItem]:
        ring = table.get(key)
        if ring is None:
            ring = table[key] = deque(maxlen=size)
        return ring

    @staticmethod
    def accounts_of(body: dict[str, Any]) -> list[bytes]:
        """The accounts an event names (32-byte values of its account fields)."""
        out: list[bytes] = []
        for name in ACCOUNT_FIELDS:
            value = body.get(name)
            if isinstance(value, bytes) and len(value) == 32 and value not in out:
                out.append(value)
        return out

    def _account(self, who: bytes) -> dict[str, deque[HistoryItem]]:
        lists = self.accounts.pop(who, None)
        if lists is None:
            lists = {k: deque(maxlen=ITEMS_PER_ACCOUNT_MAX) for k in ("fills", "funding", "ledger")}
        self.accounts[who] = lists
        while len(self.accounts) > ACCOUNTS_MAX:
            self.accounts.popitem(last=False)
        return lists

    def account_items(self, who: bytes, kind: str) -> Sequence[HistoryItem]:
        lists = self.accounts.get(who)
        return () if lists is None else lists[kind]


def page(
    items: Sequence[HistoryItem],
    from_ms: int,
    to_ms: int,
    cursor: tuple[int, int] | None,
    limit: int,
) -> tuple[list[HistoryItem], str | None]:
    """Newest first, within [from_ms, to_ms], strictly older than ``cursor``.

    The next cursor is the last item's, and only when another item matches after it (a page
    that ends the range has none, so a client never asks for an empty page)."""
    out: list[HistoryItem] = []
    for item in reversed(items):
        if cursor is not None and item.position >= cursor:
            continue
        if item.timestamp_ms > to_ms:
            continue
        if item.timestamp_ms < from_ms:
            break
        if len(out) == limit:
            return out, out[-1].cursor()
        out.append(item)
    return out, None
