"""Delisting a perp never leaves a balance below zero (state_machine/governance/settlement.py).

The final price may bankrupt a holder: the vault covers the deficit within its governed
limits, then the settlement's winners pay the rest pro rata to their gain, then (if the gains
are short) the holders' equity. Every block runs through ``apply_block`` with the
conservation audit after it (``GovHarness``); the entries a node stores must equal the state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from state_machine.exchange import ExchangeState
from state_machine.genesis import Genesis, Parameters
from state_machine.governance.content import DELISTED, DelistPerp
from state_machine.governance.settlement import pro_rata
from state_machine.merkle_state import MerkleState
from state_machine.tx import PlaceTwap, SetLeverage
from tests.state_machine.helpers import BTC_PERP, ETH_PERP, USDC, acct, limit
from tests.state_machine.test_governance import GovHarness, gov_genesis

A1, A2, A3, A4, A5 = (acct(i) for i in range(1, 6))
VAULT = bytes(32)
PRICE = 6_000_000  # BTC-PERP's initial price: 1 atom per tick-lot, so 1 lot = 6 USDC


def genesis_with(funds: dict[bytes, int], insurance_usdc: int) -> Genesis:
    params = dataclasses.replace(Parameters(), insurance_fund_atoms=insurance_usdc * USDC)
    funded = [(who, 0, usdc * USDC) for who, usdc in funds.items()]
    return gov_genesis(parameters=params, funded=funded)


def open_positions(h: GovHarness, longs: Sequence[tuple[bytes, int]], short: bytes) -> None:
    """``short`` rests an ask for all the lots at PRICE; each long takes its lots."""
    total = sum(q for _, q in longs)
    assert h.one(short, limit(BTC_PERP, False, PRICE, total)).ok
    for who, q in longs:
        res = h.one(who, limit(BTC_PERP, True, PRICE, q))
        assert res.ok and res.filled_lots == q, res


def usdc(h: GovHarness, who: bytes) -> int:
    return h.bal(who, 0)[0]


def no_negative_collateral(h: GovHarness) -> None:
    for a in h.state.accounts.values():
        bal = a.balances.get(0)
        assert bal is None or bal.available_atoms >= 0, (a.pubkey.hex()[:8], bal.available_atoms)
        for pos in a.positions.values():
            assert pos.isolated_margin_atoms >= 0


def test_the_vault_covers_an_account_the_final_price_bankrupts() -> None:
    h = GovHarness(genesis_with({A1: 100, A2: 10_000, A3: 10_000}, insurance_usdc=1_000))
    open_positions(h, [(A1, 100)], short=A2)  # A1: 600 USDC long on 100 USDC
    before = {a: usdc(h, a) for a in (A1, A2)}
    vault_before = usdc(h, VAULT)
    h.pass_proposal(DelistPerp(BTC_PERP, 4_000_000))
    # At 40,000.00 A1 loses 200 USDC on the 100 it had left after the taker fee: the vault
    # pays what it is below zero.
    deficit = 200 * USDC - before[A1]
    assert 100 * USDC < deficit < 101 * USDC
    assert h.events("delist_vault_payment") == [
        {"kind": "delist_vault_payment", "market_id": BTC_PERP, "amount_atoms": deficit}
    ]
    assert h.events("delist_covered") == [
        {
            "kind": "delist_covered",
            "market_id": BTC_PERP,
            "account": A1,
            "deficit_atoms": deficit,
            "covered_atoms": deficit,
        }
    ]
    assert not h.events("delist_haircut")
    assert usdc(h, A1) == 0
    assert usdc(h, A2) - before[A2] == 200 * USDC  # the winner keeps all of its gain
    assert vault_before - usdc(h, VAULT) == deficit
    assert h.state.gov.controls[BTC_PERP].state == DELISTED
    no_negative_collateral(h)
    h.check_stored()


def short_vault_chain() -> GovHarness:
    """A1 (cross) and A5 (isolated) long, A2, A3 and A4 short; a vault of 50 USDC."""
    funds = {A1: 100, A2: 10_000, A3: 10_000, A4: 10_000, A5: 50}
    h = GovHarness(genesis_with(funds, insurance_usdc=50))
    assert h.one(A5, SetLeverage(BTC_PERP, 10, True)).ok  # A5 isolated: 30 USDC margin
    assert h.one(A2, limit(BTC_PERP, False, PRICE, 70)).ok
    assert h.one(A3, limit(BTC_PERP, False, PRICE, 37)).ok
    open_positions(h, [(A1, 100), (A5, 50)], short=A4)
    assert h.one(A4, limit(BTC_PERP, True, PRICE, 107)).ok  # A4 buys back from A2 and A3
    assert [h.state.accounts[a].positions[BTC_PERP].size_lots for a in (A1, A2, A3, A4, A5)] == [
        100,
        -70,
        -37,
        -43,
        50,
    ]
    return h


def test_winners_are_haircut_pro_rata_when_the_vault_is_short() -> None:
    h = short_vault_chain()
    before = {a: usdc(h, a) for a in (A1, A2, A3, A4, A5)}
    h.pass_proposal(DelistPerp(BTC_PERP, 4_000_000))
    settled = {e["account"]: e["realized_pnl_atoms"] for e in h.events("delist_settled")}
    # A1 (cross) loses 200 USDC on what it had; A5's isolated 30 USDC margin loses 100.
    covered = {e["account"]: e for e in h.events("delist_covered")}
    deficit = {A1: 200 * USDC - before[A1], A5: 70 * USDC}
    assert {a: e["deficit_atoms"] for a, e in covered.items()} == deficit
    assert all(e["covered_atoms"] == e["deficit_atoms"] for e in covered.values())
    # The vault's 50 USDC high-water mark and 20 % loss limit let it pay 10 USDC.
    (paid,) = h.events("delist_vault_payment")
    assert paid["amount_atoms"] == 10 * USDC
    cuts = {e["account"]: e for e in h.events("delist_haircut")}
    assert set(cuts) == {A2, A3, A4}
    gains = {a: settled[a] for a in (A2, A3, A4)}
    assert gains == {A2: 140 * USDC, A3: 74 * USDC, A4: 86 * USDC}
    rest = sum(deficit.values()) - 10 * USDC
    assert sum(e["amount_atoms"] for e in cuts.values()) == rest
    for a, e in cuts.items():  # pro rata to the gain, within an atom
        assert e["gain_atoms"] == gains[a]
        assert abs(e["amount_atoms"] * 300 * USDC - rest * gains[a]) < 300 * USDC
        assert usdc(h, a) - before[a] == gains[a] - e["amount_atoms"]
    assert usdc(h, A1) == 0 and h.state.accounts[A5].positions[BTC_PERP].isolated_margin_atoms == 0
    no_negative_collateral(h)
    h.check_stored()


def test_state_roots_of_a_delisting_with_haircuts_are_deterministic() -> None:
    roots = []
    for _ in range(2):
        h = short_vault_chain()
        h.pass_proposal(DelistPerp(BTC_PERP, 4_000_000))
        assert h.events("delist_haircut")
        rebuilt = ExchangeState.from_entries(h.genesis, h.state.entries())
        assert rebuilt.digest() == h.state.digest()
        roots.append(MerkleState.from_entries(h.state.entries()).root())
    assert roots[0] == roots[1]


def test_a_cross_holder_of_other_markets_is_judged_by_its_unit_value() -> None:
    """A cross account whose other position carries it stays as it is (its USDC may be below
    zero, as any cross account's can): only the unit's value counts, and the ladder watches it."""
    h = GovHarness(genesis_with({A1: 100, A2: 10_000, A3: 10_000}, insurance_usdc=1_000))
    assert h.one(A3, limit(ETH_PERP, False, 300_000, 10)).ok
    assert h.one(A1, limit(ETH_PERP, True, 300_000, 10)).ok  # ETH long: 30 USDC notional
    open_positions(h, [(A1, 30)], short=A2)
    assert h.one(A1, limit(BTC_PERP, True, PRICE - 1, 5)).ok  # a resting BTC bid: cancelled
    assert h.one(A3, PlaceTwap(BTC_PERP, True, 1_000, 600_000)).ok  # a TWAP: finished
    h.oracle(ETH_PERP, 3_000_000)  # ETH x10: A1's ETH long gains 270 USDC
    h.pass_proposal(DelistPerp(BTC_PERP, 1_000_000))
    # A1 loses 150 USDC in BTC on 100 of USDC: its USDC is below zero, its unit is not.
    assert usdc(h, A1) < 0
    assert not h.events("delist_covered") and not h.events("delist_vault_payment")
    assert not h.state.accounts[A1].orders
    (finished,) = h.events("twap_finished")
    assert finished["account"] == A3 and not h.state.algo.twaps
    pos = h.state.accounts[A1].positions[BTC_PERP]
    assert (pos.size_lots, pos.buy_lots, pos.sell_lots) == (0, 0, 0)
    h.check_stored()


def test_pro_rata_is_exact_and_capped() -> None:
    assert pro_rata(10, [1, 1, 1], [10, 10, 10]) == [4, 3, 3]
    assert pro_rata(10, [1, 2, 1], [10, 1, 10]) == [5, 1, 4]
    assert pro_rata(100, [5, 5], [20, 30]) == [20, 30]  # not enough room: everything taken
    assert pro_rata(0, [5, 5], [20, 30]) == [0, 0]
    assert pro_rata(7, [0, 3], [9, 9]) == [0, 7]


@settings(max_examples=200, deadline=None)
@given(
    amount=st.integers(0, 10**12),
    rows=st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 10**9)), max_size=8),
)
def test_pro_rata_never_takes_more_than_asked_nor_past_a_cap(
    amount: int, rows: list[tuple[int, int]]
) -> None:
    weights = [w for w, _ in rows]
    caps = [c for _, c in rows]
    takes = pro_rata(amount, weights, caps)
    assert all(0 <= t <= c for t, c in zip(takes, caps, strict=True))
    assert all(t == 0 for t, w in zip(takes, weights, strict=True) if w == 0)
    room = sum(c for c, w in zip(caps, weights, strict=True) if w > 0)
    assert sum(takes) == min(amount, room)
    assert takes == water_filled(amount, weights, caps)


def water_filled(amount: int, weights: list[int], caps: list[int]) -> list[int]:
    """The definition, round by round: cap every entry whose share reaches its cap, share
    the rest again; then floor shares and the remainder to the largest fractions."""
    takes = [0] * len(weights)
    active = [i for i, w in enumerate(weights) if w > 0 and caps[i] > 0]
    while amount > 0 and active:
        total = sum(weights[i] for i in active)
        capped = [i for i in active if amount * weights[i] >= caps[i] * total]
        if not capped:
            exact = {i: amount * weights[i] for i in active}
            for i in active:
                takes[i] = exact[i] // total
            left = amount - sum(takes[i] for i in active)
            for i in sorted(active, key=lambda i: (-(exact[i] % total), i))[:left]:
                takes[i] += 1
            break
        for i in capped:
            takes[i] = caps[i]
            amount -= caps[i]
        active = [i for i in active if i not in capped]
    return takes


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    funds=st.lists(st.integers(20, 3_000), min_size=4, max_size=4),
    insurance_usdc=st.integers(0, 500),
    trades=st.lists(
        st.tuples(
            st.integers(0, 3),  # maker
            st.integers(0, 3),  # taker
            st.booleans(),  # maker sells
            st.integers(-300_000, 300_000),  # price offset from 60,000.00 (up to 5 %)
            st.integers(1, 400),  # lots
        ),
        min_size=1,
        max_size=8,
    ),
    isolated=st.lists(st.booleans(), min_size=4, max_size=4),
    leverage=st.lists(st.integers(2, 50), min_size=4, max_size=4),
    final_price=st.integers(1, 2 * PRICE),
)
def test_any_delisting_conserves_value_and_leaves_nobody_below_zero(
    funds: list[int],
    insurance_usdc: int,
    trades: list[tuple[int, int, bool, int, int]],
    isolated: list[bool],
    leverage: list[int],
    final_price: int,
) -> None:
    who = [A1, A2, A3, A4]
    h = GovHarness(genesis_with(dict(zip(who, funds, strict=True)), insurance_usdc))
    for i, a in enumerate(who):
        assert h.one(a, SetLeverage(BTC_PERP, leverage[i], isolated[i])).ok
    for maker, taker, maker_sells, offset, lots in trades:
        if maker == taker:
            continue
        price = PRICE + offset
        if h.one(who[maker], limit(BTC_PERP, not maker_sells, price, lots)).ok:
            h.one(who[taker], limit(BTC_PERP, maker_sells, price, lots))
    h.pass_proposal(DelistPerp(BTC_PERP, final_price))  # the audit runs after every block
    assert h.state.mstates[BTC_PERP].open_interest_lots == 0
    no_negative_collateral(h)
    for e in h.events("delist_covered"):
        assert e["covered_atoms"] == e["deficit_atoms"]
    paid = sum(e["amount_atoms"] for e in h.events("delist_vault_payment"))
    paid += sum(e["amount_atoms"] for e in h.events("delist_haircut"))
    assert paid == sum(e["covered_atoms"] for e in h.events("delist_covered"))
    h.check_stored()
