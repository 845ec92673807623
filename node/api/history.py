"""Recent history served by the API: trades per market, fills/funding/ledger per account.

Built from the events of executed blocks (``Node.subscribe``) and, at startup, from the events
stored for the last ``BACKFILL_HEIGHTS`` heights, so a restarted node still answers recent
history. Everything is bounded: per-market and per-account rings and a cap on the number of
accounts tracked (the least recently active is forgotten first). Older history is in the
stored events by height (``Store.get_events``); this index is a cache of the recent part.

An item's cursor is ``"<height>.<index>"`` (its event position); pages go from newest to
oldest and ``cursor`` asks for items strictly older than the given one.

Because it is a cache, every list also says from which height on it is complete
(``complete_from_height``): the first height the index saw, moved up when a full ring drops
its oldest item, and, for an account, past the last time the index forgot an account (one
forgotten then may have had items it no longer holds). An answer carries it, so a client
asking for an older range learns that the node does not have it rather than reading an empty
page as "nothing happened".
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from typing import Any

from node.api.params import plain_uint
from state_machine.results import EVENT_FIELDS

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
    "vault_refused",
    "vault_under_water",
    "vault_loss_limit",
    "vault_adl",
    "socialised_loss",
    "funding_payment",
    "fill",
    "subaccount_created",
    "subaccount_transfer",
    "agent_approved",
    "agent_revoked",
    "deposit_credited",  # the bridge (state_machine/bridge)
    "bridge_withdrawal",
    "delist_settled",  # a delisting closed the position (state_machine/governance)
    "delist_haircut",
    "delist_covered",
    "delist_vault_payment",
)
ACCOUNT_FIELDS = (
    "account",
    "taker",
    "maker",
    "from",
    "to",
    "bankrupt",
    "counterparty",
    "master",
    "subaccount",
)
# The vault's own risk steps name no account: they go to the vault's (all-zero) history.
VAULT_KINDS = ("vault_under_water", "vault_loss_limit", "vault_adl", "delist_vault_payment")
VAULT_ADDRESS = bytes(32)


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
    height, index = plain_uint(h), plain_uint(i)
    if not sep or height is None or index is None:
        raise ValueError("cursor must look like <height>.<index>")
    return height, index


def event_body(event: Sequence[Any]) -> dict[str, Any] | None:
    names = EVENT_FIELDS.get(event[0]) if event else None
    if names is None or len(names) != len(event) - 1:
        return None
    return dict(zip(names, event[1:], strict=True))


class KindPlan:
    """What the index does with events of one kind, worked out once per kind: the field
    names, where its account fields are (in ``ACCOUNT_FIELDS`` order, as ``accounts_of``
    reads them), which account lists it joins and whether it is a market's trade or
    funding item."""

    __slots__ = (
        "account_positions",
        "kind",
        "listed",
        "lists",
        "market_funding",
        "names",
        "trade",
        "vault",
        "width",
    )

    def __init__(self, kind: str, names: tuple[str, ...]) -> None:
        self.kind = kind
        self.names = names
        self.width = len(names) + 1
        self.account_positions = tuple(
            1 + names.index(field) for field in ACCOUNT_FIELDS if field in names
        )
        self.lists = tuple(
            name
            for name, kinds in (
                ("fills", FILL_KINDS),
                ("funding", FUNDING_KINDS),
                ("ledger", LEDGER_KINDS),
            )
            if kind in kinds
        )
        # Trades and market funding also need an integer market id, checked per event.
        self.trade = kind == "fill"
        self.market_funding = kind == "funding"
        self.vault = kind in VAULT_KINDS
        self.listed = bool(self.lists) or self.trade or self.market_funding

    def accounts_in(self, event: Sequence[Any]) -> list[bytes]:
        """``HistoryIndex.accounts_of`` of the event's body, plus the vault's address for
        the vault's own kinds."""
        out: list[bytes] = []
        for position in self.account_positions:
            value = event[position]
            if isinstance(value, bytes) and len(value) == 32 and value not in out:
                out.append(value)
        if self.vault and VAULT_ADDRESS not in out:
            out.append(VAULT_ADDRESS)
        return out


_PLANS: dict[str, KindPlan] = {}


