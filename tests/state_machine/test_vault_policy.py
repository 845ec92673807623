"""The vault's own risk policy (liquidation/risk.py): takeovers refused by the
exposure cap, the margin rule and the loss limit; a vault under water closed into the book
and ADL'd in the same block; the loss limit's de-risk orders and high-water mark; and crash
replays with many leveraged accounts in which the vault ends every block solvent or flat,
never silently negative."""

from __future__ import annotations

import pytest

from state_machine.accounts.records import VAULT
from state_machine.audit import audit
from state_machine.exchange import ExchangeState
from state_machine.genesis import Parameters, default_genesis
from state_machine.liquidation.risk import unit_value_and_mm
from state_machine.results import event_to_dict
from state_machine.tx import OraclePrice, OracleUpdate, SetLeverage
from tests.state_machine.helpers import (
    BTC_PERP,
    CHAIN,
    T0,
    USDC,
    VALIDATORS,
    Harness,
    acct,
    limit,
    make_genesis,
    tx,
)
from tests.state_machine.test_risk import open_crash_positions, reconcile_crash_block
from tests.state_machine.test_risk import vault_realised as vault_realised_pnl

A2, A3, A7, A8 = acct(2), acct(3), acct(7), acct(8)
ENTRY = 6_000_000  # 60,000.00; BTC-PERP: one tick on one lot is one USDC atom
LOTS = 7_000  # 0.7 BTC
FEE_PPM = 5_000


def ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


def size(h: Harness, who: bytes) -> int:
    a = h.state.accounts.get(who)
    pos = a.positions.get(BTC_PERP) if a is not None else None
    return pos.size_lots if pos is not None else 0


def vault_equity(h: Harness) -> tuple[int, int]:
    vault = h.state.accounts.get(VAULT)
    return unit_value_and_mm(h.state, vault, None) if vault is not None else (0, 0)


def leveraged(insurance_usdc: int, **params: int) -> Harness:
    """A7: 1,000 USDC at 50x, long 7,000 lots at 60,000 sold by A2 (rich); an empty book."""
    rich = [(a, 0, 10**6 * USDC) for a in (acct(1), A2, A3)]
    p = Parameters(insurance_fund_atoms=insurance_usdc * USDC, **params)
    h = Harness(
        make_genesis(funded=[*rich, (A7, 0, 1_000 * USDC), (A8, 0, 1_000 * USDC)], parameters=p)
    )
    h.one(A7, SetLeverage(BTC_PERP, 50, False))
    h.one(A2, limit(BTC_PERP, False, ENTRY, LOTS))
    assert h.one(A7, limit(BTC_PERP, True, ENTRY, LOTS)).status == "filled"
    return h


# ---- takeovers the policy refuses ------------------------------------------------------------


@pytest.mark.parametrize("cap_usdc", [0, 30_000], ids=["no_vault", "cap_below_the_position"])
def test_exposure_cap_refuses_the_takeover_and_adls_at_the_mark(cap_usdc: int) -> None:
    h = leveraged(100_000, vault_market_notional_max_atoms=cap_usdc * USDC)
    usdc = h.bal(A7, 0)[0]
    a2_before = h.bal(A2, 0)[0]
    price = 5_895_000
    h.oracle(BTC_PERP, price)
    value = usdc + (price - ENTRY) * LOTS
    assert value > 0  # below 2/3 of maintenance, not bankrupt
    (r,) = h.events("vault_refused")
    assert (r["account"], r["reason"], r["value_atoms"]) == (A7, "exposure_cap", value)
    assert not h.events("backstop") and not h.events("socialised_loss")
    # closed against the short at the mark: no one gains or loses against the mark
    (a,) = h.events("adl")
    assert (a["bankrupt"], a["counterparty"], a["size_lots"], a["price_ticks"]) == (
        A7,
        A2,
        LOTS,
        price,
    )
    fee = ceil_div(LOTS * price * FEE_PPM, 10**6)
    (f,) = h.events("liquidation_fee")
    assert (f["account"], f["fee_atoms"]) == (A7, fee)
    assert h.bal(A7, 0)[0] == value - fee and size(h, A7) == 0
    assert h.bal(A2, 0)[0] == a2_before + (ENTRY - price) * LOTS and size(h, A2) == 0
    assert h.bal(VAULT, 0)[0] == 100_000 * USDC + fee and size(h, VAULT) == 0
    audit(h.state)


