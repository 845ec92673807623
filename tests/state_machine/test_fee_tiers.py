"""Fee tiers by rolling 14-day volume and maker rebates (state_machine/accounts/fees.py).

Every block is audited (conservation: a rebate is a transfer out of the fee pool), and the
random flows with sub-accounts, agents and tiers check the write set against the entries and a
rebuilt state against the original after every block.
"""

from __future__ import annotations

import dataclasses

import pytest

from state_machine.accounts.fees import set_fee_tiers
from state_machine.accounts.policy import FeeTier
from state_machine.accounts.registry import DAY_MS, P_FEE_TIERS, P_VOLUME
from state_machine.audit import audit
from state_machine.exchange import BlockContext, ExchangeState, apply_block
from state_machine.genesis import Genesis
from state_machine.tx import TIF_IOC
from tests.state_machine.helpers import BTC_PERP, BTC_SPOT, Harness, acct, limit, make_genesis
from tests.state_machine.randgen import RandomFlow

MAKER, TAKER = acct(1), acct(2)
PX = 6_000_000  # BTC-PERP ticks; one tick on one lot is one USDC atom
LOTS = 100
NOTIONAL = PX * LOTS  # 600 USDC
TIERS = (FeeTier(0, 500, 100), FeeTier(NOTIONAL, 300, -100))


def tiered(tiers: tuple[FeeTier, ...] = TIERS) -> Genesis:
    return dataclasses.replace(make_genesis(), fee_tiers=tiers)


