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
rankings against rankings built from scratch after every liquidation of seeded cascades, through
the self-check below.

Self-check: with ``RiskIndex.check_adl`` set, every use compares the kept ranking with one built
from scratch and raises InvariantError if they differ (``RiskIndex.adl_checks`` counts the
comparisons). It is a switch on the derived index, not a patch of this module, so it checks the
compiled build (nativebuild/) as well as the pure one; it costs a full scoring per use.

The object lives for one block's liquidation phase (``RiskIndex.adl``, set and cleared by
end_block_liquidations); outside it, a ranking is built from scratch each time.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Iterator
from typing import Any, TypeGuard

from state_machine.accounts.records import VAULT, Account
from state_machine.genesis import Market
from state_machine.invariants import InvariantError, check
from state_machine.perpetuals.records import Position
from state_machine.state import ExchangeCore

PUBKEY_BYTES = 32
CHUNK_MAX = 512  # keys per chunk of a Ranking before it is split

# (st, market, account, position, long_side) -> score, or None if the account does not qualify
ScoreFn = Callable[[ExchangeCore, Market, Account, Position | None, bool], int | None]
# A ranking's sort key, (-score, pubkey), held as a plain object: typed as a fixed-size tuple,
# compiled code (nativebuild/) would unpack it into a C struct and build a new tuple object at
# every store into a list or dict and every bisect call.
SortKey = Any


