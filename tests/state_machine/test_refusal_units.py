"""Refusal messages speak the trader's units: decimal prices and sizes, market and asset
symbols, and for margin refusals how much the order needs and how much is free.

The codes are pinned elsewhere (test_rules.py); here each refusal's message is read back and
its figures are checked against the state they describe (free collateral recomputed from the
state), so a message that falls back to ticks, lots or atoms fails.
"""

from __future__ import annotations

import re
from fractions import Fraction

from state_machine.perpetuals.margin import free_collateral
from state_machine.tx import TIF_ALO, SetLeverage, Transfer
from state_machine.units import MarketText, decimal_text
from tests.state_machine.helpers import BTC_PERP, BTC_SPOT, USDC, Harness, acct, limit
from tests.state_machine.test_rules import P, small_account_harness

A1, A2, A5 = acct(1), acct(2), acct(5)


def usdc(atoms: int) -> str:
    return f"{decimal_text(atoms, USDC)} USDC"


def test_decimal_text_is_exact_and_has_no_trailing_zeros() -> None:
    assert decimal_text(6_000_000, 100) == "60000"
    assert decimal_text(600_270_000, 1_000_000) == "600.27"
    assert decimal_text(-5, 1000) == "-0.005"
    assert decimal_text(1, 3).startswith("0.333333333333333333")  # cut at 18 places


def test_margin_refusal_says_required_and_free_in_usdc() -> None:
    h = small_account_harness(1000 * USDC)
    assert h.one(A5, SetLeverage(BTC_PERP, 1, False)).code == "ok"
    assert h.one(A5, limit(BTC_PERP, True, P, 100)).code == "ok"
    free_atoms = free_collateral(h.state, h.state.accounts[A5])
    res = h.one(A5, limit(BTC_PERP, True, P, 100))
    assert res.code == "insufficient_margin"
    found = re.fullmatch(
        r"BTC-PERP: the order needs ([0-9.]+) USDC of free collateral \(.*\); "
        r"([0-9.]+) USDC is free",
        res.message,
    )
    assert found, res.message
    assert found.group(2) == decimal_text(free_atoms, USDC) == "400"
    # 100 lots of 0.0001 BTC at 60,000 at leverage 1: 600 USDC of margin plus the taker fee.
    assert Fraction(found.group(1)) > 600 > Fraction(found.group(2))


def test_order_rule_refusals_use_prices_sizes_and_symbols() -> None:
    h = Harness()
    cases = [
        (limit(BTC_PERP, True, 2 * P, 100), "price_band", r"BTC-PERP: price 120000 is outside"
         r" the band 54000 to 66000 \(10 % around the reference price 60000 USDC\)"),
        (limit(BTC_PERP, True, P, 1), "min_notional",
         r"BTC-PERP: order value 6 USDC is below the minimum 10 USDC"),
        (limit(BTC_PERP, True, P, 10**12), "lot_size",
         r"BTC-PERP: size must be 0\.0001 BTC to [0-9]+ BTC in steps of 0\.0001 BTC"),
        (limit(BTC_PERP, True, 0, 10), "tick_size",
         r"BTC-PERP: price must be 0\.01 to [0-9]+ USDC"),
    ]  # fmt: skip
    for action, code, pattern in cases:
        res = h.one(A1, action)
        assert (res.code, re.fullmatch(pattern, res.message) is not None) == (code, True), res


def test_post_only_and_spot_balance_refusals() -> None:
    h = Harness()
    assert h.one(A1, limit(BTC_PERP, False, P + 100, 10)).code == "ok"
    res = h.one(A2, limit(BTC_PERP, True, P + 200, 10, tif=TIF_ALO))
    assert res.code == "post_only_would_cross"
    assert res.message == "BTC-PERP: post-only buy at 60002 would cross the best ask 60001"
    held = h.state.accounts[A2].balances[0].available_atoms
    res = h.one(A2, limit(BTC_SPOT, True, P, 10**8))
    assert res.code == "insufficient_balance"
    mt = MarketText(h.genesis, h.state.markets[BTC_SPOT])
    need = mt.quote(P * 10**8 * h.state.markets[BTC_SPOT].tick_lot_atoms)
    assert res.message == f"the order needs {need}; {usdc(held)} available"


def test_transfer_refusal_names_the_asset_amounts() -> None:
    h = Harness()
    have = h.state.accounts[A1].balances[0].available_atoms
    res = h.one(A1, Transfer(A2, 0, have + 1))
    assert res.code == "insufficient_balance"
    assert res.message == f"{usdc(have + 1)} requested; {usdc(have)} available"
