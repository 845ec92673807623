"""ADL rankings kept up to date through one block's liquidations.

Theory of operation
-------------------
An ADL ranks every account holding a position opposite the bankrupt one, by
``adl_score`` (profit ratio x notional / unit value; a unit without value first), ties by
public key, the vault last (liquidation/risk.py, ``adl_ranking``). Scoring every account for
every ADL makes a crash cascade quadratic: 10,000 liquidated units among 20,000 accounts cost
minutes of CPU in one block (``perpbft bench risk --cascade``).

``AdlRankings`` keeps, for each (market, side) an ADL of the block has asked for, every
qualifying account's score and the sorted (-score, pubkey) list, and keeps both exact: before
each use it re-scores only the accounts whose score may have changed since the last use. A
score depends on the account's own records (its USDC balance and its positions: size, entry
value, funding index, margin mode) and on the marks and funding indexes. During the
liquidation phase the marks and funding indexes are fixed (they are computed just before it;
checked on each use, and every ranking is rebuilt if they ever differ), and every step that
changes an account emits an event naming it: fills name taker and maker, position transfers
both sides, fees, payouts, cancellations and liquidations their owner. So the accounts named
by the events appended since the last use are a superset of the changed ones (re-scoring an
unchanged account is harmless). tests/state_machine/test_adl_rankings.py checks the kept
rankings against rankings built from scratch after every liquidation of seeded cascades.

The object lives for one block's liquidation phase (``RiskIndex.adl``, set and cleared by
end_block_liquidations); outside it, a ranking is built from scratch each time.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Iterator
from typing import TypeGuard

from state_machine.accounts.records import VAULT, Account
from state_machine.genesis import Market
from state_machine.perpetuals.records import Position
from state_machine.state import ExchangeCore

PUBKEY_BYTES = 32

# (st, market, account, position, long_side) -> score, or None if the account does not qualify
ScoreFn = Callable[[ExchangeCore, Market, Account, Position | None, bool], int | None]


class Ranking:
    """One (market, side): each qualifying account's sort key, and the keys in order."""

    __slots__ = ("keys", "order")

    def __init__(self) -> None:
        self.keys: dict[bytes, tuple[int, bytes]] = {}
        self.order: list[tuple[int, bytes]] = []

    def set(self, pubkey: bytes, score: int | None) -> None:
        old = self.keys.pop(pubkey, None)
        if old is not None:
            del self.order[bisect_left(self.order, old)]
        if score is not None:
            key = (-score, pubkey)
            self.keys[pubkey] = key
            insort(self.order, key)


class AdlRankings:
    """The block's ADL rankings, re-scored from the events since their last use."""

    __slots__ = ("events_seen", "prices", "rankings", "score", "st")

    def __init__(self, st: ExchangeCore, score: ScoreFn) -> None:
        self.st = st
        self.score = score
        self.rankings: dict[tuple[int, bool], Ranking] = {}
        self.events_seen = len(st.events)
        self.prices = market_prices(st)

    def ranked(self, market: Market, long_side: bool) -> list[tuple[int, bytes]]:
        """The (-score, pubkey) list of ``market``'s ``long_side`` holders (vault excluded),
        exact for the current state. Valid until the next call: do not keep it longer."""
        self.refresh()
        mid = market.market_id
        ranking = self.rankings.get((mid, long_side))
        if ranking is None:
            ranking = Ranking()
            for pubkey, acct in self.st.accounts.items():
                ranking.set(pubkey, self._score(market, acct, long_side))
            self.rankings[(mid, long_side)] = ranking
        return ranking.order

    def refresh(self) -> None:
        st = self.st
        prices = market_prices(st)
        if prices != self.prices or len(st.events) < self.events_seen:
            self.prices = prices
            self.rankings = {}
        elif self.rankings:
            changed = sorted(named_accounts(st.events, self.events_seen))
            accounts = st.accounts
            for (mid, long_side), ranking in self.rankings.items():
                market = st.markets[mid]
                for pubkey in changed:
                    acct = accounts.get(pubkey)
                    if pubkey not in ranking.keys and (
                        acct is None or not on_side(acct.positions.get(mid), long_side)
                    ):
                        continue  # not ranked before nor now (its score is None): no change
                    score = None if acct is None else self._score(market, acct, long_side)
                    ranking.set(pubkey, score)
        self.events_seen = len(st.events)

    def _score(self, market: Market, acct: Account, long_side: bool) -> int | None:
        if acct.pubkey == VAULT:
            return None
        pos = acct.positions.get(market.market_id)
        return self.score(self.st, market, acct, pos, long_side)


def market_prices(st: ExchangeCore) -> list[tuple[int, int]]:
    """Every market's (mark, funding index), in market order: what all scores depend on."""
    return [(ms.mark_price_ticks, ms.funding_index) for _, ms in sorted(st.mstates.items())]


def on_side(pos: Position | None, long_side: bool) -> TypeGuard[Position]:
    """Whether ``pos`` is open on ``long_side``: only such positions are ranked (adl_score)."""
    return pos is not None and pos.size_lots != 0 and (pos.size_lots > 0) == long_side


def named_accounts(events: list[tuple[object, ...]], start: int) -> set[bytes]:
    """Every public key (a 32-byte field) in the events from ``start`` on."""
    return {
        field
        for event in events[start:]
        for field in event
        if type(field) is bytes and len(field) == PUBKEY_BYTES
    }


def ranked_holders(
    st: ExchangeCore,
    order: list[tuple[int, bytes]],
    market: Market,
    bankrupt: Account,
    long_side: bool,
) -> Iterator[tuple[Account, Position]]:
    """(account, position) in ADL order: the ranked holders but the bankrupt, then the vault
    if it holds that side. Lazy: an ADL usually stops after the first few."""
    mid = market.market_id
    accounts = st.accounts
    for _, pubkey in order:
        acct = accounts[pubkey]
        if acct is not bankrupt:
            yield acct, acct.positions[mid]
    vault = accounts.get(VAULT)
    if vault is not None and vault is not bankrupt:
        pos = vault.positions.get(mid)
        if pos is not None and pos.size_lots != 0 and (pos.size_lots > 0) == long_side:
            yield vault, pos