def ceil_ppm(amount: int, ppm: int) -> int:
    return -((-amount * ppm) // 10**6)


def trade(h: Harness, market: int = BTC_PERP, lots: int = LOTS) -> dict[str, int]:
    """MAKER rests a sell, TAKER lifts it; returns the fill event."""
    h.nonce = max(h.nonce, h.time_ms)  # nonces follow block time (days pass in these tests)
    assert h.one(MAKER, limit(market, False, PX, lots)).ok
    r = h.one(TAKER, limit(market, True, PX, lots, tif=TIF_IOC))
    assert r.filled_lots == lots, r
    audit(h.state)
    fill: dict[str, int] = h.events("fill")[0]
    return fill


def test_tier_follows_volume_and_rebate_is_paid_from_the_taker_fee() -> None:
    h = Harness(tiered())
    fill = trade(h)
    assert (fill["taker_fee_atoms"], fill["maker_fee_atoms"]) == (
        ceil_ppm(NOTIONAL, 500),
        ceil_ppm(NOTIONAL, 100),
    )
    vol = h.state.accts.volumes
    assert vol[MAKER].total_atoms(h.time_ms // DAY_MS) == NOTIONAL
    # Both now have 600 USDC of volume: tier 1, a maker rebate.
    pool0 = h.state.fee_pools[0].amount_atoms
    maker_usdc = h.bal(MAKER, 0)[0]
    fill = trade(h)
    tfee, mfee = fill["taker_fee_atoms"], fill["maker_fee_atoms"]
    assert (tfee, mfee) == (ceil_ppm(NOTIONAL, 300), -(NOTIONAL * 100 // 10**6))
    assert mfee < 0 and tfee + mfee >= 0
    assert h.state.fee_pools[0].amount_atoms == pool0 + tfee + mfee
    # The maker bought back nothing: its USDC moved by the realised PnL (0 at one price) plus
    # the rebate.
    assert h.bal(MAKER, 0)[0] == maker_usdc - mfee


def test_volume_is_a_rolling_14_day_window_of_daily_buckets() -> None:
    h = Harness(tiered())
    trade(h)
    for _ in range(15):  # a trade a day keeps the record at most 14 buckets long
        h.block([], dt_ms=DAY_MS)
        trade(h, lots=LOTS)
        rec = h.state.accts.volumes[MAKER]
        assert len(rec.buckets) <= 14
    today = h.time_ms // DAY_MS
    assert rec.total_atoms(today) == 14 * NOTIONAL
    h.block([], dt_ms=14 * DAY_MS)
    assert rec.total_atoms(h.time_ms // DAY_MS) == 0  # everything left the window
    fill = trade(h)  # back to tier 0 rates (the volume is counted after the fill's rates)
    assert fill["taker_fee_atoms"] == ceil_ppm(NOTIONAL, 500)


def test_spot_rebates_floor_at_zero() -> None:
    h = Harness(tiered())
    trade(h)  # volume from a perp trade: both in tier 1 now
    spot_px, lots = 6_000_000, 10
    assert h.one(MAKER, limit(BTC_SPOT, False, spot_px, lots)).ok
    assert h.one(TAKER, limit(BTC_SPOT, True, spot_px, lots, tif=TIF_IOC)).filled_lots == lots
    fill = h.events("fill")[0]
    assert fill["maker_fee_atoms"] == 0 and fill["taker_fee_atoms"] > 0
    audit(h.state)


def test_without_tiers_nothing_is_recorded() -> None:
    h = Harness()
    fill = trade(h)
    assert fill["taker_fee_atoms"] == ceil_ppm(NOTIONAL, 450)
    assert not h.state.accts.volumes
    assert not [k for k, _ in h.state.entries() if k[0] in (P_VOLUME, P_FEE_TIERS)]


def test_set_fee_tiers_validates_and_is_a_record() -> None:
    h = Harness()
    st = h.state
    before = st.entries()
    err = set_fee_tiers(st, [FeeTier(0, 200, -300)])
    assert err is not None and err.startswith("invalid_fee_tiers: fee_tiers[0].maker_fee_ppm")
    assert set_fee_tiers(st, [FeeTier(5, 200, 0), FeeTier(5, 100, 0)]) is not None
    assert st.entries() == before
    assert set_fee_tiers(st, list(TIERS)) is None
    assert (bytes((P_FEE_TIERS,)), st.accts.fees.state_obj()) and st.accts.fees.dirty
    h.block([])
    clone = ExchangeState.from_entries(h.genesis, st.entries())
    assert clone.accts.fees.tiers == TIERS
    assert set_fee_tiers(st, []) is None
    writes = dict(h.block([]).writes)
    assert writes[bytes((P_FEE_TIERS,))] is None
    assert ExchangeState.from_entries(h.genesis, st.entries()).accts.fees.tiers == ()


def test_genesis_tiers_are_in_the_genesis_state() -> None:
    g = tiered()
    st = ExchangeState.from_genesis(g)
    assert bytes((P_FEE_TIERS,)) in dict(st.entries())
    assert Genesis.from_wire(g.to_wire()).fee_tiers == TIERS


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_flows_with_accounts_and_tiers_keep_every_invariant(seed: int) -> None:
    g = dataclasses.replace(make_genesis(6), fee_tiers=(FeeTier(0, 450, 0), *TIERS[1:]))
    st = ExchangeState.from_genesis(g)
    flow = RandomFlow(seed, accounts=True)
    before = dict(st.entries())
    codes: set[str] = set()
    h = 0
    while h < 150:
        h = st.height + 1
        dt = 500 if h % 50 else DAY_MS  # cross a few days so the buckets roll
        flow.nonce = max(flow.nonce, st.timestamp_ms + dt)  # nonces follow the clock
        res = apply_block(st, BlockContext(h, st.timestamp_ms + dt, b""), flow.block(st))
        audit(st)
        codes |= {a.code for t in res.tx_results for a in t.actions}
        after = dict(st.entries())
        writes = dict(res.writes)
        changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
        assert not changed - writes.keys(), f"block {h}: changed keys missing from writes"
        for k, v in writes.items():
            assert v == after.get(k), f"block {h}: write of {k.hex()} differs from the state"
        before = after
        if h % 30 == 0:
            clone = ExchangeState.from_entries(g, st.entries())
            assert clone.digest() == st.digest()
            ctx = BlockContext(h + 1, st.timestamp_ms + 500, b"")
            txs = flow.block(st)
            r0, r1 = apply_block(st, ctx, txs), apply_block(clone, ctx, txs)
            assert r0.events == r1.events and r0.writes == r1.writes
            assert [x.to_obj() for x in r0.tx_results] == [x.to_obj() for x in r1.tx_results]
            before = dict(st.entries())
    # The flow reaches the account rules both ways.
    assert {"ok", "not_authorized", "not_subaccount"} <= codes
    assert st.accts.subs and st.accts.volumes
