"""A validator restarted in the middle of a view does not sign a second block in it.

Twins style, against a real ``perpbft start`` process. Of a four-validator testnet only the
victim runs; the test holds the other three keys and plays the leader of view 1, which
equivocates:

1. it proposes block A in view 1; the victim votes PREPARE for A;
2. the victim is killed (SIGKILL) and restarted, back in view 1 from its safety record;
3. the leader proposes block B, another block at the same height in the same view, then sends
   a prepare QC for A signed with the three keys it holds. The victim's PRE-COMMIT vote for A
   shows it handled B (one connection, handled in order), and it must not have voted for B
   before it;
4. killed and restarted again, it gets a prepare QC for B (the held keys sign anything), then
   a pre-commit QC for A: it must answer with a COMMIT vote for A and no PRE-COMMIT vote for B.

Its debug record of signatures must hold no two blocks in one view and phase. Without the
safety record written before each vote left, step 3 gets a vote for B.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio

from consensus.types import (
    COMMIT,
    PRECOMMIT,
    PREPARE,
    Block,
    BlockHeader,
    Commit,
    Message,
    PreCommit,
    Proposal,
    QCSignature,
    QuorumCert,
    Vote,
    decode_message,
    encode_message,
    genesis_block,
    genesis_qc,
    payload_root,
)
from consensus.validators import ValidatorSet
from consensus.verify import sign_proposal, sign_vote
from node.chain import genesis_state_root
from node.config import Config
from node.node import CHANNEL_CONSENSUS
from p2p.frames import FrameDecoder, encode_frame
from p2p.tls import make_tls_contexts
from state_machine.crypto import Keypair
from state_machine.genesis import Genesis, genesis_from_json
from tests.cluster import Cluster
from tests.integration.test_cluster_faults import equivocations

pytestmark = pytest.mark.slow

VIEW = 1
FRAME_BYTES_MAX = 4 * 1024 * 1024
REPLY_TIMEOUT_S = 30.0


def slow_views_with_signed_record(config: Config) -> Config:
    """View 1 must not time out while the test plays it (a timeout also stops the voting)."""
    return dataclasses.replace(
        config,
        consensus=dataclasses.replace(
            config.consensus, view_timeout_base_ms=120_000, view_timeout_cap_ms=120_000
        ),
        log=dataclasses.replace(config.log, level="debug"),
    )


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with Cluster(tmp_path, configure=slow_views_with_signed_record) as cluster:
        yield cluster


class Leader:
    """The equivocating leader of ``VIEW``: the keys of every validator but the victim."""

    def __init__(self, cluster: Cluster, victim: int) -> None:
        self.genesis: Genesis = genesis_from_json(
            (cluster.layout.homes[victim] / "config" / "genesis.json").read_text()
        )
        self.chain_id = self.genesis.chain_id
        validators = ValidatorSet([(v.pubkey, v.power) for v in self.genesis.validators])
        keys = [cluster.validator_key(i) for i in range(len(cluster.layout.homes))]
        self.key = next(k for k in keys if k.public_key == validators.leader(VIEW))
        self.signers = [k for i, k in enumerate(keys) if i != victim]
        assert self.key in self.signers, "the victim leads view 1: pick another victim"
        self.victim_key = keys[victim].public_key
        self.genesis_hash = genesis_block(self.genesis.genesis_time_ms).block_hash()

    def block(self, timestamp_ms: int) -> Block:
        """A valid height-1 block on genesis; another timestamp gives another block."""
        header = BlockHeader(
            height=1,
            view=VIEW,
            parent_hash=self.genesis_hash,
            timestamp_ms=timestamp_ms,
            proposer=self.key.public_key,
            payload_root=payload_root(()),
            state_root=genesis_state_root(self.genesis),
        )
        return Block(header, ())

    def proposal(self, block: Block) -> Proposal:
        signature = sign_proposal(self.key, self.chain_id, VIEW, block.block_hash())
        return Proposal(VIEW, block, genesis_qc(self.genesis_hash), self.key.public_key, signature)

    def qc(self, phase: int, block: Block) -> QuorumCert:
        """Signed by the three keys the test holds: a quorum without the victim."""
        block_hash = block.block_hash()
        votes = [sign_vote(k, self.chain_id, phase, VIEW, 1, block_hash) for k in self.signers]
        signatures = tuple(QCSignature(v.voter, v.signature) for v in votes)
        return QuorumCert(phase, VIEW, 1, block_hash, signatures)


class PeerLink:
    """A p2p connection to the victim with the node's own TLS code, as the leader's key."""

    def __init__(self, stream: trio.SSLStream[trio.SocketStream]) -> None:
        self.stream = stream
        self.decoder = FrameDecoder(FRAME_BYTES_MAX)
        self.pending: list[Message] = []

    @classmethod
    async def connect(cls, key: Keypair, port: int) -> PeerLink:
        tcp = await trio.open_tcp_stream("127.0.0.1", port)
        stream = trio.SSLStream(tcp, make_tls_contexts(key.seed).client, server_side=False)
        await stream.do_handshake()
        return cls(stream)

    async def send(self, message: Message) -> None:
        payload = bytes([CHANNEL_CONSENSUS]) + encode_message(message)
        await self.stream.send_all(encode_frame(payload, FRAME_BYTES_MAX))

    async def receive_until(self, wanted: Callable[[Message], bool]) -> list[Message]:
        """Every consensus message up to and including the first ``wanted`` one."""
        seen: list[Message] = []
        with trio.fail_after(REPLY_TIMEOUT_S):
            while True:
                while self.pending:
                    message = self.pending.pop(0)
                    seen.append(message)
                    if wanted(message):
                        return seen
                data = await self.stream.receive_some(65536)
                if not data:
                    raise AssertionError(f"the victim closed the connection after {seen}")
                for frame in self.decoder.feed(data):
                    if frame and frame[0] == CHANNEL_CONSENSUS:
                        self.pending.append(decode_message(frame[1:]))

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


def is_vote(phase: int, block: Block) -> Callable[[Message], bool]:
    def match(message: Message) -> bool:
        return (
            isinstance(message, Vote)
            and message.phase == phase
            and message.view == VIEW
            and message.block_hash == block.block_hash()
        )

    return match


async def propose_and_get_vote(leader: Leader, port: int, block_a: Block) -> None:
    link = await PeerLink.connect(leader.key, port)
    await link.send(leader.proposal(block_a))
    await link.receive_until(is_vote(PREPARE, block_a))
    await link.aclose()


async def send_then_probe(
    leader: Leader, port: int, bait: Message, probe: Message, answer: Callable[[Message], bool]
) -> list[Message]:
    """Send ``bait`` then ``probe``; everything the victim sent up to its ``answer`` to the
    probe (so anything it answered to the bait is in there too)."""
    link = await PeerLink.connect(leader.key, port)
    await link.send(bait)
    await link.send(probe)
    seen = await link.receive_until(answer)
    await link.aclose()
    return seen


def restart(cluster: Cluster, victim: int) -> None:
    cluster.kill(victim)
    cluster.start(victim)
    cluster.wait_ready(victim)
    # The API answers before the replica exists (its view reads 0 until then).
    views: list[int] = []

    def replica_up() -> bool:
        status = cluster.status(victim)
        views.append(0 if status is None else int(status["view"]))
        return views[-1] != 0

    cluster.wait_for(replica_up, f"node {victim} replica", 30)
    assert views[-1] == VIEW, views


def votes_for(seen: list[Message], block: Block) -> list[Message]:
    return [m for m in seen if isinstance(m, Vote) and m.block_hash == block.block_hash()]


def test_restarted_validator_refuses_a_second_block_in_its_view(cluster: Cluster) -> None:
    victim = 0
    leader = Leader(cluster, victim)
    port = cluster.layout.ports[victim].p2p
    now_ms = int(time.time() * 1000)
    block_a, block_b = leader.block(now_ms), leader.block(now_ms + 1)
    assert block_a.block_hash() != block_b.block_hash()

    cluster.start(victim)
    cluster.wait_ready(victim)
    trio.run(propose_and_get_vote, leader, port, block_a)

    restart(cluster, victim)
    bait: Message = leader.proposal(block_b)
    probe: Message = PreCommit(leader.qc(PREPARE, block_a))
    seen = trio.run(send_then_probe, leader, port, bait, probe, is_vote(PRECOMMIT, block_a))
    assert votes_for(seen, block_b) == [], f"after a restart, a prepare vote for B: {seen}"

    restart(cluster, victim)
    bait = PreCommit(leader.qc(PREPARE, block_b))
    probe = Commit(leader.qc(PRECOMMIT, block_a))
    seen = trio.run(send_then_probe, leader, port, bait, probe, is_vote(COMMIT, block_a))
    assert votes_for(seen, block_b) == [], f"after a restart, a pre-commit vote for B: {seen}"

    records = cluster.log_lines(victim, "signed")
    phases = {r["phase"] for r in records if r["view"] == VIEW and r["kind"] == "vote"}
    assert phases == {"prepare", "precommit", "commit"}, records
    assert equivocations(records) == []
