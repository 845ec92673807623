"""Validator sets per epoch: stake-weighted quorums and leaders, the set of each height, and the
hand-over rule (a QC of a lower height, possibly formed by the previous epoch's set, never
releases a lock)."""

from __future__ import annotations

import pytest

from consensus import (
    COMMIT,
    PRECOMMIT,
    PREPARE,
    Action,
    Block,
    BlockExecuted,
    BlockHeader,
    ClockTick,
    CommittedBlock,
    ConsensusInvariantError,
    Decide,
    MessageReceived,
    Proposal,
    QuorumCert,
    Replica,
    SafetyData,
    Send,
    SyncRequest,
    ValidatorSet,
    Vote,
)
from consensus.epochs import EpochSets, epoch_of, is_epoch_end
from consensus.quorum import qc_valid
from consensus.types import QCSignature, genesis_block, payload_root
from consensus.validators import MAX_SCHEDULE_VIEWS, leader_schedule, rotation_weights
from consensus.verify import sign_proposal, sign_vote
from state_machine.crypto import Keypair, sha256
from tests.consensus.harness import CHAIN_ID, T0, config
from tests.sim.app import KVApp
from tests.sim.mutants import NoHandOver


def named_keys(tag: str, n: int) -> list[Keypair]:
    return [Keypair(sha256(b"epochs-%s-%d" % (tag.encode(), i))) for i in range(n)]


def make_qc(signers: list[Keypair], phase: int, view: int, height: int, block: bytes) -> QuorumCert:
    votes = [sign_vote(k, CHAIN_ID, phase, view, height, block) for k in signers]
    votes.sort(key=lambda v: v.voter)
    return QuorumCert(
        phase, view, height, block, tuple(QCSignature(v.voter, v.signature) for v in votes)
    )


# ---- stake-weighted quorums and leaders --------------------------------------------------------


def test_a_quorum_is_more_than_two_thirds_of_the_stake_not_of_the_count() -> None:
    ks = named_keys("q", 4)
    validators = ValidatorSet([(ks[0].public_key, 7), *[(k.public_key, 1) for k in ks[1:]]])
    genesis_hash = genesis_block(T0).block_hash()
    block = sha256(b"block")
    three_light = make_qc(ks[1:], PREPARE, 1, 1, block)  # 3 of 4 members, 3 of 10 stake
    assert not qc_valid(three_light, CHAIN_ID, validators, genesis_hash)
    heavy_and_one = make_qc(ks[:2], PREPARE, 1, 1, block)  # 2 of 4 members, 8 of 10 stake
    assert qc_valid(heavy_and_one, CHAIN_ID, validators, genesis_hash)


def test_leader_rotation_is_stake_weighted_spread_and_round_robin_for_equal_stake() -> None:
    assert leader_schedule((1, 1, 1, 1)) == (0, 1, 2, 3)
    schedule = leader_schedule((4, 2, 1, 1))
    assert [schedule.count(i) for i in range(4)] == [4, 2, 1, 1]
    # The heaviest validator (half the stake) leads every other view, not four in a row.
    assert all(schedule[i] != schedule[i + 1] for i in range(len(schedule) - 1))
    ks = named_keys("r", 3)
    validators = ValidatorSet(
        [(ks[0].public_key, 30), (ks[1].public_key, 20), (ks[2].public_key, 10)]
    )
    leaders = [validators.leader(v) for v in range(1, 601)]
    assert [leaders.count(k.public_key) for k in ks] == [300, 200, 100]


def test_rotation_weights_of_large_stakes_are_scaled_to_the_schedule_cap() -> None:
    weights = rotation_weights((10**12, 3 * 10**12, 7))
    assert sum(weights) <= MAX_SCHEDULE_VIEWS and min(weights) >= 1
    assert abs(weights[1] / weights[0] - 3) < 0.01


# ---- the set of each height --------------------------------------------------------------------


