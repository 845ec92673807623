"""Governance on the exchange state machine: proposals voted by stake, execution at a fixed
height, market states, open-interest caps, circuit breakers, listing and delisting.

Every test runs real blocks through ``apply_block``; after each block the conservation audit
runs and the block's writes are applied to a key-value copy of the state, which must equal
``entries()`` (what a node stores is what the state is), and a state rebuilt from those
entries must have the same digest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from state_machine.accounts.policy import FeeTier
from state_machine.audit import audit
from state_machine.exchange import ExchangeState
from state_machine.genesis import Asset, Genesis, MarginTier, Market
from state_machine.governance.actions import (
    VOTE_ABSTAIN,
    VOTE_NO,
    VOTE_YES,
    CastVote,
    SubmitProposal,
)
from state_machine.governance.content import (
    ACTIVE,
    CLOSE_ONLY,
    DELISTED,
    HALTED,
    BreakerConfig,
    ChangeMarket,
    ChangeParameters,
    Content,
    DelistPerp,
    ListAsset,
    ListMarket,
    SetFeeTiers,
    SetMarketControls,
    SetMarketState,
    encode_content,
)
from state_machine.governance.params import GovernanceParams
from state_machine.governance.records import EXECUTED, NO_QUORUM, PASSED, REJECTED, VOTING
from state_machine.results import ActionResult, BlockResult
from state_machine.tx import (
    KIND_MARKET,
    KIND_STOP_MARKET,
    TIF_IOC,
    Action,
    CancelAll,
    OraclePrice,
    OracleUpdate,
    SetLeverage,
)
from tests.state_machine.helpers import (
    BTC_PERP,
    BTC_SPOT,
    ETH_PERP,
    USDC,
    VALIDATORS,
    Harness,
    acct,
    limit,
    make_genesis,
    trigger,
)

A1, A2, A3, A4 = acct(1), acct(2), acct(3), acct(4)
V0, V1, V2, V3 = VALIDATORS
VOTING_BLOCKS = 3
DELAY_BLOCKS = 2
GOV = GovernanceParams(
    voting_period_blocks=VOTING_BLOCKS,
    quorum_ppm=334_000,
    threshold_ppm=500_000,
    execution_delay_blocks=DELAY_BLOCKS,
    max_active_proposals=4,
)


def gov_genesis(voting_blocks: int = VOTING_BLOCKS, **kw: Any) -> Genesis:
    gov = dataclasses.replace(GOV, voting_period_blocks=voting_blocks)
    return dataclasses.replace(make_genesis(**kw), governance=gov)


class GovHarness(Harness):
    """A harness that audits every block and checks writes against entries."""

    def __init__(self, genesis: Genesis | None = None) -> None:
        super().__init__(genesis if genesis is not None else gov_genesis())
        self.store: dict[bytes, bytes] = dict(self.state.entries())
        self.audited = True

    def block(self, txs: Sequence[Any], dt_ms: int = 500) -> BlockResult:
        res = super().block(txs, dt_ms)
        for key, value in res.writes:
            if value is None:
                self.store.pop(key, None)
            else:
                self.store[key] = value
        if self.audited:
            audit(self.state)
        return res

    def check_stored(self) -> None:
        entries = self.state.entries()
        assert dict(entries) == self.store
        rebuilt = ExchangeState.from_entries(self.genesis, entries)
        assert rebuilt.digest() == self.state.digest()
        audit(rebuilt)

    def propose(self, content: Content, who: bytes = V0) -> ActionResult:
        return self.one(who, SubmitProposal("a change", encode_content(content)))

    def vote(self, pid: int, voters: Sequence[bytes], option: int = VOTE_YES) -> None:
        res = self.block([self.tx(v, CastVote(pid, option)) for v in voters])
        assert all(r.actions[0].ok for r in res.tx_results), res.tx_results

    def tx(self, signer: bytes, *actions: Action) -> Any:
        from tests.state_machine.helpers import tx

        return tx(signer, actions, self.next_nonce())

    def idle(self, n: int, dt_ms: int = 500) -> None:
        for _ in range(n):
            self.block([], dt_ms)

    def pass_proposal(self, content: Content) -> int:
        """Propose, vote yes with three validators of four, run until it executes."""
        res = self.propose(content)
        assert res.ok, res
        pid = res.order_id
        self.vote(pid, [V0, V1, V2])
        proposal = self.state.gov.proposals[pid]
        while self.height < proposal.voting_end_height + DELAY_BLOCKS:
            self.block([])
        assert proposal.status == EXECUTED, (proposal.status, proposal.message)
        return pid


def business(st: ExchangeState) -> list[tuple[bytes, bytes]]:
    """The entries except the block meta, the kept nonces and the market records (a refused
    action's transaction still consumes its nonce, and every block advances the height, the
    mark's clock and the funding samples)."""
    return [(k, v) for k, v in st.entries() if k[0] not in (0x00, 0x04, 0x06)]


def with_fee(market: Market, taker_fee_ppm: int) -> Market:
    return dataclasses.replace(market, taker_fee_ppm=taker_fee_ppm)


# ---- proposals and votes ---------------------------------------------------------------------


def test_a_parameter_change_applies_at_its_height_and_not_before() -> None:
    h = GovHarness()
    old = h.state.markets[BTC_PERP]
    res = h.propose(ChangeMarket(with_fee(old, 900)))
    assert res.ok and res.order_id == 1
    (submitted,) = h.events("proposal_submitted")
    assert submitted["content_kind"] == "change_market"
    end = submitted["voting_end_height"]
    h.vote(1, [V0, V1, V2])
    assert [e["power"] for e in h.events("vote_cast")] == [10, 10, 10]
    while h.height < end:
        h.block([])
    (tallied,) = h.events("proposal_tallied")
    assert tallied["status"] == PASSED and tallied["yes_power"] == 30
    execute_at = tallied["execute_height"]
    assert execute_at == end + DELAY_BLOCKS
    while h.height < execute_at - 1:
        h.block([])
        assert h.state.markets[BTC_PERP].taker_fee_ppm == old.taker_fee_ppm  # not before
    h.block([])
    assert h.height == execute_at
    assert h.state.markets[BTC_PERP].taker_fee_ppm == 900
    assert h.state.books[BTC_PERP].market.taker_fee_ppm == 900
    assert h.events("proposal_executed")[0]["proposal_id"] == 1
    # The new fee is what a fill in that very block's successors charges.
    h.one(A2, limit(BTC_PERP, False, 6_000_000, 100))
    h.one(A1, limit(BTC_PERP, True, 6_000_000, 100))
    (fill,) = h.events("fill")
    assert fill["taker_fee_atoms"] == 6_000_000 * 100 * 900 // 1_000_000
    h.check_stored()


def test_a_proposal_that_fails_quorum_changes_nothing() -> None:
    h = GovHarness()
    before = h.state.markets[BTC_PERP]
    assert h.propose(ChangeMarket(with_fee(before, 900))).ok
    h.vote(1, [V0])  # 10 of 40: below the 33.4 % quorum
    h.idle(VOTING_BLOCKS + DELAY_BLOCKS + 2)
    proposal = h.state.gov.proposals[1]
    assert proposal.status == NO_QUORUM
    assert (proposal.yes_power, proposal.total_power) == (10, 40)
    assert h.state.markets[BTC_PERP] is before
    assert not h.state.gov.markets and not h.state.gov.active
    h.check_stored()


def test_a_proposal_short_of_the_threshold_is_rejected() -> None:
    h = GovHarness()
    assert h.propose(SetMarketState(BTC_PERP, HALTED, "drill")).ok
    h.block([h.tx(V0, CastVote(1, VOTE_YES)), h.tx(V1, CastVote(1, VOTE_NO))])
    h.block([h.tx(V2, CastVote(1, VOTE_ABSTAIN))])
    h.idle(VOTING_BLOCKS + DELAY_BLOCKS)
    assert h.state.gov.proposals[1].status == REJECTED  # yes 10 of yes+no 20: not above 50 %
    assert BTC_PERP not in h.state.gov.controls


def test_refusals_have_their_code_and_change_nothing() -> None:
    h = GovHarness(gov_genesis(voting_blocks=50))
    assert h.propose(SetMarketState(BTC_PERP, CLOSE_ONLY, "drill")).ok
    h.vote(1, [V0])
    cases: list[tuple[bytes, Action, str]] = [
        (A1, CastVote(1, VOTE_YES), "not_a_voter"),  # a funded account without stake
        (V0, CastVote(1, VOTE_NO), "already_voted"),
        (V1, CastVote(9, VOTE_YES), "unknown_proposal"),
        (A1, SubmitProposal("x", encode_content(SetMarketState(2, HALTED, ""))), "not_a_voter"),
        (V1, SubmitProposal("x", b"\x93\x01\x02"), "invalid_proposal"),
        (V1, SubmitProposal("x", encode_content(ChangeMarket(
            dataclasses.replace(h.state.markets[BTC_PERP], maker_fee_ppm=5_000)))),
         "invalid_proposal"),  # maker above taker
        (V1, SubmitProposal("x", encode_content(ChangeMarket(
            dataclasses.replace(h.state.markets[BTC_PERP], symbol="X-PERP")))),
         "invalid_proposal"),
        (V1, SubmitProposal("x", encode_content(DelistPerp(BTC_SPOT, 0))), "invalid_proposal"),
        (V1, SubmitProposal("x", encode_content(ListMarket(
            dataclasses.replace(h.state.markets[BTC_PERP], market_id=4)))),
         "invalid_proposal"),  # duplicate symbol
        (V1, SubmitProposal("x", encode_content(ListMarket(
            dataclasses.replace(h.state.markets[BTC_PERP], market_id=9, symbol="X-PERP")))),
         "invalid_proposal"),  # not the next id
        (V1, SubmitProposal("x", encode_content(ListAsset(Asset(1, "SOL", 9)))),
         "invalid_proposal"),  # id taken
        (V1, SubmitProposal("x", encode_content(ChangeParameters(dataclasses.replace(
            h.state.parameters, insurance_fund_atoms=1)))), "invalid_proposal"),
    ]  # fmt: skip
    for signer, action, code in cases:
        before = business(h.state)
        res = h.one(signer, action)
        assert res.code == code, (action, res)
        assert res.message
        assert business(h.state) == before, action
    h.idle(50)
    before = business(h.state)
    assert h.one(V1, CastVote(1, VOTE_YES)).code == "voting_closed"
    assert business(h.state) == before
    h.check_stored()


def test_at_most_max_active_proposals_are_open() -> None:
    h = GovHarness(gov_genesis(voting_blocks=50))
    for i in range(GOV.max_active_proposals):
        assert h.propose(SetMarketState(BTC_PERP, HALTED, f"p{i}")).ok
    before = business(h.state)
    assert h.propose(SetMarketState(BTC_PERP, HALTED, "one more")).code == "too_many_proposals"
    assert business(h.state) == before


# ---- market states ---------------------------------------------------------------------------


def test_halted_market_refuses_orders_accepts_cancels_and_pauses_funding() -> None:
    h = GovHarness()
    assert h.one(A2, limit(BTC_PERP, False, 6_000_000, 100)).ok
    assert h.one(A1, limit(BTC_PERP, True, 6_000_000, 50)).ok
    assert h.one(A3, limit(BTC_PERP, True, 5_990_000, 10)).ok  # rests
    h.pass_proposal(SetMarketState(BTC_PERP, HALTED, "oracle incident"))
    (state_event,) = h.events("market_state")
    assert state_event == {
        "kind": "market_state",
        "market_id": BTC_PERP,
        "state": "halted",
        "cause": "governance",
        "reason": "oracle incident",
    }
    assert h.state.gov.controls[BTC_PERP].state == HALTED
    mstate_before = h.state.mstates[BTC_PERP].state_obj()
    for action in (
        limit(BTC_PERP, False, 5_990_000, 10),
        limit(BTC_PERP, False, 6_000_000, 10, reduce_only=True),
        trigger(BTC_PERP, False, KIND_STOP_MARKET, 5_000_000, 10, reduce_only=True),
    ):
        before = business(h.state)
        res = h.one(A1, action)
        assert res.code == "market_halted" and "oracle incident" in res.message
        assert business(h.state) == before
    # No matching, no mark, no funding while halted, even an hour later.
    h.idle(3, dt_ms=3_600_000)
    assert h.state.mstates[BTC_PERP].state_obj() == mstate_before
    assert not [e for e in h.events("funding") if e["market_id"] == BTC_PERP]
    assert h.one(A3, CancelAll(BTC_PERP)).ok  # cancels run in every state
    assert not h.state.accounts[A3].orders
    h.pass_proposal(SetMarketState(BTC_PERP, ACTIVE, "resolved"))
    assert h.one(A3, limit(BTC_PERP, True, 5_990_000, 10)).ok
    h.check_stored()


def test_close_only_accepts_reduce_only_orders() -> None:
    h = GovHarness()
    assert h.one(A2, limit(BTC_PERP, False, 6_000_000, 100)).ok
    assert h.one(A1, limit(BTC_PERP, True, 6_000_000, 100)).ok  # A1 long 100, A2 short 100
    h.pass_proposal(SetMarketState(BTC_PERP, CLOSE_ONLY, "wind down"))
    before = business(h.state)
    res = h.one(A3, limit(BTC_PERP, True, 6_000_000, 10))
    assert res.code == "market_close_only"
    assert business(h.state) == before
    assert h.one(A2, limit(BTC_PERP, True, 6_000_000, 40, reduce_only=True)).ok  # rests
    res = h.one(A1, limit(BTC_PERP, False, 6_000_000, 40, reduce_only=True))
    assert res.ok and res.filled_lots == 40
    assert h.state.accounts[A1].positions[BTC_PERP].size_lots == 60
    h.check_stored()


def test_open_interest_cap_refuses_orders_that_would_pass_it() -> None:
    h = GovHarness()
    h.pass_proposal(SetMarketControls(BTC_PERP, 150, BreakerConfig()))
    assert h.one(A2, limit(BTC_PERP, False, 6_000_000, 100)).ok
    assert h.one(A1, limit(BTC_PERP, True, 6_000_000, 100)).ok  # open interest 100
    assert h.state.mstates[BTC_PERP].open_interest_lots == 100
    before = business(h.state)
    res = h.one(A3, limit(BTC_PERP, True, 5_990_000, 60))
    assert res.code == "open_interest_cap"
    assert business(h.state) == before
    assert h.one(A3, limit(BTC_PERP, True, 5_990_000, 50)).ok  # exactly to the cap
    # Closing is always possible: A1 sells 100 against A3's bid and its own position.
    assert h.one(A1, limit(BTC_PERP, False, 5_990_000, 100)).ok
    h.check_stored()


# ---- circuit breakers ------------------------------------------------------------------------


def oracle_all(h: GovHarness, price: int, dt_ms: int = 500, market: int = BTC_PERP) -> BlockResult:
    return h.block(
        [h.tx(v, OracleUpdate((OraclePrice(market, price),))) for v in VALIDATORS], dt_ms
    )


def test_oracle_stale_breaker_halts_and_resumes_after_cool_down_with_fresh_oracle() -> None:
    h = GovHarness()
    oracle_all(h, 6_000_000)
    h.pass_proposal(
        SetMarketControls(BTC_PERP, 0, BreakerConfig(oracle_stale_ms=5_000, cooldown_ms=3_000))
    )
    oracle_all(h, 6_000_000)
    h.idle(4, dt_ms=1_000)
    assert h.state.gov.controls[BTC_PERP].state == ACTIVE  # 4 s without a price
    h.idle(2, dt_ms=1_000)
    (tripped,) = h.events("market_state")
    assert tripped["state"] == "halted" and tripped["cause"] == "oracle_stale"
    assert h.one(A1, limit(BTC_PERP, True, 6_000_000, 10)).code == "market_halted"
    oracle_all(h, 6_000_000, dt_ms=1_000)  # fresh, but the cool-down is not over
    assert h.state.gov.controls[BTC_PERP].state == HALTED
    for _ in range(3):
        res = oracle_all(h, 6_000_000, dt_ms=1_000)
    resumed = [e for e in res.events if e[0] == "market_state"]
    assert h.state.gov.controls[BTC_PERP].state == ACTIVE, resumed
    assert h.one(A1, limit(BTC_PERP, True, 6_000_000, 10)).ok
    h.check_stored()


def test_mark_move_breaker_switches_to_close_only_and_resumes() -> None:
    h = GovHarness()
    oracle_all(h, 6_000_000)
    breakers = BreakerConfig(move_ppm=50_000, move_window_ms=10_000, action=CLOSE_ONLY,
                             cooldown_ms=2_000)  # fmt: skip
    h.pass_proposal(SetMarketControls(BTC_PERP, 0, breakers))
    oracle_all(h, 6_000_000)  # the window starts at 60,000.00
    oracle_all(h, 6_200_000)  # +3.3 %: inside
    assert h.state.gov.controls[BTC_PERP].state == ACTIVE
    oracle_all(h, 6_400_000)  # +6.7 % from the window's first mark
    (tripped,) = h.events("market_state")
    assert (tripped["state"], tripped["cause"]) == ("close_only", "mark_move")
    assert h.one(A1, limit(BTC_PERP, True, 6_400_000, 10)).code == "market_close_only"
    # Still close-only while the window still sees the move; resumes after it, with a fresh
    # oracle and the cool-down over.
    for _ in range(12):
        oracle_all(h, 6_400_000, dt_ms=1_000)
    assert h.state.gov.controls[BTC_PERP].state == ACTIVE
    h.check_stored()


def test_band_cross_breaker_halts_while_the_book_crosses_the_band_and_resumes() -> None:
    h = GovHarness()
    oracle_all(h, 6_000_000)
    h.pass_proposal(
        SetMarketControls(BTC_PERP, 0, BreakerConfig(band_cross_ms=2_000, cooldown_ms=1_000))
    )
    assert h.one(A1, limit(BTC_PERP, True, 5_950_000, 10)).ok  # a bid inside the band
    oracle_all(h, 5_000_000)  # band 10 %: the bid is now above 5,500,000
    assert h.state.gov.controls[BTC_PERP].cross_since_ms
    assert h.state.gov.controls[BTC_PERP].state == ACTIVE
    oracle_all(h, 5_000_000, dt_ms=2_000)
    (tripped,) = h.events("market_state")
    assert (tripped["state"], tripped["cause"]) == ("halted", "band_cross")
    oracle_all(h, 5_000_000, dt_ms=2_000)
    assert h.state.gov.controls[BTC_PERP].state == HALTED  # the book still crosses
    assert h.one(A1, CancelAll(BTC_PERP)).ok
    oracle_all(h, 5_000_000, dt_ms=1_000)
    assert h.state.gov.controls[BTC_PERP].state == ACTIVE
    h.check_stored()


def test_a_governance_halt_is_not_lifted_by_a_breaker_cool_down() -> None:
    h = GovHarness()
    oracle_all(h, 6_000_000)
    h.pass_proposal(
        SetMarketControls(BTC_PERP, 0, BreakerConfig(oracle_stale_ms=60_000, cooldown_ms=1))
    )
    h.pass_proposal(SetMarketState(BTC_PERP, HALTED, "investigation"))
    for _ in range(5):
        oracle_all(h, 6_000_000, dt_ms=1_000)
    assert h.state.gov.controls[BTC_PERP].state == HALTED


def test_liquidations_wait_while_a_market_of_the_unit_is_halted() -> None:
    """A3's cross unit holds ETH-PERP at 25x and a little BTC-PERP. ETH crashes while
    BTC-PERP is halted: the unit is under water but waits; it is liquidated once BTC-PERP
    trades again."""
    h = GovHarness(gov_genesis(funded=[acct(1), (acct(3), 0, 100 * USDC)]))
    assert h.one(A3, SetLeverage(ETH_PERP, 25, False)).ok
    assert h.one(A1, limit(ETH_PERP, False, 300_000, 300)).ok
    assert h.one(A3, limit(ETH_PERP, True, 300_000, 300)).ok  # 900 USDC at 25x
    assert h.one(A1, limit(BTC_PERP, False, 6_000_000, 10)).ok
    assert h.one(A3, limit(BTC_PERP, True, 6_000_000, 10)).ok
    h.pass_proposal(SetMarketState(BTC_PERP, HALTED, "drill"))
    oracle_all(h, 250_000, market=ETH_PERP)  # -16.7 %: 150 USDC lost, 100 held
    h.idle(3)
    assert h.state.accounts[A3].positions[ETH_PERP].size_lots == 300
    h.pass_proposal(SetMarketState(BTC_PERP, ACTIVE, "drill over"))
    h.idle(2)
    assert h.state.accounts[A3].positions[ETH_PERP].size_lots == 0
    h.check_stored()


# ---- listing, delisting, parameters ----------------------------------------------------------


def sol_perp(template: Market) -> Market:
    return dataclasses.replace(
        template,
        market_id=4,
        symbol="SOL-PERP",
        base_asset_id=3,
        lot_base_atoms=10**7,
        tick_lot_atoms=10,
        max_price_ticks=10**8,
        initial_price_ticks=15_000,  # 150.00
        max_leverage=20,
        margin_tiers=(MarginTier(0, 25_000),),
    )


def test_listing_an_asset_and_a_perp_then_trading_in_it() -> None:
    h = GovHarness()
    h.pass_proposal(ListAsset(Asset(3, "SOL", 9)))
    assert h.events("asset_listed") == [{"kind": "asset_listed", "asset_id": 3, "symbol": "SOL"}]
    h.pass_proposal(ListMarket(sol_perp(h.state.markets[BTC_PERP])))
    assert h.events("market_listed")[0]["symbol"] == "SOL-PERP"
    assert h.one(A2, limit(4, False, 15_000, 1_000)).ok
    res = h.one(A1, limit(4, True, 15_000, 400))
    assert res.ok and res.filled_lots == 400
    assert h.state.accounts[A1].positions[4].size_lots == 400
    assert h.state.mstates[4].open_interest_lots == 400
    h.check_stored()


def test_delisting_settles_every_position_at_the_final_price() -> None:
    h = GovHarness()
    assert h.one(A3, SetLeverage(BTC_PERP, 5, True)).ok  # one isolated holder
    assert h.one(A2, limit(BTC_PERP, False, 6_000_000, 100)).ok
    assert h.one(A1, limit(BTC_PERP, True, 6_000_000, 60)).ok
    assert h.one(A3, limit(BTC_PERP, True, 6_000_000, 40)).ok
    assert h.one(A4, limit(BTC_PERP, True, 5_900_000, 10)).ok  # a resting order
    assert h.one(A1, trigger(BTC_PERP, False, KIND_STOP_MARKET, 5_000_000, 60)).ok
    usdc_before = {a: h.bal(a, 0)[0] for a in (A1, A2, A3)}
    h.pass_proposal(DelistPerp(BTC_PERP, 6_100_000))
    settled = {e["account"]: e for e in h.events("delist_settled")}
    assert {a: e["size_lots"] for a, e in settled.items()} == {A1: 60, A2: -100, A3: 40}
    for who in (A1, A2, A3, A4):
        pos = h.state.accounts[who].positions.get(BTC_PERP)
        assert pos is None or (pos.size_lots == 0 and pos.isolated_margin_atoms == 0)
    assert not h.state.accounts[A4].orders and not h.state.accounts[A1].triggers
    assert h.state.mstates[BTC_PERP].open_interest_lots == 0
    assert h.state.gov.controls[BTC_PERP].state == DELISTED
    # PnL at the final price, no fee: 100 ticks on each lot, 1 atom per tick-lot.
    assert settled[A2]["realized_pnl_atoms"] == -100 * 100_000
    assert h.bal(A1, 0)[0] - usdc_before[A1] == 60 * 100_000
    assert h.bal(A2, 0)[0] - usdc_before[A2] == -100 * 100_000
    (delisted,) = h.events("market_delisted")
    assert (delisted["final_price_ticks"], delisted["positions"]) == (6_100_000, 3)
    before = business(h.state)
    assert h.one(A1, limit(BTC_PERP, True, 6_000_000, 10)).code == "market_delisted"
    assert business(h.state) == before
    h.idle(3, dt_ms=3_600_000)  # nothing runs in a delisted market
    assert not [e for e in h.events("funding") if e["market_id"] == BTC_PERP]
    h.check_stored()


def test_vault_limits_are_a_governed_parameter_set() -> None:
    h = GovHarness()
    new = dataclasses.replace(
        h.state.parameters, vault_loss_limit_ppm=100_000, vault_market_notional_max_atoms=1
    )
    h.pass_proposal(ChangeParameters(new))
    assert h.state.parameters == new
    assert h.events("parameters_changed")
    h.check_stored()
    rebuilt = ExchangeState.from_entries(h.genesis, h.state.entries())
    assert rebuilt.parameters == new


def test_changing_lot_size_needs_an_empty_market() -> None:
    h = GovHarness()
    assert h.one(A2, limit(BTC_PERP, False, 6_000_000, 100)).ok
    market = dataclasses.replace(h.state.markets[BTC_PERP], lot_base_atoms=10**5)
    res = h.propose(ChangeMarket(market))
    assert res.code == "invalid_proposal" and "without orders" in res.message
    assert h.one(A2, CancelAll(None)).ok
    h.pass_proposal(ChangeMarket(market))
    assert h.state.markets[BTC_PERP].lot_base_atoms == 10**5


def test_a_passed_change_that_no_longer_applies_fails_at_execution() -> None:
    h = GovHarness()
    market = dataclasses.replace(h.state.markets[BTC_PERP], lot_base_atoms=10**5)
    assert h.propose(ChangeMarket(market)).ok
    h.vote(1, [V0, V1, V2])
    assert h.one(A2, limit(BTC_PERP, False, 6_000_000, 100)).ok  # the market is now in use
    h.idle(VOTING_BLOCKS + DELAY_BLOCKS)
    proposal = h.state.gov.proposals[1]
    assert proposal.status == "failed" and "without orders" in proposal.message
    assert h.state.markets[BTC_PERP].lot_base_atoms == 10**4
    h.check_stored()


def test_a_chain_without_proposals_stores_no_governance_record() -> None:
    h = GovHarness(make_genesis())
    h.one(A2, limit(BTC_PERP, False, 6_000_000, 100))
    h.one(A1, limit(BTC_PERP, True, 6_000_000, 100, tif=TIF_IOC, kind=KIND_MARKET))
    assert not [k for k, _ in h.state.entries() if 0x30 <= k[0] <= 0x37]
    assert h.state.gov.proposals == {} and VOTING == "voting"


def test_with_staking_on_validators_vote_with_their_bonded_stake() -> None:
    from state_machine.staking.actions import CreateValidator, Delegate
    from state_machine.staking.hook import enable_staking
    from state_machine.staking.params import ATOMS_PER_POWER, StakingParams

    h = GovHarness(gov_genesis(voting_blocks=50))
    params = StakingParams(
        epoch_length_blocks=4, min_self_stake_atoms=100 * USDC, min_delegation_atoms=USDC,
        unbonding_blocks=8,
    )  # fmt: skip
    enable_staking(h.state, params)
    h.audited = False  # the conservation audit does not count bonded USDC yet
    assert h.one(A1, CreateValidator(acct(9), "10.0.0.9:26656", 0, 100 * USDC)).ok
    assert h.one(A2, Delegate(V0, 50 * USDC)).ok
    assert h.propose(SetMarketState(BTC_PERP, HALTED, "drill"), who=A1).ok  # a new operator
    def gov_records() -> list[tuple[bytes, bytes]]:
        return [e for e in h.state.entries() if 0x30 <= e[0][0] <= 0x37]

    before = gov_records()  # (an epoch's end writes staking records whatever happens)
    res = h.one(A2, CastVote(1, VOTE_YES))  # a delegator votes through its validator
    assert res.code == "not_a_voter" and gov_records() == before
    h.vote(1, [A1, V0])
    powers = {e["voter"]: e["power"] for e in h.events("vote_cast")}
    assert powers == {A1: 100 * USDC, V0: 10 * ATOMS_PER_POWER + 50 * USDC}


def test_the_optional_governance_section_is_not_encoded_when_absent() -> None:
    import pytest

    from state_machine.codec import DecodeError, decode_raw, encode
    from state_machine.genesis import genesis_from_json

    plain = make_genesis()
    assert plain.governance is None and len(decode_raw(plain.to_wire())) == 7
    with_gov = gov_genesis()
    assert Genesis.from_wire(with_gov.to_wire()) == with_gov
    assert with_gov.hash() != plain.hash()
    assert genesis_from_json(with_gov.to_json()) == with_gov
    assert "governance" not in plain.to_json() and genesis_from_json(plain.to_json()) == plain
    # One value, one encoding: an explicit trailing nil is refused.
    with pytest.raises(DecodeError, match="not canonical"):
        Genesis.from_wire(encode([*decode_raw(plain.to_wire()), None]))
    assert plain.governance_params == GovernanceParams()


def test_fee_tiers_are_changed_by_governance() -> None:
    """The fee tiers (state_machine/accounts/fees.py) are a governed record: a passed proposal
    puts them in force at its height; invalid tiers are refused when proposed."""
    h = GovHarness()
    tiers = (FeeTier(0, 600, 100), FeeTier(10**12, 400, -50))
    h.pass_proposal(SetFeeTiers(tiers))
    assert h.state.accts.fees.tiers == tiers
    assert h.events("fee_tiers")
    h.check_stored()
    rebuilt = ExchangeState.from_entries(h.genesis, h.state.entries())
    assert rebuilt.accts.fees.tiers == tiers
    # A rebate larger than the lowest taker fee would be paid from nothing: refused.
    before = business(h.state)
    res = h.propose(SetFeeTiers((FeeTier(0, 100, -200),)))
    assert res.code == "invalid_proposal" and res.message.startswith("fee_tiers"), res
    assert business(h.state) == before
