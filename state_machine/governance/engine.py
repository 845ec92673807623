"""Governance: proposals as transactions, voting by stake, execution at a fixed height.

Theory of operation
-------------------
* ``SubmitProposal`` (tag 40) by a voter (power > 0: a validator, or with staking on, a
  bonded validator operator; no deposit, so only those who run the chain can propose) whose
  content decodes and passes :func:`markets.change_problem` opens proposal ``n`` for
  ``voting_period_blocks``; at most ``max_active_proposals`` are voting or waiting at once.
* ``CastVote`` (tag 41): once per voter and proposal, while the voting period lasts (the
  block at its end height included). A vote stores only the option; the power counts at
  the tally.
* At the end of the voting end height's block the votes are tallied with the voting power
  at that moment (power.voting_power; what was bonded then is what decides): quorum needs
  the voters' power (yes, no, abstain) to reach ``quorum_ppm`` of the total, then yes must
  exceed ``threshold_ppm`` of yes + no. A passed proposal runs at the start of block
  ``voting end + execution_delay_blocks``, before that block's transactions, after the
  change is checked again (``failed`` with the reason if it no longer applies).
* Every step is an event and every record is in state (records.py), so the whole history
  is verifiable from the chain.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from state_machine.codec import DecodeError, decode_raw
from state_machine.genesis import Asset, Market, Parameters
from state_machine.governance.actions import (
    VOTE_ABSTAIN,
    VOTE_NO,
    VOTE_OPTIONS,
    VOTE_YES,
    CastVote,
    GovernanceAction,
    SubmitProposal,
)
from state_machine.governance.breakers import run_breakers
from state_machine.governance.codes import (
    ALREADY_VOTED,
    INVALID_PROPOSAL,
    NOT_A_VOTER,
    TOO_MANY_PROPOSALS,
    UNKNOWN_PROPOSAL,
    VOTING_CLOSED,
)
from state_machine.governance.content import CONTENT_KINDS, SetEpochLength, decode_content
from state_machine.governance.epochlength import epoch_length_refusal
from state_machine.governance.markets import (
    apply_change,
    change_problem,
    install_asset,
    install_market,
    replace_market,
)
from state_machine.governance.power import voting_power
from state_machine.governance.records import (
    EXECUTED,
    FAILED,
    GOV_PREFIXES,
    NO_QUORUM,
    P_GOV_ASSET,
    P_GOV_BLOCK_LIMITS,
    P_GOV_CONTROLS,
    P_GOV_MARKET,
    P_GOV_META,
    P_GOV_PARAMS,
    P_GOV_PROPOSAL,
    P_GOV_VOTE,
    PASSED,
    REJECTED,
    VOTING,
    BlockLimitsRecord,
    GovernedMarket,
    GovernedParameters,
    ListedAsset,
    MarketControls,
    Proposal,
    VoteRecord,
)
from state_machine.invariants import PPM, check
from state_machine.results import OK, ActionResult
from state_machine.state import ExchangeCore


def active_proposals(st: ExchangeCore) -> list[Proposal]:
    """Proposals voting or waiting for execution, by id."""
    return [st.gov.proposals[pid] for pid in sorted(st.gov.active)]


def process_governance(st: ExchangeCore, signer: bytes, a: GovernanceAction) -> ActionResult:
    if isinstance(a, SubmitProposal):
        return process_submit_proposal(st, signer, a)
    return process_cast_vote(st, signer, a)


def process_submit_proposal(st: ExchangeCore, signer: bytes, a: SubmitProposal) -> ActionResult:
    if voting_power(st).get(signer, 0) == 0:
        return ActionResult(NOT_A_VOTER, "only a voter (a validator with stake) may propose")
    params = st.genesis.governance_params
    if len(st.gov.active) >= params.max_active_proposals:
        return ActionResult(TOO_MANY_PROPOSALS, f"{params.max_active_proposals} proposals open")
    try:
        content = decode_content(a.content)
    except DecodeError as exc:
        return ActionResult(INVALID_PROPOSAL, f"content: {exc.reason}")
    if isinstance(content, SetEpochLength):
        refusal = epoch_length_refusal(st, content)
        if refusal is not None:
            return ActionResult(*refusal)
    problem = change_problem(st, content)
    if problem is not None:
        return ActionResult(INVALID_PROPOSAL, problem)
    meta = st.gov.meta
    pid = meta.next_proposal_id
    meta.next_proposal_id += 1
    st.touch(meta)
    end = st.height + params.voting_period_blocks
    proposal = Proposal(pid, signer, a.title, a.content, st.height, end)
    st.gov.proposals[pid] = proposal
    st.gov.active[pid] = None
    st.touch(proposal)
    st.events.append(("proposal_submitted", pid, signer, CONTENT_KINDS[type(content)], end))
    return ActionResult(OK, "voting", order_id=pid)


def process_cast_vote(st: ExchangeCore, signer: bytes, a: CastVote) -> ActionResult:
    proposal = st.gov.proposals.get(a.proposal_id)
    if proposal is None:
        return ActionResult(UNKNOWN_PROPOSAL, f"no proposal {a.proposal_id}")
    if proposal.status != VOTING or st.height > proposal.voting_end_height:
        return ActionResult(VOTING_CLOSED, f"proposal {a.proposal_id} is {proposal.status}")
    power = voting_power(st).get(signer, 0)
    if power == 0:
        return ActionResult(NOT_A_VOTER, "only a voter (a validator with stake) may vote")
    key = (a.proposal_id, signer)
    if key in st.gov.votes:
        return ActionResult(ALREADY_VOTED, f"already voted on proposal {a.proposal_id}")
    vote = VoteRecord(a.proposal_id, signer, a.option, st.height)
    st.gov.votes[key] = vote
    st.touch(vote)
    st.events.append(("vote_cast", a.proposal_id, signer, VOTE_OPTIONS[a.option], power))
    return ActionResult(OK, VOTE_OPTIONS[a.option], order_id=a.proposal_id)


def tally(st: ExchangeCore, proposal: Proposal) -> tuple[int, int, int, int]:
    """(yes, no, abstain, total) power of the proposal's votes with the power now."""
    power = voting_power(st)
    sums = {VOTE_YES: 0, VOTE_NO: 0, VOTE_ABSTAIN: 0}
    for voter in sorted(power):
        vote = st.gov.votes.get((proposal.proposal_id, voter))
        if vote is not None:
            sums[vote.option] += power[voter]
    return sums[VOTE_YES], sums[VOTE_NO], sums[VOTE_ABSTAIN], sum(power.values())


