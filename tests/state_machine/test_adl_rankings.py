"""The ADL rankings kept through a block's liquidations (state_machine/liquidation/adl.py) equal
rankings built from scratch at every use, on seeded crash cascades that run every rung of the
ladder (book orders, vault takeovers, refusals, ADL at the mark and at bankruptcy prices, the
vault's own ADL): the kept ones are re-scored only for the accounts the events name, so this
is the test that the events name every account a liquidation step changes. The comparison is the
index's own self-check (``RiskIndex.check_adl``), so it runs in the compiled build too."""

from __future__ import annotations

import argparse
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import cascade
from state_machine.invariants import InvariantError
from state_machine.liquidation import risk
from state_machine.liquidation.adl import AdlRankings, Ranking
from state_machine.liquidation.index import Band, RiskIndex
from state_machine.tx import OraclePrice, OracleUpdate


def cascade_args(seed: int, drop_ppm: int, insurance_usdc: int) -> argparse.Namespace:
    return argparse.Namespace(
        cascade=200,
        cascade_bystanders=120,
        drop_ppm=drop_ppm,
        insurance_usdc=insurance_usdc,
        seed=seed,
        profile=False,
    )


def run_cascade(
    args: argparse.Namespace, checked: bool = False
) -> tuple[list[Any], list[Any], int]:
    chain, validators = cascade.setup(args)
    st = chain.state
    st.risk.check_adl = checked
    price = st.mstates[cascade.BTC].oracle_price_ticks * (10**6 - args.drop_ppm) // 10**6
    txs = [chain.tx(v, [OracleUpdate((OraclePrice(cascade.BTC, price),))]) for v in validators]
    chain.block(txs)
    events = list(st.events)
    chain.block([])  # the units the liquidations pushed under water, next block
    return events, sorted(st.entries()), st.risk.adl_checks


@pytest.mark.parametrize(
    ("seed", "drop_ppm", "insurance_usdc"),
    [(1, 60_000, 5_000), (2, 45_000, 2_000), (3, 90_000, 1_000), (4, 30_000, 0)],
)
def test_kept_adl_rankings_equal_fresh_ones_at_every_use(
    seed: int, drop_ppm: int, insurance_usdc: int
) -> None:
    args = cascade_args(seed, drop_ppm, insurance_usdc)
    events, entries, unchecked = run_cascade(args)
    # Each use compared with a ranking built from scratch (InvariantError if they differ).
    checked_events, checked_entries, checks = run_cascade(args, checked=True)
    assert unchecked == 0
    assert checks > 5  # the cascade did ADL, several times
    assert any(e[0] == "adl" for e in events)
    # The same block either way, and each use matched a ranking built from scratch.
    assert checked_events == events
    assert checked_entries == entries


def test_the_self_check_catches_an_account_changed_without_an_event() -> None:
    """The self-check the test above relies on: a ranked account whose collateral changes with
    no event naming it keeps its stale score in the kept ranking, and the next use says so."""
    chain, _ = cascade.setup(cascade_args(5, 60_000, 1_000))
    st = chain.state
    market = st.markets[cascade.BTC]
    rankings = AdlRankings(st, risk.adl_score, checked=True)
    order = [pubkey for _, pubkey in rankings.ranked(market, False).ordered()]
    assert len(order) > 10 and rankings.checks == 1
    shorts = st.accounts[order[-1]]  # the lowest score: a larger value moves it
    shorts.balances[0].available_atoms //= 10  # no event names it
    with pytest.raises(InvariantError, match="kept ADL ranking"):
        rankings.ranked(market, False)


@settings(max_examples=200, deadline=None)
@given(
    units=st.lists(
        st.lists(
            st.tuples(
                st.integers(2, 3), *(st.integers(0, 50) for _ in range(4))
            ),  # (market, four edges)
            min_size=1,
            max_size=2,
            unique_by=lambda b: b[0],
        ),
        min_size=1,
        max_size=30,
    ),
    dropped=st.sets(st.integers(0, 40)),
)
def test_drop_many_leaves_the_index_that_dropping_one_at_a_time_leaves(
    units: list[list[Band]], dropped: set[int]
) -> None:
    """A crash cascade drops its units' bands in one pass per edge list (drop_many); the index
    after it must be the one single drops leave (unknown keys are ignored by both)."""

    def build() -> RiskIndex:
        idx = RiskIndex()
        for i, bands in enumerate(units):
            idx.add(i.to_bytes(36, "big"), list(bands))
        return idx

    keys = [i.to_bytes(36, "big") for i in sorted(dropped)]
    one_by_one, bulk = build(), build()
    for key in keys:
        one_by_one.drop(key)
    bulk.drop_many(keys)
    assert bulk.bands == one_by_one.bands
    assert {k: v for k, v in bulk.edges.items() if v} == {
        k: v for k, v in one_by_one.edges.items() if v
    }


@settings(max_examples=200, deadline=None)
@given(
    start=st.dictionaries(st.integers(0, 40), st.integers(0, 2**121), max_size=30),
    ops=st.lists(st.tuples(st.integers(0, 40), st.none() | st.integers(0, 2**121)), max_size=300),
    chunk_max=st.integers(2, 6),
)
def test_chunked_ranking_keeps_the_order_of_one_sorted_list(
    start: dict[int, int], ops: list[tuple[int, int | None]], chunk_max: int
) -> None:
    """A Ranking keeps its order in small sorted chunks (filled at once, split when full,
    dropped when empty): after a fill and any sequence of re-scores (None: the account no longer
    qualifies) it must list the same keys in the same order as one sorted list of every
    account's current key."""
    ranking = Ranking(chunk_max=chunk_max)
    current = {who.to_bytes(32, "big"): score for who, score in start.items()}
    ranking.fill({pubkey: (-score, pubkey) for pubkey, score in current.items()})
    assert list(ranking.ordered()) == sorted((-score, k) for k, score in current.items())
    for who, score in ops:
        pubkey = who.to_bytes(32, "big")
        ranking.set(pubkey, score)
        if score is None:
            current.pop(pubkey, None)
        else:
            current[pubkey] = score
        assert all(len(chunk) <= chunk_max for chunk in ranking.chunks)
    expected = sorted((-score, pubkey) for pubkey, score in current.items())
    assert list(ranking.ordered()) == expected
    assert ranking.maxes == [chunk[-1] for chunk in ranking.chunks]