def test_epoch_arithmetic() -> None:
    assert [epoch_of(h, 3) for h in range(8)] == [0, 0, 0, 0, 1, 1, 1, 2]
    assert [h for h in range(10) if is_epoch_end(h, 3)] == [3, 6, 9]
    assert epoch_of(10**9, 0) == 0 and not is_epoch_end(3, 0)


def test_sets_are_added_in_order_once_and_a_different_second_set_is_divergence() -> None:
    a = ValidatorSet([(k.public_key, 1) for k in named_keys("a", 4)])
    b = ValidatorSet([(k.public_key, 2) for k in named_keys("b", 4)])
    sets = EpochSets.from_genesis(3, a)
    assert sets.for_height(6) is a and sets.for_height(7) is None
    assert sets.add(2, b) and not sets.add(2, b)
    assert sets.for_height(7) is b
    with pytest.raises(ConsensusInvariantError):
        sets.add(2, a)
    with pytest.raises(ConsensusInvariantError):
        sets.add(4, a)


# ---- a replica across a hand-over -------------------------------------------------------------

LENGTH = 2  # epochs 0 and 1 (heights 1..4) old set, epoch 2 (heights 5, 6) new set
OLD = named_keys("old", 4)
NEW = named_keys("new", 4)
OLD_SET = ValidatorSet([(k.public_key, 1) for k in OLD])
NEW_SET = ValidatorSet([(k.public_key, 1) for k in NEW])


def old_chain() -> tuple[list[CommittedBlock], bytes]:
    """Heights 1..4, certified by the old set; returns them and the state root after 4."""
    app = KVApp()
    parent = genesis_block(T0)
    chain = []
    for height in range(1, 5):
        payload = (b"k%d=v" % height,)
        header = BlockHeader(
            height,
            height,
            parent.block_hash(),
            T0 + 500 * height,
            OLD[height % 4].public_key,
            payload_root(payload),
            app.root,
        )
        block = Block(header, payload)
        app.apply(block)
        qc = make_qc(OLD, COMMIT, height, height, block.block_hash())
        chain.append(CommittedBlock(block, qc))
        parent = block
    return chain, app.root


def sets_after_old_chain() -> EpochSets:
    sets = EpochSets.from_genesis(LENGTH, OLD_SET)
    sets.add(2, NEW_SET)  # fixed by executing block 2, the end of epoch 0
    sets.add(3, NEW_SET)  # fixed by executing block 4, the end of epoch 1
    return sets


def fresh_block(
    chain: list[CommittedBlock], root: bytes, view: int, proposer: Keypair, tag: bytes
) -> Block:
    tip = chain[-1].block
    payload = (tag,)
    header = BlockHeader(
        5,
        view,
        tip.block_hash(),
        tip.header.timestamp_ms + 500,
        proposer.public_key,
        payload_root(payload),
        root,
    )
    return Block(header, payload)


def victim(cls: type[Replica]) -> tuple[Replica, list[CommittedBlock], bytes, Keypair]:
    """An honest member of the new set, locked on block B at height 5 (view 10): B's commit
    QC formed and B is committed elsewhere, but this replica missed the DECIDE."""
    chain, root = old_chain()
    me = NEW[1]
    b = fresh_block(chain, root, 10, new_set_leader(10), b"B=1")
    prepare = make_qc(NEW, PREPARE, 10, 5, b.block_hash())
    lock = make_qc(NEW, PRECOMMIT, 10, 5, b.block_hash())
    safety = SafetyData(CHAIN_ID, 10, 10, 10, 10, 0, lock, prepare, b)
    cfg = config()
    replica = cls.restore(cfg, me, sets_after_old_chain(), None, safety, chain, root)
    replica.start(T0 + 5_000)
    replica.handle(ClockTick(T0 + 5_000))
    return replica, chain, root, me


def new_set_leader(view: int) -> Keypair:
    key = NEW_SET.leader(view)
    return next(k for k in NEW if k.public_key == key)