def tally_outcome(st: ExchangeCore, yes: int, no: int, abstain: int, total: int) -> str:
    params = st.genesis.governance_params
    if (yes + no + abstain) * PPM < params.quorum_ppm * total or total == 0:
        return NO_QUORUM
    if yes * PPM > params.threshold_ppm * (yes + no):
        return PASSED
    return REJECTED


def close_voting(st: ExchangeCore, proposal: Proposal) -> None:
    yes, no, abstain, total = tally(st, proposal)
    status = tally_outcome(st, yes, no, abstain, total)
    proposal.yes_power, proposal.no_power, proposal.abstain_power = yes, no, abstain
    proposal.total_power = total
    proposal.status = status
    if status == PASSED:
        delay = st.genesis.governance_params.execution_delay_blocks
        proposal.execute_height = st.height + delay
    else:
        del st.gov.active[proposal.proposal_id]
    st.touch(proposal)
    st.events.append(
        ("proposal_tallied", proposal.proposal_id, status, yes, no, abstain, total,
         proposal.execute_height)
    )  # fmt: skip


def execute(st: ExchangeCore, proposal: Proposal) -> None:
    content = decode_content(proposal.content)
    problem = change_problem(st, content)
    del st.gov.active[proposal.proposal_id]
    st.touch(proposal)
    if problem is not None:
        proposal.status = FAILED
        proposal.message = problem
        st.events.append(("proposal_failed", proposal.proposal_id, problem))
        return
    apply_change(st, content)
    proposal.status = EXECUTED
    st.events.append(("proposal_executed", proposal.proposal_id, CONTENT_KINDS[type(content)]))


