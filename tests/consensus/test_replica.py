"""The replica as a whole: commits, persist-before-speech, restart, evidence, block validity,
catch-up and pacing, driven by the in-memory cluster of ``harness.py``."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from consensus import (
    Action,
    Block,
    BlockExecuted,
    BlockHeader,
    Broadcast,
    CommittedBlock,
    ConsensusInvariantError,
    Decide,
    Execute,
    MessageReceived,
    NewView,
    PeerConnected,
    PeerFault,
    PersistSafety,
    Proposal,
    Replica,
    ReportEvidence,
    RequestPayload,
    Send,
    SetTimer,
    SyncRequest,
    SyncResponse,
    TimerFired,
    TimerKind,
    Vote,
    payload_root,
)
from consensus.quorum import tc_valid
from consensus.types import PREPARE, ProposalEquivocation, QCSignature, QuorumCert
from consensus.verify import evidence_valid, sign_proposal, sign_vote
from tests.consensus.harness import CHAIN_ID, Cluster, keys
from tests.sim import Simulation, make_scenario

# ---- helpers ------------------------------------------------------------------------------------


def votes_in(actions: list[Action]) -> list[Vote]:
    out = []
    for a in actions:
        if isinstance(a, Send | Broadcast) and isinstance(a.message, Vote):
            out.append(a.message)
    return out


def persist_before_speech_violations(actions: list[Action]) -> list[str]:
    """Every vote, new-view and proposal must follow a PersistSafety in the same list that
    already records it."""
    problems = []
    persisted = None
    for a in actions:
        if isinstance(a, PersistSafety):
            persisted = a.safety
            continue
        if not isinstance(a, Send | Broadcast):
            continue
        m = a.message
        if isinstance(m, Vote):
            ok = persisted is not None and persisted.voted_view(m.phase) >= m.view
        elif isinstance(m, NewView):
            ok = persisted is not None and (
                persisted.view >= m.view
                or min(persisted.voted_view(p) for p in (1, 2, 3)) >= m.view - 1
            )
        elif isinstance(m, Proposal):
            ok = persisted is not None and persisted.proposed_view >= m.view
        else:
            continue
        if not ok:
            problems.append(f"{type(m).__name__} of view {m.view} after {persisted}")
    return problems


def cluster_at_height(height: int, n: int = 4, **cfg: Any) -> Cluster:
    c = Cluster(n, **cfg)
    c.start()
    c.run_until_height(height)
    return c


def crafted_proposal(c: Cluster, **header_changes: Any) -> tuple[int, Proposal]:
    """A valid proposal for the view every replica is waiting in, by that view's leader,
    optionally with header fields changed (the proposal is re-signed)."""
    voter = next(i for i, r in enumerate(c.replicas) if r.validators.leader(r.view) != r.me)
    r = c.replicas[voter]
    view = r.view
    leader = c.keys[[k.public_key for k in c.keys].index(r.validators.leader(view))]
    tip = r.committed_block(r.committed_height)
    assert tip is not None
    payload: tuple[bytes, ...] = header_changes.pop("payload", (b"x=1",))
    header = BlockHeader(
        height=r.committed_height + 1,
        view=view,
        parent_hash=tip.block.block_hash(),
        timestamp_ms=tip.block.header.timestamp_ms + 1,
        proposer=leader.public_key,
        payload_root=payload_root(payload),
        state_root=c.apps[voter].root,
    )
    header = dataclasses.replace(header, **header_changes)
    block = Block(header, payload)
    signature = sign_proposal(leader, CHAIN_ID, view, block.block_hash())
    return voter, Proposal(view, block, r.safety.prepare_qc, leader.public_key, signature)


# ---- the happy path -----------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 4, 7])
def test_cluster_commits_same_blocks_and_executes_in_order(n: int) -> None:
    c = cluster_at_height(4, n)
    chains = [[e.block.block_hash() for e in chain] for chain in c.chains]
    assert all(chain[:4] == chains[0][:4] for chain in chains)
    for chain in c.chains:
        assert [e.block.height for e in chain] == list(range(1, len(chain) + 1))
    assert len({app.root for app in c.apps if app.height == 4}) == 1


def test_commit_qc_certifies_each_committed_block() -> None:
    c = cluster_at_height(3)
    r = c.replicas[0]
    for height in range(1, 4):
        entry = r.committed_block(height)
        assert entry is not None
        assert entry.commit_qc.block_hash == entry.block.block_hash()
        assert entry.commit_qc.phase == 3 and len(entry.commit_qc.signatures) >= 3


# ---- persist before speech ----------------------------------------------------------------------


def test_every_vote_newview_and_proposal_follows_its_persist_in_the_cluster() -> None:
    c = cluster_at_height(5)
    checked = 0
    for _, _, actions in c.log:
        assert persist_before_speech_violations(actions) == []
        checked += len(votes_in(actions))
    assert checked > 20


@pytest.mark.parametrize(("name", "seed"), [("mixed", 1), ("crash", 2), ("twins", 3), ("lossy", 4)])
def test_every_vote_newview_and_proposal_follows_its_persist_under_faults(
    name: str, seed: int
) -> None:
    sim = Simulation(make_scenario(name, seed), seed).run()
    spoken = 0
    for _, _, _, _, actions in sim.trace:
        assert persist_before_speech_violations(actions) == []
        spoken += sum(isinstance(a, Send | Broadcast) for a in actions)
    assert spoken > 50


def test_the_ordering_checker_catches_a_vote_before_its_persist() -> None:
    vote = sign_vote(Cluster(1).keys[0], CHAIN_ID, PREPARE, 5, 1, b"\x01" * 32)
    c = cluster_at_height(1, 1)
    safety = c.safety[0]
    assert safety is not None
    after = dataclasses.replace(safety, voted_prepare_view=5)
    assert persist_before_speech_violations([PersistSafety(after), Send(b"\x02" * 32, vote)]) == []
    assert persist_before_speech_violations([Send(b"\x02" * 32, vote), PersistSafety(after)])


# ---- restart ------------------------------------------------------------------------------------


def test_restored_replica_never_votes_again_in_a_view_it_voted_in() -> None:
    c = cluster_at_height(2)
    voter, proposal = crafted_proposal(c)
    assert votes_in(c.handle(voter, MessageReceived(proposal.proposer, proposal)))
    safety = c.safety[voter]
    assert safety is not None and safety.voted_prepare_view == proposal.view
    # Crash: everything but the persisted safety data and the executed chain is lost.
    restored = restore(c, voter)
    start = restored.start(c.now)
    assert persist_before_speech_violations(start) == []
    again = restored.handle(MessageReceived(proposal.proposer, proposal))
    assert votes_in(again) == []
    # Nor for a different block the leader might send in the same view.
    _, other = crafted_proposal(c, payload=(b"y=2",))
    assert votes_in(restored.handle(MessageReceived(other.proposer, other))) == []


def restore(c: Cluster, i: int) -> Replica:
    safety = c.safety[i]
    assert safety is not None
    entries = [CommittedBlock(e.block, e.commit_qc) for e in c.chains[i]]
    return Replica.restore(c.config, c.keys[i], c.validators, None, safety, entries, c.apps[i].root)


def test_restored_replica_keeps_its_lock() -> None:
    c = cluster_at_height(2)
    r = c.replicas[1]
    restored = restore(c, 1)
    assert restored.safety == r.safety
    assert restored.safety.locked_qc.view >= 1
    assert restored.committed_height == r.committed_height
    assert restored.view == r.view


def test_restored_replica_rejoins_and_the_cluster_keeps_committing() -> None:
    c = cluster_at_height(2)
    c.replicas[2] = restore(c, 2)
    c.carry_out(2, "start", c.replicas[2].start(c.now))
    c.run_until_height(5)
    assert c.replicas[2].committed_height >= 5


# ---- equivocation -------------------------------------------------------------------------------


def test_conflicting_votes_become_evidence() -> None:
    c = cluster_at_height(1)
    leader_index = next(i for i, r in enumerate(c.replicas) if r.validators.leader(r.view) == r.me)
    leader = c.replicas[leader_index]
    voter = c.keys[(leader_index + 1) % 4]
    a = sign_vote(voter, CHAIN_ID, PREPARE, leader.view, 2, b"\x0a" * 32)
    b = sign_vote(voter, CHAIN_ID, PREPARE, leader.view, 2, b"\x0b" * 32)
    assert not any(
        isinstance(x, ReportEvidence) for x in leader.handle(MessageReceived(voter.public_key, a))
    )
    assert not any(
        isinstance(x, ReportEvidence) for x in leader.handle(MessageReceived(voter.public_key, a))
    )
    reports = [
        x
        for x in leader.handle(MessageReceived(voter.public_key, b))
        if isinstance(x, ReportEvidence)
    ]
    assert len(reports) == 1
    evidence = reports[0].evidence
    assert evidence_valid(evidence, CHAIN_ID, c.validators)
    assert not evidence_valid(evidence, "another-chain", c.validators)


def test_conflicting_proposals_become_evidence_and_only_the_first_gets_a_vote() -> None:
    c = cluster_at_height(2)
    voter, first = crafted_proposal(c)
    _, second = crafted_proposal(c, payload=(b"other=1",))
    r = c.replicas[voter]
    assert votes_in(r.handle(MessageReceived(first.proposer, first)))
    out = r.handle(MessageReceived(second.proposer, second))
    assert votes_in(out) == []
    reports = [a.evidence for a in out if isinstance(a, ReportEvidence)]
    assert len(reports) == 1 and isinstance(reports[0], ProposalEquivocation)
    assert evidence_valid(reports[0], CHAIN_ID, c.validators)


# ---- block validity -----------------------------------------------------------------------------


def test_a_valid_proposal_gets_a_prepare_vote() -> None:
    c = cluster_at_height(2)
    voter, p = crafted_proposal(c)
    votes = votes_in(c.replicas[voter].handle(MessageReceived(p.proposer, p)))
    assert [(v.phase, v.view, v.block_hash) for v in votes] == [
        (PREPARE, p.view, p.block.block_hash())
    ]


@pytest.mark.parametrize(
    "change",
    [
        {"state_root": b"\x55" * 32},  # not our root after the parent
        {"parent_hash": b"\x66" * 32},  # does not extend the committed chain
        {"timestamp_ms": 0},  # not after the parent's timestamp
        {"timestamp_ms": 10**15},  # too far ahead of our clock
        {"payload_root": b"\x77" * 32},  # header does not commit to the payload
        {"payload": tuple(b"k%d=1" % i for i in range(9))},  # more than max_block_txs
        {"payload": (b"k=" + b"v" * 300,)},  # more than max_block_bytes
        {"proposer": b"\x88" * 32},  # new block not made by the proposal's signer
        {"view": 1},  # an old view's block that is not the justify's block
    ],
    ids=lambda d: next(iter(d)),
)
def test_invalid_blocks_get_no_vote(change: dict[str, Any]) -> None:
    c = cluster_at_height(2, max_block_txs=8, max_block_bytes=256)
    voter, p = crafted_proposal(c, **change)
    assert votes_in(c.replicas[voter].handle(MessageReceived(p.proposer, p))) == []


def test_application_payload_check_can_refuse_a_block() -> None:
    def check(block: Block) -> bool:
        return all(b"=" in tx for tx in block.payload)

    for payload, votes in (((b"bad",), 0), ((b"good=1",), 1)):
        c = cluster_at_height(2)
        voter, p = crafted_proposal(c, payload=payload)
        r = c.replicas[voter]
        r.check_payload = check
        assert len(votes_in(r.handle(MessageReceived(p.proposer, p)))) == votes


def test_proposal_from_a_validator_that_is_not_the_leader_is_ignored() -> None:
    c = cluster_at_height(2)
    voter, p = crafted_proposal(c)
    impostor = next(k for k in c.keys if k.public_key not in (p.proposer, c.keys[voter].public_key))
    forged = dataclasses.replace(
        p,
        proposer=impostor.public_key,
        signature=sign_proposal(impostor, CHAIN_ID, p.view, p.block.block_hash()),
    )
    assert votes_in(c.replicas[voter].handle(MessageReceived(impostor.public_key, forged))) == []
    bad_sig = dataclasses.replace(p, signature=bytes(64))
    assert votes_in(c.replicas[voter].handle(MessageReceived(p.proposer, bad_sig))) == []


def test_vote_waits_for_the_parent_state_root() -> None:
    """A replica that has not executed the parent yet holds the proposal and votes once
    BlockExecuted gives it the root."""
    c = cluster_at_height(2)
    voter, p = crafted_proposal(c)
    r = restore(c, voter)
    r.start(c.now)
    # Pretend the tip is committed but not executed: rebuild from the chain minus execution.
    r.executed_height -= 1
    tip_root = r._roots.pop(r.committed_height)
    assert votes_in(r.handle(MessageReceived(p.proposer, p))) == []
    tip = r.committed_block(r.committed_height)
    assert tip is not None
    out = r.handle(BlockExecuted(tip.block.height, tip.block.block_hash(), tip_root))
    assert len(votes_in(out)) == 1


# ---- catch-up -----------------------------------------------------------------------------------


def test_lagging_replica_catches_up_with_commit_qcs() -> None:
    c = Cluster(4)
    c.down = {3}
    c.start()
    c.run_until_height(4)
    assert c.replicas[3].committed_height == 0
    c.down = set()
    c.run_until_height(7)
    requests = [
        a for a in c.actions_of(3) if isinstance(a, Send) and isinstance(a.message, SyncRequest)
    ]
    assert requests
    executed = [a.block.height for a in c.actions_of(3) if isinstance(a, Execute)]
    assert executed == list(range(1, len(executed) + 1)) and len(executed) >= 7
    hashes = [[e.block.block_hash() for e in chain[:7]] for chain in c.chains]
    assert hashes[3] == hashes[0]


def test_sync_response_with_a_forged_commit_qc_is_ignored() -> None:
    c = cluster_at_height(3)
    fresh = Replica(c.config, c.keys[0], c.validators)
    fresh.start(c.now)
    entry = c.replicas[1].committed_block(1)
    assert entry is not None
    qc = entry.commit_qc
    forged = QuorumCert(
        qc.phase,
        qc.view,
        qc.height,
        qc.block_hash,
        tuple(QCSignature(s.signer, bytes(64)) for s in qc.signatures),
    )
    bad = SyncResponse((CommittedBlock(entry.block, forged),))
    assert not any(
        isinstance(a, Execute) for a in fresh.handle(MessageReceived(c.keys[1].public_key, bad))
    )
    good = SyncResponse((entry,))
    out = fresh.handle(MessageReceived(c.keys[1].public_key, good))
    assert [a.block.height for a in out if isinstance(a, Execute)] == [1]


def test_sync_request_is_answered_with_committed_blocks_and_qcs() -> None:
    c = cluster_at_height(3)
    out = c.replicas[0].handle(MessageReceived(c.keys[1].public_key, SyncRequest(2, 16)))
    responses = [
        a.message for a in out if isinstance(a, Send) and isinstance(a.message, SyncResponse)
    ]
    assert len(responses) == 1
    assert [e.block.height for e in responses[0].blocks][:2] == [2, 3]


# ---- invariants ---------------------------------------------------------------------------------


def test_block_executed_out_of_order_is_an_invariant_failure() -> None:
    c = cluster_at_height(2)
    r = c.replicas[0]
    with pytest.raises(ConsensusInvariantError, match="out of order"):
        r.handle(BlockExecuted(r.executed_height + 5, b"\x00" * 32, b"\x00" * 32))


def test_state_divergence_is_an_invariant_failure() -> None:
    c = cluster_at_height(3)
    fresh = Replica(c.config, c.keys[0], c.validators)
    fresh.start(c.now)
    entries = tuple(e for e in (c.replicas[1].committed_block(h) for h in (1, 2)) if e is not None)
    out = fresh.handle(MessageReceived(c.keys[1].public_key, SyncResponse(entries)))
    assert [a.block.height for a in out if isinstance(a, Execute)] == [1, 2]
    with pytest.raises(ConsensusInvariantError, match="state divergence"):
        fresh.handle(BlockExecuted(1, entries[0].block.block_hash(), b"\x99" * 32))


# ---- pacemaker in the replica -------------------------------------------------------------------


def test_leader_waits_for_the_block_interval_before_asking_for_a_payload() -> None:
    c = Cluster(4)
    c.start()
    c.deliver_all()
    leader = next(i for i, r in enumerate(c.replicas) if r.validators.leader(1) == r.me)
    mine = c.actions_of(leader)
    assert not any(isinstance(a, RequestPayload) for a in mine)
    timers = [a for a in mine if isinstance(a, SetTimer) and a.kind == TimerKind.PROPOSE]
    assert [t.delay_ms for t in timers] == [c.config.block_interval_ms]
    c.fire_propose_timers()
    assert any(isinstance(a, RequestPayload) for a in c.actions_of(leader))


def view_timer_delays(actions: list[Action]) -> list[int]:
    return [a.delay_ms for a in actions if isinstance(a, SetTimer) and a.kind == TimerKind.VIEW]


def test_view_timeouts_double_up_to_the_cap_and_reset_on_commit() -> None:
    c = Cluster(4)
    c.down = {2, 3}  # no quorum: views cannot finish
    c.start()
    r = c.replicas[0]
    delays = []
    for _ in range(6):
        c.deliver_all()
        out = c.handle(0, TimerFired(TimerKind.VIEW, r.view))
        delays += view_timer_delays(out)
    assert delays == [2_000, 4_000, 8_000, 8_000, 8_000, 8_000]
    c.down = set()
    for i in (2, 3):
        c.carry_out(i, "start", c.replicas[i].start(c.now))
    for _ in range(10):
        for i in range(4):
            c.handle(i, TimerFired(TimerKind.VIEW, c.replicas[i].view))
        c.deliver_all()
        if r.committed_height:
            break
        c.fire_propose_timers()
    c.run_until_height(r.committed_height + 1)
    after_commit = [a for j, _, acts in c.log[-200:] if j == 0 for a in acts]
    assert c.config.view_timeout_base_ms in view_timer_delays(after_commit)


def test_a_timed_out_replica_stops_voting_in_that_view_and_waits_for_a_certificate() -> None:
    c = cluster_at_height(2)
    voter, p = crafted_proposal(c)
    r = c.replicas[voter]
    view = r.view
    out = r.handle(TimerFired(TimerKind.VIEW, view))
    assert r.view == view  # does not move on alone
    assert any(
        isinstance(a, Broadcast) and isinstance(a.message, NewView) and a.message.view == view + 1
        for a in out
    )
    assert votes_in(r.handle(MessageReceived(p.proposer, p))) == []


def newview_from(c: Cluster, i: int, view: int) -> NewView:
    from consensus.verify import sign_newview

    r = c.replicas[i]
    high = r.safety.prepare_qc
    return NewView(
        view, high, None, c.keys[i].public_key, sign_newview(c.keys[i], CHAIN_ID, view, high)
    )


def test_join_a_timeout_at_one_third_and_move_at_two_thirds() -> None:
    c = cluster_at_height(2, n=7)
    r = c.replicas[0]
    view = r.view
    target = view + 3

    def receive(i: int) -> list[Action]:
        return r.handle(MessageReceived(c.keys[i].public_key, newview_from(c, i, target)))

    for i in (1, 2):  # 2 of 7: not yet more than 1/3
        assert not any(isinstance(a, Broadcast) for a in receive(i))
    joined = receive(3)  # 3 of 7 > 1/3: join the timeout (4 of 7 with ours), do not move yet
    assert r.view == view
    sent = [a.message for a in joined if isinstance(a, Broadcast)]
    assert [m.view for m in sent if isinstance(m, NewView)] == [target] and len(sent) == 1
    assert persist_before_speech_violations(joined) == []
    assert votes_in(joined) == []
    receive(4)  # 5 of 7 > 2/3: a timeout certificate
    assert r.view == target


def test_prepared_block_survives_a_restart() -> None:
    """A block prepared but not yet committed is persisted with the prepare QC, so that after
    a crash of everyone holding it the next leader can still re-propose it."""
    c = cluster_at_height(2)
    c.fire_propose_timers()
    holder = None
    while c.queue and holder is None:
        j, sender, message = c.queue.popleft()
        c.handle(j, MessageReceived(sender, message))
        holder = next((i for i, s in enumerate(c.safety) if s and s.prepare_block), None)
    assert holder is not None
    safety = c.safety[holder]
    assert safety is not None and safety.prepare_block is not None
    assert safety.prepare_block.block_hash() == safety.prepare_qc.block_hash
    restored = restore(c, holder)
    sent = [a.message for a in restored.start(c.now) if isinstance(a, Send | Broadcast)]
    newviews = [m for m in sent if isinstance(m, NewView)]
    if not newviews:  # the restored replica leads its view: its own NEW-VIEW is not sent
        assert restored.validators.leader(restored.view) == restored.me
        newviews = [restored._latest_newview[restored.me]]
    assert newviews[0].high_block == safety.prepare_block
    # Once the block is committed the persisted copy is dropped.
    c.run_until_height(3)
    final = c.safety[holder]
    assert final is not None and final.prepare_block is None


# ---- rejoining the others' view after an outage ------------------------------------------------


def others_moved_on(lagging_choice: int = 0) -> tuple[Cluster, int, Proposal]:
    """Three of four replicas time out in view v while one (``lag``, never the leader of v+1)
    is cut off: they move to v+1 on their NEW-VIEWs, and the leader of v+1 proposes with a
    justify QC from v-1. Returns the cluster, ``lag`` (still in v, having seen none of it) and
    the proposal addressed to it (taken off the queue, not delivered)."""
    c = cluster_at_height(2)
    c.deliver_all()
    view = c.replicas[0].view
    leader_next = c.index(c.validators.leader(view + 1))[0]
    lag = [i for i in range(4) if i != leader_next][lagging_choice]
    c.down = {lag}
    for i in range(4):
        if i != lag:
            c.handle(i, TimerFired(TimerKind.VIEW, view))
    c.deliver_all()
    assert all(r.view == view + 1 for i, r in enumerate(c.replicas) if i != lag)
    c.fire_propose_timers()
    proposals = [m for j, _, m in c.queue if j == lag and isinstance(m, Proposal)]
    assert len(proposals) == 1 and proposals[0].view == view + 1
    assert c.replicas[lag].view == view
    return c, lag, proposals[0]


def test_a_proposal_after_a_timed_out_view_carries_the_timeout_certificate() -> None:
    c, _, p = others_moved_on()
    assert p.justify.view + 1 < p.view  # the view before ended without a prepare QC
    tc = p.timeout_cert
    assert tc is not None and tc.view == p.view
    assert tc_valid(tc, CHAIN_ID, c.validators)
    # In a view that follows its justify QC's the certificate is left out.
    c.down = set()
    c.run_until_height(4)
    normal = [
        a.message
        for a in c.actions_of(c.index(c.validators.leader(c.replicas[0].view - 1))[0])
        if isinstance(a, Broadcast) and isinstance(a.message, Proposal)
    ]
    assert normal and normal[-1].timeout_cert is None


def test_a_replica_behind_joins_the_view_of_a_proposal_with_a_timeout_certificate() -> None:
    c, lag, p = others_moved_on()
    r = c.replicas[lag]
    view = r.view
    tc = p.timeout_cert
    assert tc is not None
    a, b, d = tc.signatures[:3]
    forged = dataclasses.replace(d, signature=bytes(64))
    refused = [
        dataclasses.replace(p, timeout_cert=None),  # the pre-fix proposal: only buffered
        dataclasses.replace(p, timeout_cert=dataclasses.replace(tc, signatures=(a, b))),
        dataclasses.replace(p, timeout_cert=dataclasses.replace(tc, signatures=(a, b, forged))),
        dataclasses.replace(p, timeout_cert=dataclasses.replace(tc, view=p.view - 1)),
    ]
    for bad in refused:
        assert votes_in(r.handle(MessageReceived(p.proposer, bad))) == []
        assert r.view == view
    out = r.handle(MessageReceived(p.proposer, p))
    assert r.view == p.view
    assert [(v.phase, v.view) for v in votes_in(out)] == [(PREPARE, p.view)]
    assert persist_before_speech_violations(out) == []


def test_a_reconnected_peer_gets_the_latest_newview_and_the_leaders_proposal() -> None:
    c, lag, p = others_moved_on()
    lag_key = c.keys[lag].public_key
    c.queue.clear()  # everything sent while it was away is lost
    c.down = set()
    resent: list[Any] = []
    for i in range(4):
        if i == lag:
            continue
        out = c.handle(i, PeerConnected(lag_key))
        assert persist_before_speech_violations(out) == []
        assert all(a.to == lag_key for a in out if isinstance(a, Send))
        resent += [a.message for a in out if isinstance(a, Send)]
    newviews = [m for m in resent if isinstance(m, NewView)]
    assert sorted(m.view for m in newviews) == [p.view] * 3
    assert all(m == c.replicas[c.index(m.sender)[0]]._latest_newview[m.sender] for m in newviews)
    assert [m for m in resent if isinstance(m, Proposal)] == [p]
    # With them the returning replica is in the others' view and votes at once, no timer.
    c.deliver_all()
    assert c.replicas[lag].view == p.view
    assert c.replicas[lag].safety.voted_prepare_view == p.view
    # Nothing for a key that is not a validator; the replica itself never sends to itself.
    outsider = keys(5)[4].public_key
    assert c.replicas[0].handle(PeerConnected(outsider)) == []
    assert c.replicas[0].handle(PeerConnected(c.keys[0].public_key)) == []


def test_a_replica_that_entered_its_view_silently_signs_a_fresh_newview_for_a_peer() -> None:
    c, lag, p = others_moved_on()
    r = c.replicas[lag]
    r.handle(MessageReceived(p.proposer, p))  # enters p.view without announcing it
    assert r._latest_newview[r.me].view < r.view
    out = r.handle(PeerConnected(c.keys[(lag + 1) % 4].public_key))
    sent = [a.message for a in out if isinstance(a, Send)]
    assert [m.view for m in sent if isinstance(m, NewView)] == [p.view] and len(sent) == 1
    assert persist_before_speech_violations(out) == []


def test_after_quorum_returns_the_next_commit_needs_no_view_timer() -> None:
    """Two of four down while the survivors' view timeouts double; the two restart in the
    view they crashed in. With the NEW-VIEWs re-sent on reconnect, the next block commits
    without any view timer firing (before, everyone waited for the survivors' next timeout)."""
    c = cluster_at_height(2)
    c.deliver_all()
    height = c.replicas[0].committed_height
    c.down = {2, 3}
    for _ in range(4):
        for i in (0, 1):
            c.handle(i, TimerFired(TimerKind.VIEW, c.replicas[i].view))
        c.deliver_all()
    assert view_timer_delays(c.actions_of(0))[-1] == c.config.view_timeout_cap_ms
    c.down = set()
    for i in (2, 3):
        c.replicas[i] = restore(c, i)
        c.carry_out(i, "start", c.replicas[i].start(c.now))
    c.deliver_all()
    for i in (2, 3):
        for j in range(4):
            if j != i:
                c.handle(j, PeerConnected(c.keys[i].public_key))
                c.handle(i, PeerConnected(c.keys[j].public_key))
    for _ in range(5):
        c.deliver_all()
        c.fire_propose_timers()
    c.deliver_all()
    assert all(r.committed_height > height for r in c.replicas)
def forged_copy(qc: QuorumCert) -> QuorumCert:
    """``qc`` with every signature replaced by zeros: the same claim, no proof."""
    signatures = tuple(QCSignature(s.signer, bytes(64)) for s in qc.signatures)
    return QuorumCert(qc.phase, qc.view, qc.height, qc.block_hash, signatures)


def test_a_forged_qc_is_reported_against_its_sender_and_a_genuine_old_one_is_not() -> None:
    c = cluster_at_height(3)
    replica, sender = c.replicas[0], c.keys[1].public_key
    entry = c.replicas[1].committed_block(2)
    assert entry is not None
    forged = Decide(forged_copy(entry.commit_qc))
    faults = [
        a for a in replica.handle(MessageReceived(sender, forged)) if isinstance(a, PeerFault)
    ]
    assert faults == [PeerFault(sender, "invalid_qc")]
    # Again (the verdict is cached): each forged message is reported.
    again = replica.handle(MessageReceived(sender, forged))
    assert [a for a in again if isinstance(a, PeerFault)] == faults
    # A genuine DECIDE of a past view is stale, not a fault.
    genuine = replica.handle(MessageReceived(sender, Decide(entry.commit_qc)))
    assert not any(isinstance(a, PeerFault) for a in genuine)
    # The same holds for the QCs in a sync response.
    bad_sync = SyncResponse((CommittedBlock(entry.block, forged.qc),))
    fresh = Replica(c.config, c.keys[0], c.validators)
    fresh.start(c.now)
    first = c.replicas[1].committed_block(1)
    assert first is not None
    out = fresh.handle(MessageReceived(sender, SyncResponse((first, *bad_sync.blocks))))
    assert [a for a in out if isinstance(a, PeerFault)] == [PeerFault(sender, "invalid_qc")]
    assert [a.block.height for a in out if isinstance(a, Execute)] == [1]