class Ranking:
    """One (market, side): each qualifying account's sort key, and the keys in order.

    The order is kept in sorted chunks of at most ``chunk_max`` keys (``maxes`` holds each
    chunk's last key): one sorted list of every holder made each re-score a search plus a
    memmove of the whole list, which in a cascade of 10,000 units among 20,000 accounts was
    most of the block. A chunk is split in two when it outgrows the limit and dropped when
    empty; the concatenated chunks are the same sorted list.
    """

    __slots__ = ("chunk_max", "chunks", "keys", "maxes")

    def __init__(self, chunk_max: int = CHUNK_MAX) -> None:
        check(chunk_max >= 2, f"chunk_max {chunk_max} below 2")
        self.chunk_max = chunk_max
        self.keys: dict[bytes, SortKey] = {}
        self.chunks: list[list[SortKey]] = []
        self.maxes: list[SortKey] = []

    def set(self, pubkey: bytes, score: int | None) -> None:
        old = self.keys.pop(pubkey, None)
        if old is not None:
            self._remove(old)
        if score is not None:
            key: SortKey = (-score, pubkey)
            self.keys[pubkey] = key
            self._insert(key)

    def fill(self, keys: dict[bytes, SortKey]) -> None:
        """Every account's key at once into an empty ranking: one sort, then half-full chunks
        (room for inserts before a split), instead of a search and an insertion per key."""
        check(not self.keys, "fill of a ranking that holds keys")
        self.keys = keys
        order = sorted(keys.values())
        step = max(self.chunk_max // 2, 1)
        self.chunks = [order[i : i + step] for i in range(0, len(order), step)]
        self.maxes = [chunk[-1] for chunk in self.chunks]

    def ordered(self) -> Iterator[tuple[int, bytes]]:
        """The (-score, pubkey) keys in order (valid until the next ``set``)."""
        for chunk in self.chunks:
            yield from chunk

    def _insert(self, key: SortKey) -> None:
        maxes = self.maxes
        if not maxes:
            self.chunks.append([key])
            maxes.append(key)
            return
        i = bisect_left(maxes, key)
        if i == len(maxes):
            i -= 1  # beyond every chunk's last key: it goes at the end of the last chunk
        chunk = self.chunks[i]
        insort(chunk, key)
        maxes[i] = chunk[-1]
        if len(chunk) > self.chunk_max:
            half = len(chunk) // 2
            self.chunks[i : i + 1] = [chunk[:half], chunk[half:]]
            maxes[i : i + 1] = [chunk[half - 1], chunk[-1]]

    def _remove(self, key: SortKey) -> None:
        maxes = self.maxes
        i = bisect_left(maxes, key)  # the first chunk whose last key is not below it
        chunk = self.chunks[i]
        j = bisect_left(chunk, key)
        if chunk[j] != key:  # check(), without a call per re-score
            raise InvariantError("ranked key missing from its chunk")
        del chunk[j]
        if chunk:
            maxes[i] = chunk[-1]
        else:
            del self.chunks[i]
            del maxes[i]


class AdlRankings:
    """The block's ADL rankings, re-scored from the events since their last use."""

    __slots__ = ("checked", "checks", "events_seen", "prices", "rankings", "score", "st")

    def __init__(self, st: ExchangeCore, score: ScoreFn, checked: bool = False) -> None:
        self.st = st
        self.score = score
        self.rankings: dict[tuple[int, bool], Ranking] = {}
        self.events_seen = len(st.events)
        self.prices = market_prices(st)
        self.checked = checked  # compare each use with a ranking built from scratch
        self.checks = 0

    def ranked(self, market: Market, long_side: bool) -> Ranking:
        """The ranking of ``market``'s ``long_side`` holders (vault excluded), exact for the
        current state. Valid until the next call: do not keep it longer."""
        self.refresh()
        mid = market.market_id
        ranking = self.rankings.get((mid, long_side))
        if ranking is None:
            ranking = Ranking()
            ranking.fill(self.holder_keys(market, long_side))
            self.rankings[(mid, long_side)] = ranking
        if self.checked:
            self.check_fresh(market, long_side, ranking)
        return ranking

    def holder_keys(self, market: Market, long_side: bool) -> dict[bytes, SortKey]:
        """The sort key of every account ranked on ``market``'s ``long_side``."""
        mid = market.market_id
        keys: dict[bytes, SortKey] = {}
        for pubkey, acct in self.st.accounts.items():
            # Only holders on the side have a score (adl_score): skip the call for the rest.
            if on_side(acct.positions.get(mid), long_side):
                score = self._score(market, acct, long_side)
                if score is not None:
                    key: SortKey = (-score, pubkey)
                    keys[pubkey] = key
        return keys

    def check_fresh(self, market: Market, long_side: bool, kept: Ranking) -> None:
        """The self-check: the kept ranking equals one built from scratch (every account
        scored and inserted one at a time, not through ``fill``)."""
        fresh = Ranking()
        for pubkey, acct in self.st.accounts.items():
            fresh.set(pubkey, self._score(market, acct, long_side))
        check(
            list(kept.ordered()) == list(fresh.ordered()),
            f"kept ADL ranking of market {market.market_id} differs from a fresh one",
        )
        self.checks += 1

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


def market_prices(st: ExchangeCore) -> list[tuple[int, int, int]]:
    """Every market's (id, mark, funding index): what all scores depend on. Only compared for
    equality with an earlier copy, so the markets' stored order serves (no sort per use)."""
    return [(mid, ms.mark_price_ticks, ms.funding_index) for mid, ms in st.mstates.items()]


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
    ranking: Ranking,
    market: Market,
    bankrupt: Account,
    long_side: bool,
    lots: int | None = None,
) -> list[tuple[Account, Position]]:
    """(account, position) in ADL order: the ranked holders but the bankrupt, then the vault
    if it holds that side. With ``lots``, only the first ones whose positions cover that many
    lots (an ADL usually needs the first few; the sizes do not change while it moves the
    bankrupt unit's lots to them, one counterparty after the other)."""
    mid = market.market_id
    accounts = st.accounts
    out: list[tuple[Account, Position]] = []
    left = lots
    for chunk in ranking.chunks:
        for key in chunk:
            acct = accounts[key[1]]
            if acct is not bankrupt:
                pos = acct.positions[mid]
                out.append((acct, pos))
                if left is not None:
                    left -= abs(pos.size_lots)
                    if left <= 0:
                        return out
    vault = accounts.get(VAULT)
    if vault is not None and vault is not bankrupt:
        vpos = vault.positions.get(mid)
        if vpos is not None and vpos.size_lots != 0 and (vpos.size_lots > 0) == long_side:
            out.append((vault, vpos))
    return out