def governance_begin_block(st: ExchangeCore) -> None:
    """Run the proposals whose execution height this block is, by id."""
    if not st.gov.active:
        return
    for proposal in active_proposals(st):
        if proposal.status == PASSED and proposal.execute_height == st.height:
            execute(st, proposal)


def governance_end_block(st: ExchangeCore, now: int) -> None:
    """Breakers, then the tallies of the proposals whose voting ends with this block."""
    if st.gov.controls:
        run_breakers(st, now)
    if not st.gov.active:
        return
    for proposal in active_proposals(st):
        if proposal.status == VOTING and proposal.voting_end_height <= st.height:
            close_voting(st, proposal)


def governance_summary(st: ExchangeCore) -> dict[str, Any]:
    """For the metrics: every market's state code by symbol, and the open proposals."""
    states = [
        (m.symbol, st.gov.controls[mid].state if mid in st.gov.controls else 0)
        for mid, m in st.markets.items()
    ]
    return {"market_states": states, "open_proposals": len(st.gov.active)}


# ---- rebuilding from entries --------------------------------------------------------------------


def is_governance_key(key: bytes) -> bool:
    return key[0] in GOV_PREFIXES


def governance_from_entries(st: ExchangeCore, entries: list[tuple[bytes, bytes]]) -> None:
    """Load governance records first (entries sort by key, so a listed market's positions
    and orders come before its 0x30 record): assets, then markets, then everything else."""
    decoded = sorted((k, decode_raw(v)) for k, v in entries)
    for key, v in decoded:
        if key[0] == P_GOV_ASSET:
            asset = Asset.from_obj(v)
            install_asset(st, asset)
            st.gov.assets[asset.asset_id] = ListedAsset(asset)
    for key, v in decoded:
        if key[0] == P_GOV_MARKET:
            market = Market.from_obj(v)
            if market.market_id in st.markets:
                replace_market(st, market)
            else:
                install_market(st, market, emit=False)
            st.gov.markets[market.market_id] = GovernedMarket(market)
    for key, v in decoded:
        load = _LOADERS.get(key[0])
        if load is not None:
            load(st, key, v)
    st.events = []
    for obj in st.dirty:
        obj.dirty = False
    st.dirty = []


def _load_params(st: ExchangeCore, key: bytes, v: Any) -> None:
    params = Parameters.from_obj(v)
    st.parameters = params
    st.max_open_orders = params.max_open_orders_per_account
    st.gov.parameters = GovernedParameters(params)


def _load_controls(st: ExchangeCore, key: bytes, v: Any) -> None:
    c = MarketControls(int.from_bytes(key[1:5], "big"))
    c.restore(v)
    st.gov.controls[c.market_id] = c


def _load_proposal(st: ExchangeCore, key: bytes, v: Any) -> None:
    p = Proposal.from_state(key, v)
    st.gov.proposals[p.proposal_id] = p
    if p.status in (VOTING, PASSED):
        st.gov.active[p.proposal_id] = None


def _load_vote(st: ExchangeCore, key: bytes, v: Any) -> None:
    pid = int.from_bytes(key[1:9], "big")
    st.gov.votes[(pid, key[9:41])] = VoteRecord(pid, key[9:41], v[0], v[1])


def _load_meta(st: ExchangeCore, key: bytes, v: Any) -> None:
    check(key == st.gov.meta.state_key(), "unknown governance meta key")
    st.gov.meta.next_proposal_id = v[0]


def _load_block_limits(st: ExchangeCore, key: bytes, v: Any) -> None:
    check(key == BlockLimitsRecord().state_key(), "unknown block limits key")
    st.gov.block_limits = BlockLimitsRecord(tuple((e[0], e[1], e[2], e[3]) for e in v))


_LOADERS: dict[int, Callable[[ExchangeCore, bytes, Any], None]] = {
    P_GOV_PARAMS: _load_params,
    P_GOV_CONTROLS: _load_controls,
    P_GOV_PROPOSAL: _load_proposal,
    P_GOV_VOTE: _load_vote,
    P_GOV_META: _load_meta,
    P_GOV_BLOCK_LIMITS: _load_block_limits,
}
