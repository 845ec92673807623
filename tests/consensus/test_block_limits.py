"""Governed block limits in the replica: the limits a chain schedules (reported with
``BlockExecuted``) bind proposals from their height on, and not before; the replica's own
proposals follow them; a restarted replica takes them from the driver."""

from __future__ import annotations

from typing import Any

from consensus import Block, BlockExecuted, Execute, MessageReceived, Replica
from consensus.block_limits import BlockLimits
from tests.consensus.harness import Cluster
from tests.consensus.test_replica import crafted_proposal, votes_in

FROM_HEIGHT = 5
LIMITS = ((FROM_HEIGHT, 2, 256),)  # from block 5: at most 2 transactions, 256 bytes


class GovernedCluster(Cluster):
    """A cluster whose application scheduled block limits (as a SetBlockLimits proposal
    executed at block FROM_HEIGHT - margin would): every BlockExecuted reports them."""

    def execute(self, i: int, block: Block, action: Execute) -> None:
        root = self.apps[i].apply(block)
        self.chains[i].append(action)
        event = BlockExecuted(block.height, block.block_hash(), root, None, block_limits=LIMITS)
        self.handle(i, event)


def governed_cluster(height: int, **cfg: Any) -> GovernedCluster:
    c = GovernedCluster(4, max_block_txs=8, max_block_bytes=4096, **cfg)
    c.start()
    c.run_until_height(height)
    return c


THREE_TXS = (b"a=1", b"b=2", b"c=3")


def voted(block_height: int, payload: tuple[bytes, ...]) -> bool:
    """Does a replica of a fresh governed cluster vote for a proposal of ``block_height``
    carrying ``payload`` (one proposal per cluster: a second one in the view is evidence)?"""
    c = governed_cluster(block_height - 1)
    voter, p = crafted_proposal(c, payload=payload)
    assert p.block.height == block_height
    return bool(votes_in(c.replicas[voter].handle(MessageReceived(p.proposer, p))))


def test_an_over_limit_proposal_is_accepted_before_the_height_and_refused_from_it() -> None:
    assert voted(FROM_HEIGHT - 1, THREE_TXS)
    assert not voted(FROM_HEIGHT, THREE_TXS)
    assert voted(FROM_HEIGHT, THREE_TXS[:2])
    assert voted(FROM_HEIGHT - 1, (b"k=" + b"v" * 300,))
    assert not voted(FROM_HEIGHT, (b"k=" + b"v" * 300,))  # over 256 bytes


def test_without_a_schedule_the_configured_limits_rule() -> None:
    c = Cluster(4, max_block_txs=8, max_block_bytes=4096)
    c.start()
    c.run_until_height(FROM_HEIGHT - 1)
    voter, p = crafted_proposal(c, payload=THREE_TXS)
    assert votes_in(c.replicas[voter].handle(MessageReceived(p.proposer, p)))


def test_the_replicas_own_proposals_follow_the_scheduled_limits() -> None:
    c = governed_cluster(1)
    c.payload = (b"a=1", b"b=2", b"c=3", b"d=4", b"e=5")  # type: ignore[assignment]
    c.run_until_height(FROM_HEIGHT + 2)
    sizes = {a.block.height: len(a.block.payload) for a in c.chains[0]}
    assert all(sizes[h] == 5 for h in range(2, FROM_HEIGHT))
    assert all(sizes[h] == 2 for h in range(FROM_HEIGHT, FROM_HEIGHT + 3))


def test_a_restarted_replica_learns_the_schedule_from_the_driver() -> None:
    c = governed_cluster(FROM_HEIGHT - 1)
    voter, p = crafted_proposal(c, payload=THREE_TXS)
    old = c.replicas[voter]
    safety = c.safety[voter]
    assert safety is not None
    committed = [old.committed_block(h) for h in range(1, old.committed_height + 1)]
    restored = Replica.restore(
        c.config, c.keys[voter], c.validators, None, safety,
        [b for b in committed if b is not None], c.apps[voter].root,
    )  # fmt: skip
    assert restored.block_limits.at(FROM_HEIGHT) == (8, 4096)  # not told yet
    restored.learn_block_limits(LIMITS)
    assert restored.block_limits.at(FROM_HEIGHT) == (2, 256)
    restored.start(c.now)
    assert votes_in(restored.handle(MessageReceived(p.proposer, p))) == []


def test_superseded_changes_are_forgotten_and_the_latest_rules() -> None:
    limits = BlockLimits(8, 4096)
    limits.learn([(5, 2, 256), (9, 3, 512), (20, 4, 1024)])
    assert [limits.at(h) for h in (4, 5, 8, 9, 19, 20)] == [
        (8, 4096), (2, 256), (2, 256), (3, 512), (3, 512), (4, 1024),
    ]  # fmt: skip
    limits.forget_before(10)
    assert limits.at(10) == (3, 512) and limits.at(20) == (4, 1024)
    assert limits.at(6) == (8, 4096)  # below the kept change: not asked any more