def kind_plan(kind: Any) -> KindPlan | None:
    """The plan of an event kind; None for a kind ``EVENT_FIELDS`` does not name."""
    plan = _PLANS.get(kind) if isinstance(kind, str) else None
    if plan is None:
        names = EVENT_FIELDS.get(kind) if isinstance(kind, str) else None
        if names is None:
            return None
        plan = _PLANS[kind] = KindPlan(kind, names)
    return plan


class Ring:
    """One history list: its newest items, and the height from which it holds all of them."""

    __slots__ = ("complete_from_height", "items")

    def __init__(self, size: int, complete_from_height: int) -> None:
        self.items: deque[HistoryItem] = deque(maxlen=size)
        self.complete_from_height = complete_from_height

    def append(self, item: HistoryItem) -> None:
        items = self.items
        if len(items) == items.maxlen:
            # Items of the dropped one's height may remain, but not all of them.
            self.complete_from_height = max(self.complete_from_height, items[0].height + 1)
        items.append(item)


class HistoryIndex:
    def __init__(self, start_height: int = 1) -> None:
        self.trades: dict[int, Ring] = {}
        self.market_funding: dict[int, Ring] = {}
        self.accounts: OrderedDict[bytes, dict[str, Ring]] = OrderedDict()
        self.start_height = start_height  # the first height whose events this index saw
        self.last_forgotten_height = 0  # when an account was last dropped for the cap
        self._height = start_height

    def add_block(self, height: int, timestamp_ms: int, events: Iterable[Sequence[Any]]) -> None:
        """Index one block's events. Most events of an order flow (accepted, rested) go to no
        list; for them only the accounts they name are touched (created, made most recent),
        without building the item: the plan of each kind (``kind_plan``) says which."""
        self._height = height
        for index, event in enumerate(events):
            plan = kind_plan(event[0]) if event else None
            if plan is None or plan.width != len(event):
                continue
            accounts = plan.accounts_in(event)
            if not plan.listed:
                for who in accounts:
                    self._account(who)
                continue
            body = dict(zip(plan.names, event[1:], strict=True))
            item = HistoryItem(height, index, timestamp_ms, plan.kind, body)
            market_id = body.get("market_id")
            if plan.trade and isinstance(market_id, int):
                self._ring(self.trades, market_id, TRADES_PER_MARKET_MAX).append(item)
            if plan.market_funding and isinstance(market_id, int):
                self._ring(self.market_funding, market_id, FUNDING_PER_MARKET_MAX).append(item)
            for who in accounts:
                lists = self._account(who)
                for name in plan.lists:
                    lists[name].append(item)

    def _ring(self, table: dict[int, Ring], key: int, size: int) -> Ring:
        ring = table.get(key)
        if ring is None:
            ring = table[key] = Ring(size, self.start_height)
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

    def _account_complete_from(self) -> int:
        """From which height an account the index does not hold now has no items."""
        return max(self.start_height, self.last_forgotten_height + 1)

    def _account(self, who: bytes) -> dict[str, Ring]:
        """The account's lists, made the most recently active (created if new)."""
        accounts = self.accounts
        lists = accounts.get(who)
        if lists is not None:
            accounts.move_to_end(who)
            return lists
        since = self._account_complete_from()
        lists = {k: Ring(ITEMS_PER_ACCOUNT_MAX, since) for k in ("fills", "funding", "ledger")}
        accounts[who] = lists
        while len(accounts) > ACCOUNTS_MAX:
            accounts.popitem(last=False)
            self.last_forgotten_height = self._height
        return lists

    def account_items(self, who: bytes, kind: str) -> tuple[Sequence[HistoryItem], int]:
        """The account's items of one list and the height from which they are complete."""
        lists = self.accounts.get(who)
        if lists is None:
            return (), self._account_complete_from()
        ring = lists[kind]
        return ring.items, ring.complete_from_height

    def market_items(
        self, table: dict[int, Ring], market_id: int
    ) -> tuple[Sequence[HistoryItem], int]:
        """A market's trades or funding and the height from which they are complete."""
        ring = table.get(market_id)
        if ring is None:
            return (), self.start_height
        return ring.items, ring.complete_from_height


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
