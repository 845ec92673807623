"""Equivocation evidence, forged QCs and block sync against a real four-validator cluster.

Validator 3 is stopped and the test holds its key: a validator that misbehaves. It

* equivocates for real: two PREPARE votes of one view for different blocks, sent to node 0.
  Node 0's replica proves it, logs it once, counts it once and gossips the evidence; nodes 1
  and 2 verify the gossiped evidence and log and count it once too. The same evidence sent
  again, to any node, changes no count;
* forges evidence naming validator 1: not counted, not logged, and the sender is penalised;
* sends a DECIDE whose commit QC does not verify: counted and penalised as ``invalid_qc``;
* asks node 0 again and again for the widest block sync: answers stop at the per-peer budget
  and the refusals are counted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
import trio

from consensus.types import (
    EVIDENCE,
    PREPARE,
    Decide,
    Message,
    QCSignature,
    QuorumCert,
    SyncRequest,
    SyncResponse,
    VoteEquivocation,
)
from consensus.verify import sign_vote
from node.config import Config
from node.node import CHANNEL_EVIDENCE
from node.sync_serve import REQUEST_COST_BYTES
from p2p.frames import encode_frame
from state_machine.codec import encode
from tests.cluster import Cluster
from tests.integration.test_restart_equivocation import FRAME_BYTES_MAX, PeerLink

pytestmark = pytest.mark.slow

SYNC_BYTES_PER_S = 1024
SYNC_BURST_BYTES = 64 * 1024
HOSTILE = 3
WAIT_S = 20.0


def settings(config: Config) -> Config:
    return dataclasses.replace(
        config,
        # Validator 3 is stopped: keep its turns to lead short.
        consensus=dataclasses.replace(config.consensus, view_timeout_cap_ms=4_000),
        sync=dataclasses.replace(
            config.sync, serve_bytes_per_s=SYNC_BYTES_PER_S, serve_burst_bytes=SYNC_BURST_BYTES
        ),
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("faults"), block_ms=150, configure=settings) as cluster:
        cluster.start_all()
        cluster.wait_height(20)  # enough blocks that one wide sync answer is large
        assert cluster.stop(HOSTILE) == 0
        yield cluster


async def send(cluster: Cluster, node: int, payloads: list[bytes]) -> None:
    """Connect to ``node`` as the hostile validator and send ``payloads`` as frames."""
    key = cluster.validator_key(HOSTILE)
    link = await PeerLink.connect(key, cluster.layout.ports[node].p2p)
    for payload in payloads:
        await link.stream.send_all(encode_frame(payload, FRAME_BYTES_MAX))
    await trio.sleep(0.5)  # let the node read them before the connection closes
    await link.aclose()


def consensus_frame(message: Message) -> bytes:
    from consensus.types import encode_message
    from node.node import CHANNEL_CONSENSUS

    return bytes([CHANNEL_CONSENSUS]) + encode_message(message)


def evidence_frame(evidence: VoteEquivocation) -> bytes:
    return bytes([CHANNEL_EVIDENCE]) + encode(EVIDENCE.dump(evidence))


def evidence_logs(cluster: Cluster, i: int, offender: bytes) -> list[dict[str, object]]:
    events = ("equivocation", "equivocation_evidence_received")
    return [
        r
        for event in events
        for r in cluster.log_lines(i, event)
        if r.get("offender") == offender.hex()[:16]
    ]


def metric_reaches(cluster: Cluster, i: int, name: str, at_least: float, **labels: str) -> None:
    cluster.wait_for(
        lambda: cluster.metric(i, name, **labels) >= at_least,
        f"{name}{labels} >= {at_least} on node {i}",
        timeout_s=WAIT_S,
    )


def test_a_real_equivocation_is_proven_gossiped_logged_and_counted_once(cluster: Cluster) -> None:
    key = cluster.validator_key(HOSTILE)
    status = cluster.status(0)
    assert status is not None
    view, height = int(status["view"]) + 3, int(status["height"]) + 1
    vote_a = sign_vote(key, cluster.chain_id, PREPARE, view, height, b"\x0a" * 32)
    vote_b = sign_vote(key, cluster.chain_id, PREPARE, view, height, b"\x0b" * 32)
    trio.run(send, cluster, 0, [consensus_frame(vote_a), consensus_frame(vote_b)])

    for i in (0, 1, 2):  # node 0 proved it; 1 and 2 got it by gossip and proved it again
        metric_reaches(cluster, i, "perpbft_equivocation_evidence_total", 1)
    assert [r["event"] for r in evidence_logs(cluster, 0, key.public_key)] == ["equivocation"]
    for i in (1, 2):
        records = evidence_logs(cluster, i, key.public_key)
        assert [r["event"] for r in records] == ["equivocation_evidence_received"], records
        assert records[0]["view"] == view

    # The same fact again, as votes and as evidence, to every node: nothing new is counted.
    evidence = VoteEquivocation(vote_a, vote_b)
    trio.run(send, cluster, 0, [consensus_frame(vote_a), consensus_frame(vote_b)])
    for i in (1, 2):
        before = cluster.metric(i, "perpbft_evidence_ignored_total", reason="duplicate")
        trio.run(send, cluster, i, [evidence_frame(evidence)])
        metric_reaches(cluster, i, "perpbft_evidence_ignored_total", before + 1, reason="duplicate")
    for i in (0, 1, 2):
        assert cluster.metric(i, "perpbft_equivocation_evidence_total") == 1
        assert len(evidence_logs(cluster, i, key.public_key)) == 1


def test_forged_evidence_is_not_counted_and_penalises_the_sender(cluster: Cluster) -> None:
    honest = cluster.validator_key(1)
    status = cluster.status(0)
    assert status is not None
    view = int(status["view"])
    # "Validator 1 voted twice": two votes naming it, signed by the hostile key.
    hostile = cluster.validator_key(HOSTILE)
    forged_a = sign_vote(hostile, cluster.chain_id, PREPARE, view, 5, b"\x0c" * 32)
    forged_b = sign_vote(hostile, cluster.chain_id, PREPARE, view, 5, b"\x0d" * 32)
    forged = VoteEquivocation(
        dataclasses.replace(forged_a, voter=honest.public_key),
        dataclasses.replace(forged_b, voter=honest.public_key),
    )
    counted = cluster.metric(0, "perpbft_equivocation_evidence_total")
    trio.run(send, cluster, 0, [evidence_frame(forged)] * 3)
    metric_reaches(cluster, 0, "perpbft_p2p_invalid_messages_total", 3, reason="forged_evidence")
    metric_reaches(cluster, 0, "perpbft_p2p_penalties_total", 3, reason="forged_evidence")
    assert cluster.metric(0, "perpbft_evidence_ignored_total", reason="forged") >= 3
    assert cluster.metric(0, "perpbft_equivocation_evidence_total") == counted
    assert evidence_logs(cluster, 0, honest.public_key) == []
    for i in (1, 2):  # never gossiped
        assert evidence_logs(cluster, i, honest.public_key) == []


def test_a_decide_with_a_forged_qc_is_counted_and_penalised(cluster: Cluster) -> None:
    tip = cluster.height(0)
    qc = QuorumCert.from_wire(bytes.fromhex(cluster.block(0, tip)["commit_qc"]["wire"]))
    forged = dataclasses.replace(
        qc, signatures=tuple(QCSignature(s.signer, bytes(64)) for s in qc.signatures)
    )
    trio.run(send, cluster, 0, [consensus_frame(Decide(forged))])
    metric_reaches(cluster, 0, "perpbft_p2p_invalid_messages_total", 1, reason="invalid_qc")
    metric_reaches(cluster, 0, "perpbft_p2p_penalties_total", 1, reason="invalid_qc")
    # The genuine DECIDE of the same block is merely old, not a fault.
    trio.run(send, cluster, 0, [consensus_frame(Decide(qc))])
    assert cluster.metric(0, "perpbft_p2p_invalid_messages_total", reason="invalid_qc") == 1


async def ask_for_sync(cluster: Cluster, requests: int) -> int:
    """Send ``requests`` of the widest sync request at once; the bytes of the answers."""
    link = await PeerLink.connect(cluster.validator_key(HOSTILE), cluster.layout.ports[0].p2p)
    request = consensus_frame(SyncRequest(1, 1_000))
    for _ in range(requests):
        await link.stream.send_all(encode_frame(request, FRAME_BYTES_MAX))
    received = 0
    with trio.move_on_after(3.0):
        while True:
            seen = await link.receive_until(lambda m: isinstance(m, SyncResponse))
            received += sum(len(consensus_frame(m)) for m in seen if isinstance(m, SyncResponse))
    await link.aclose()
    return received


def test_block_sync_is_served_within_a_per_peer_budget(cluster: Cluster) -> None:
    def outcome(name: str) -> float:
        return cluster.metric(0, "perpbft_sync_requests_total", peer_type="validator", outcome=name)

    served_bytes_before = cluster.metric(
        0, "perpbft_sync_served_bytes_total", peer_type="validator"
    )
    served_before, refused_before = outcome("served"), outcome("refused")
    received = trio.run(ask_for_sync, cluster, 40)
    served_bytes = (
        cluster.metric(0, "perpbft_sync_served_bytes_total", peer_type="validator")
        - served_bytes_before
    )
    served, refused = outcome("served") - served_before, outcome("refused") - refused_before
    assert received > 0 and served_bytes >= received
    # The burst holds four requests' cost: a few answers, then refusals, for 40 wide requests
    # that without the budget would all be answered in full.
    assert 1 <= served <= SYNC_BURST_BYTES // REQUEST_COST_BYTES, (served, refused)
    assert refused >= 40 - SYNC_BURST_BYTES // REQUEST_COST_BYTES, (served, refused)
    # Bytes: at most the burst plus the refill over the seconds the test took.
    assert served_bytes <= SYNC_BURST_BYTES + 10 * SYNC_BYTES_PER_S, served_bytes