def test_margin_rule_refuses_a_takeover_the_vault_could_not_have_opened() -> None:
    # 41,265 USDC at 50x needs 825.3 USDC of initial margin; the fund has 500 (+ the fee 206)
    h = leveraged(500)
    h.oracle(BTC_PERP, 5_895_000)
    (r,) = h.events("vault_refused")
    assert r["reason"] == "margin" and size(h, VAULT) == 0 and size(h, A7) == 0
    audit(h.state)
    # with 700 (+ 206 of fee) it can
    h = leveraged(700)
    h.oracle(BTC_PERP, 5_895_000)
    assert not h.events("vault_refused") and h.events("backstop") and size(h, VAULT) == LOTS
    audit(h.state)


def test_a_bankrupt_unit_the_vault_can_carry_is_taken_over_and_its_debt_paid() -> None:
    h = leveraged(10_000)
    price = 5_850_000  # A7's value: 1,000 - 1,050 = -50 USDC
    h.oracle(BTC_PERP, price)
    value = 1_000 * USDC - ceil_div(LOTS * ENTRY * 450, 10**6) + (price - ENTRY) * LOTS
    assert value < 0
    (b,) = h.events("backstop")
    assert (b["value_atoms"], b["fee_atoms"]) == (value, 0)
    (p,) = h.events("insurance_payout")
    assert (p["account"], p["amount_atoms"]) == (A7, -value)
    assert h.bal(A7, 0)[0] == 0 and h.bal(VAULT, 0)[0] == 10_000 * USDC + value
    # the fund at genesis is the high-water mark; the payout is a loss against it
    assert size(h, VAULT) == LOTS and h.state.vault_peak.amount_atoms == 10_000 * USDC
    audit(h.state)


def test_an_isolated_takeover_pays_its_fee_from_the_position_not_from_the_vault() -> None:
    """The fee is taken before the position moves: closing an isolated position releases its
    margin to cross, and a fee taken from the emptied record would be bad debt the vault
    pays back to itself."""
    h = leveraged(10_000)
    h.one(A8, SetLeverage(BTC_PERP, 20, True))
    h.one(A2, limit(BTC_PERP, False, ENTRY, 3_000))
    assert h.one(A8, limit(BTC_PERP, True, ENTRY, 3_000)).status == "filled"
    pos = h.state.accounts[A8].positions[BTC_PERP]
    margin = pos.isolated_margin_atoms
    assert margin == 3_000 * ENTRY // 20
    cross = h.bal(A8, 0)[0]
    price = 5_735_000  # A7 is gone at 5,895,000; A8's isolated value is below 2/3 of its MM
    h.oracle(BTC_PERP, 5_895_000)
    vault_before = h.bal(VAULT, 0)[0]
    h.oracle(BTC_PERP, price)
    value = margin + (price - ENTRY) * 3_000
    mm = ceil_div(3_000 * price * 10_000, 10**6)
    assert 0 < 3 * value < 2 * mm
    fee = ceil_div(3_000 * price * FEE_PPM, 10**6)
    (b,) = h.events("backstop")
    assert (b["account"], b["market_id"], b["value_atoms"], b["fee_atoms"]) == (
        A8,
        BTC_PERP,
        value,
        fee,
    )
    assert not h.events("insurance_payout")
    assert h.bal(VAULT, 0)[0] == vault_before + fee
    assert h.bal(A8, 0)[0] == cross + value - fee and pos.isolated_margin_atoms == 0
    audit(h.state)


# ---- the vault under water -------------------------------------------------------------------


def vault_with_a_long(fund_usdc: int) -> tuple[Harness, int]:
    """The vault takes A7's 7,000 lots at 58,950 over; returns (harness, its equity then)."""
    h = leveraged(fund_usdc)
    takeover = 5_895_000
    h.oracle(BTC_PERP, takeover)
    fee = ceil_div(LOTS * takeover * FEE_PPM, 10**6)
    assert size(h, VAULT) == LOTS and h.bal(VAULT, 0)[0] == fund_usdc * USDC + fee
    assert h.state.vault_peak.amount_atoms == fund_usdc * USDC + fee  # a new high
    return h, fund_usdc * USDC + fee