def hand_over_attack(replica: Replica, chain: list[CommittedBlock], root: bytes) -> list[Action]:
    """The departed old set (its keys no longer at stake) signs a prepare QC for the committed
    block 4 in view 11, after the lock's view 10; the new set's leader of view 12 proposes a
    conflicting block B' at height 5, justified by that QC."""
    block4 = chain[-1].block
    forged = make_qc(OLD, PREPARE, 11, 4, block4.block_hash())
    leader = new_set_leader(12)
    b2 = fresh_block(chain, root, 12, leader, b"B=2")
    signature = sign_proposal(leader, CHAIN_ID, 12, b2.block_hash())
    proposal = Proposal(12, b2, forged, leader.public_key, signature)
    return replica.handle(MessageReceived(leader.public_key, proposal))


def prepare_votes(actions: list[Action]) -> list[Vote]:
    return [
        a.message
        for a in actions
        if isinstance(a, Send) and isinstance(a.message, Vote) and a.message.phase == PREPARE
    ]


def test_a_lower_height_qc_of_the_previous_set_does_not_release_a_lock() -> None:
    replica, chain, root, _ = victim(Replica)
    actions = hand_over_attack(replica, chain, root)
    assert replica.view == 12  # the QC of view 11 is valid (old set, height 4): it joined
    assert prepare_votes(actions) == []


def test_without_the_hand_over_rule_the_lock_is_released_and_a_conflicting_block_voted() -> None:
    """The attack is real: the same messages make a replica without the rule vote for B'."""
    replica, chain, root, me = victim(NoHandOver)
    votes = prepare_votes(hand_over_attack(replica, chain, root))
    assert len(votes) == 1 and votes[0].voter == me.public_key and votes[0].height == 5


def test_a_qc_signed_by_the_wrong_epochs_set_is_invalid_and_votes_of_non_members_ignored() -> None:
    replica, chain, root, _ = victim(Replica)
    b = fresh_block(chain, root, 13, new_set_leader(13), b"C=1")
    by_old_set = make_qc(OLD, PREPARE, 12, 5, b.block_hash())
    assert not replica._qc_ok(by_old_set)
    assert replica._qc_ok(make_qc(NEW, PREPARE, 12, 5, b.block_hash()))
    # An old-set validator's vote for a height of the new epoch is not even collected.
    vote = sign_vote(OLD[0], CHAIN_ID, PREPARE, replica.view, 5, b.block_hash())
    assert replica.handle(MessageReceived(OLD[0].public_key, vote)) == []


def test_the_last_block_of_an_epoch_must_report_the_set_two_epochs_on() -> None:
    chain, _root = old_chain()
    cfg = config()
    sets = EpochSets.from_genesis(LENGTH, OLD_SET)
    replica = Replica(cfg, OLD[0], sets)
    replica.start(T0)
    for entry in chain[:2]:
        replica._commit_block(entry.block, entry.commit_qc, entry.block.block_hash())
    app = KVApp()
    first = chain[0].block
    replica.handle(BlockExecuted(1, first.block_hash(), app.apply(first)))
    second = chain[1].block
    with pytest.raises(ConsensusInvariantError, match="no next set"):
        replica.handle(BlockExecuted(2, second.block_hash(), app.apply(second)))


def test_a_claim_about_an_unknown_epoch_costs_one_bounded_sync_request_per_view() -> None:
    """A DECIDE for a height whose set we do not know cannot be checked: the replica asks the
    sender for one batch after its tip (not up to the claimed height) and asks again only in
    a later view or after a view timeout."""
    replica, _, _, _ = victim(Replica)
    liar = NEW[2]
    claim = make_qc(NEW, COMMIT, 99, 10**9, sha256(b"far"))
    actions = replica.handle(MessageReceived(liar.public_key, Decide(claim)))
    requests = [
        (a.to, a.message)
        for a in actions
        if isinstance(a, Send) and isinstance(a.message, SyncRequest)
    ]
    assert requests == [(liar.public_key, SyncRequest(5, replica.config.sync_batch_blocks))]
    assert replica._sync_target <= 4 + replica.config.sync_batch_blocks
    again = replica.handle(MessageReceived(liar.public_key, Decide(claim)))
    assert not any(isinstance(a, Send) and isinstance(a.message, SyncRequest) for a in again)