def test_vault_under_water_closes_into_the_book_within_its_equity_and_adls_the_rest() -> None:
    """Equity between zero and maintenance: the de-risk order takes the bids that leave the
    vault's equity at or above zero, not the deeper one; the rest is ADL'd at the mark, in
    the same block; nothing is socialised."""
    h, equity0 = vault_with_a_long(2_000)
    near, deep = 5_614_000, 5_400_000
    h.one(A3, limit(BTC_PERP, True, near, 1_000))
    h.one(A3, limit(BTC_PERP, True, deep, 5_000))
    mark = 5_615_000
    h.oracle(BTC_PERP, mark)
    equity = equity0 + (mark - 5_895_000) * LOTS
    mm = ceil_div(LOTS * mark * 10_000, 10**6)
    assert 0 <= equity < mm
    (u,) = h.events("vault_under_water")
    assert (u["equity_atoms"], u["maintenance_atoms"]) == (equity, mm)
    (io,) = h.events("internal_order")
    assert (io["reason"], io["account"], io["filled_lots"]) == ("vault_derisk", VAULT, 1_000)
    (fill,) = h.events("fill")
    assert (fill["taker"], fill["price_ticks"], fill["size_lots"]) == (VAULT, near, 1_000)
    adls = h.events("vault_adl")
    assert [(e["counterparty"], e["size_lots"], e["price_ticks"]) for e in adls] == [
        (A2, 6_000, mark)
    ]
    assert not h.events("socialised_loss")
    left = equity - (mark - near) * 1_000 - fill["taker_fee_atoms"]
    assert size(h, VAULT) == 0 and h.bal(VAULT, 0)[0] == left >= 0
    assert size(h, A3) == 1_000  # the deep bid was not hit
    assert h.state.vault_peak.amount_atoms == left  # flat: its equity
    audit(h.state)


def test_a_bankrupt_vault_is_adld_at_its_bankruptcy_price_and_the_loss_socialised() -> None:
    """Equity below zero: the book could only add to the deficit, so every position goes
    straight to ADL at the vault's bankruptcy price, in that block; the counterparties' loss
    against the mark is the deficit, rounded up by less than a tick per lot."""
    h, equity0 = vault_with_a_long(2_000)
    h.one(A3, limit(BTC_PERP, True, 5_400_000, 1_000))
    mark = 5_500_000
    h.oracle(BTC_PERP, mark)
    equity = equity0 + (mark - 5_895_000) * LOTS
    assert equity < 0
    (u,) = h.events("vault_under_water")
    assert u["equity_atoms"] == equity
    assert not h.events("internal_order") and not h.events("fill")
    p_b = ceil_div(mark * LOTS - equity, LOTS)
    (adl,) = h.events("vault_adl")
    assert (adl["counterparty"], adl["size_lots"], adl["price_ticks"]) == (A2, LOTS, p_b)
    (loss,) = h.events("socialised_loss")
    assert (loss["bankrupt"], loss["amount_atoms"]) == (VAULT, (p_b - mark) * LOTS)
    assert -equity <= loss["amount_atoms"] < -equity + LOTS
    assert size(h, VAULT) == 0 and size(h, A2) == 0 and size(h, A3) == 0
    # flat and not negative, up to the rounding of the price (less than one tick per lot)
    assert 0 <= h.bal(VAULT, 0)[0] < LOTS
    assert h.state.vault_peak.amount_atoms == h.bal(VAULT, 0)[0]  # flat: its equity
    audit(h.state)


# ---- the loss limit --------------------------------------------------------------------------


def test_loss_limit_derisks_refuses_takeovers_and_resets_when_flat() -> None:
    h = leveraged(10_000, vault_loss_limit_ppm=100_000)  # 10 % of the high-water mark
    # A8: 1,000 USDC at 20x, long 3,000 lots at 60,000
    h.one(A8, SetLeverage(BTC_PERP, 20, False))
    h.one(A2, limit(BTC_PERP, False, ENTRY, 3_000))
    assert h.one(A8, limit(BTC_PERP, True, ENTRY, 3_000)).status == "filled"
    h.oracle(BTC_PERP, 5_895_000)
    peak = h.state.vault_peak.amount_atoms
    assert size(h, VAULT) == LOTS and peak == vault_equity(h)[0] == h.bal(VAULT, 0)[0]
    assert peak > 10_000 * USDC  # the fund and the takeover's fee
    # -1,550 per BTC on 0.7 BTC: 1,085 USDC, more than 10 % of the peak; MM is 402
    h.one(A3, limit(BTC_PERP, True, 5_700_000, 3_000))
    h.oracle(BTC_PERP, 5_740_000)
    equity = peak + (5_740_000 - 5_895_000) * LOTS
    assert 10 * equity < 9 * peak and equity > vault_equity(h)[1]
    (ll,) = h.events("vault_loss_limit")
    assert (ll["equity_atoms"], ll["high_water_atoms"]) == (equity, peak)
    assert not h.events("vault_under_water") and not h.events("vault_adl")
    (io,) = h.events("internal_order")
    assert (io["reason"], io["account"], io["filled_lots"]) == ("vault_derisk", VAULT, 3_000)
    assert size(h, VAULT) == 4_000  # the rest waits for the book: the vault is solvent
    assert h.state.vault_peak.amount_atoms == peak
    audit(h.state)
    # A8 is liquidated while the vault is over its limit: refused, ADL at the mark
    h.oracle(BTC_PERP, 5_710_000)
    assert [e["reason"] for e in h.events("vault_refused")] == ["loss_limit"]
    assert [(e["bankrupt"], e["price_ticks"]) for e in h.events("adl")] == [(A8, 5_710_000)]
    assert size(h, A8) == 0 and size(h, VAULT) == 4_000
    assert h.events("vault_loss_limit")  # still over: the de-risk order is sent again
    (io,) = [e for e in h.events("internal_order") if e["account"] == VAULT]
    assert (io["reason"], io["filled_lots"]) == ("vault_derisk", 0)  # into an empty book
    audit(h.state)
    # the high-water mark survives a rebuild from the state entries
    rebuilt = ExchangeState.from_entries(h.genesis, h.state.entries())
    assert rebuilt.vault_peak.amount_atoms == peak and rebuilt.digest() == h.state.digest()
    # once the book takes the rest the vault is flat and the mark is reset to its equity
    h.one(A3, limit(BTC_PERP, True, 5_700_000, 4_000))
    h.block([])
    assert size(h, VAULT) == 0
    assert h.state.vault_peak.amount_atoms == h.bal(VAULT, 0)[0] < peak * 9 // 10
    audit(h.state)


# ---- crash replays ---------------------------------------------------------------------------


def crash_genesis(n: int, insurance_usdc: int) -> tuple[Harness, list[bytes]]:
    """n traders with 1,000 USDC at 2x-50x (two longs for each short), a market maker, a
    liquidity provider for the bids under the falling price."""
    traders = [(3000 + i).to_bytes(32, "big") for i in range(n)]
    balances = [(t, 0, 1_000 * USDC) for t in traders]
    balances += [(acct(200), 0, 10**8 * USDC), (acct(201), 0, 10**8 * USDC)]
    g = default_genesis(
        CHAIN,
        [(v, 10) for v in VALIDATORS],
        balances,
        genesis_time_ms=T0,
        parameters=Parameters(
            insurance_fund_atoms=insurance_usdc * USDC,
            liquidation_partial_notional_atoms=20_000 * USDC,
            liquidation_cooldown_ms=1_000,
        ),
    )
    h = Harness(g)
    open_crash_positions(h, traders)
    return h, traders


def check_vault_after_block(h: Harness) -> None:
    """The vault ends every block margined (equity at least its maintenance margin) or flat,
    and never with negative equity; a vault that was under water ends the block flat (what
    the book did not take was ADL'd, at a loss to the counterparties if its equity was
    negative)."""
    assert h.last is not None
    kinds = [e[0] for e in h.last.events]
    equity, mm = vault_equity(h)
    if size(h, VAULT):
        assert equity >= mm, (equity, mm)
        assert h.state.vault_peak.amount_atoms >= equity
    else:
        assert h.state.vault_peak.amount_atoms == max(equity, 0)
    assert equity >= 0
    if "vault_under_water" in kinds:
        assert size(h, VAULT) == 0
    check_every_loss_is_paid_or_socialised(h)


def check_every_loss_is_paid_or_socialised(h: Harness) -> None:
    """A unit handed to the backstop with a negative value: the vault paid its debt exactly
    (``insurance_payout``) or ADL passed it to the counterparties, reported as a
    ``socialised_loss`` of at least the debt (the bankruptcy price rounds against them by less
    than a tick per lot)."""
    assert h.last is not None
    events = [event_to_dict(e) for e in h.last.events]
    paid = {e["account"]: e["amount_atoms"] for e in events if e["kind"] == "insurance_payout"}
    socialised: dict[bytes, int] = {}
    for e in events:
        if e["kind"] == "socialised_loss":
            socialised[e["bankrupt"]] = socialised.get(e["bankrupt"], 0) + e["amount_atoms"]
    for e in events:
        if e["kind"] in ("backstop", "vault_refused") and e["value_atoms"] < 0:
            debt = -e["value_atoms"]
            if e["kind"] == "backstop":
                assert paid.get(e["account"]) == debt
            else:
                lots = sum(
                    a["size_lots"]
                    for a in events
                    if a["kind"] == "adl" and a["bankrupt"] == e["account"]
                )
                assert debt <= socialised[e["account"]] < debt + lots


def replay(h: Harness, prices: list[int]) -> list[str]:
    lp = acct(201)
    kinds: list[str] = []
    for price in prices:
        txs = [
            tx(v, [OracleUpdate((OraclePrice(BTC_PERP, price),))], h.next_nonce())
            for v in VALIDATORS
        ]
        txs.append(tx(lp, [limit(BTC_PERP, True, price * 99 // 100, 5_000)], h.next_nonce()))
        sizes_before = {
            pk: a.positions[BTC_PERP].size_lots
            for pk, a in h.state.accounts.items()
            if BTC_PERP in a.positions
        }
        vault_before, pnl_before = h.bal(VAULT, 0)[0], vault_realised_pnl(h)
        res = h.block(txs)
        kinds += [e[0] for e in res.events]
        audit(h.state)
        reconcile_crash_block(h, sizes_before, vault_before, pnl_before)
        check_vault_after_block(h)
    return kinds


def path(drop_pct: int, steps: int) -> list[int]:
    """From 60,000 down by ``drop_pct`` in ``steps`` equal steps, then three quiet blocks."""
    end = ENTRY * (100 - drop_pct) // 100
    moves = [ENTRY - (ENTRY - end) * (i + 1) // steps for i in range(steps)]
    return moves + [end] * 3


@pytest.mark.parametrize("insurance_usdc", [2_000, 150_000, 1_000_000])
@pytest.mark.parametrize("drop_pct", [30, 60])
@pytest.mark.parametrize("steps", [1, 6])
def test_crash_replay_leaves_the_vault_solvent_or_socialised(
    drop_pct: int, steps: int, insurance_usdc: int
) -> None:
    h, traders = crash_genesis(180, insurance_usdc)
    fund = insurance_usdc * USDC
    kinds = replay(h, path(drop_pct, steps))
    assert "liquidation" in kinds and "adl" in kinds
    equity, mm = vault_equity(h)
    assert equity >= 0 and (size(h, VAULT) == 0 or equity >= mm)
    if equity < fund:
        # the vault lost part of its fund: only through its own, reported, steps
        assert {"backstop", "vault_loss_limit"} & set(kinds) or "vault_under_water" in kinds
    longs = [t for i, t in enumerate(traders) if i % 3 != 0]
    # every 50x, 40x and 20x long is gone at -30 %
    assert sum(1 for t in longs if size(h, t) == 0) >= len(longs) // 2


def test_a_single_block_crash_with_a_small_fund_socialises_what_the_vault_cannot_carry() -> None:
    """The reviewer's case: a -30 % jump in one block, then more. Before the policy the vault
    kept every position it took and sat at a large negative equity; now it takes only what
    it can margin, and anything it holds when under water is closed in that block."""
    h, _ = crash_genesis(180, 2_000)
    kinds = replay(h, [5_880_000, 4_200_000, 4_200_000, 3_000_000, 3_000_000])
    assert {"backstop", "vault_refused", "vault_under_water", "vault_adl"} <= set(kinds)
    assert "socialised_loss" in kinds
    assert size(h, VAULT) == 0 and vault_equity(h)[0] >= 0
