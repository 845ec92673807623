"""Each transaction's signature is verified once per node, whichever path brings it first.

The node's paths in: a client submission (``_admit_batch``), peer gossip (``_on_tx_gossip``,
then admission), a proposal or sync response (``_preverify_blocks``), the replica's payload
check (``_check_payload``) and execution (``Chain.decode_payload``). All share the decode cache
keyed by the raw bytes. Every Ed25519 check of the node goes through one of three module-level
``verify`` names, which the test replaces with a counting wrapper.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

import node.chain
import node.node
import node.sigpool
from consensus.types import (
    COMMIT,
    PREPARE,
    Block,
    BlockHeader,
    CommittedBlock,
    NewView,
    Proposal,
    QuorumCert,
    SyncResponse,
    genesis_qc,
    payload_root,
)
from node.config import Config
from node.mempool import Admit
from node.node import Node, Submission, now_ms
from state_machine.codec import encode
from state_machine.crypto import Keypair
from state_machine.crypto import verify as real_verify
from state_machine.genesis import default_genesis
from state_machine.tx import KIND_LIMIT, TIF_GTC, PlaceOrder, sign_transaction

VALIDATOR = Keypair(b"\x01" * 32)
ALICE = Keypair(b"\x02" * 32)
PEER = Keypair(b"\x03" * 32).public_key
GENESIS = default_genesis("perpbft-test", [(VALIDATOR.public_key, 1)], [ALICE.public_key])


class CountingVerify:
    """Counts each (public key, message, signature) checked; thread safe (the pool calls it)."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[bytes, bytes, bytes]] = Counter()
        self._lock = threading.Lock()

    def __call__(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        with self._lock:
            self.calls[(public_key, message, signature)] += 1
        return real_verify(public_key, message, signature)

    def of(self, raw: bytes) -> int:
        """How often the signature carried by ``raw`` was checked."""
        return sum(n for (_, _, sig), n in self.calls.items() if raw.endswith(sig))


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> CountingVerify:
    counter = CountingVerify()
    for module in (node.node, node.sigpool, node.chain):
        monkeypatch.setattr(module, "verify", counter)
    return counter


@pytest.fixture
def local_node(tmp_path: Path) -> Iterator[Node]:
    n = Node(Config(home=tmp_path), GENESIS, VALIDATOR)
    n.chain = n.open_chain()
    yield n
    n.sigpool.close()
    n.chain.close()


def order_tx(nonce: int) -> bytes:
    order = PlaceOrder(2, True, KIND_LIMIT, TIF_GTC, 6_000_000, 1)
    return sign_transaction(ALICE, GENESIS.chain_id, nonce, [order]).to_wire()


def with_bad_signature(raw: bytes) -> bytes:
    """The same transaction (same signing bytes, same tx id) with one signature bit flipped."""
    return raw[:-1] + bytes([raw[-1] ^ 1])


def block_of(payload: list[bytes]) -> Block:
    header = BlockHeader(
        1, 1, b"\x00" * 32, now_ms(), VALIDATOR.public_key, payload_root(payload), b"\x00" * 32
    )
    return Block(header, tuple(payload))


def proposal_of(payload: list[bytes]) -> Proposal:
    block = block_of(payload)
    return Proposal(1, block, genesis_qc(b"\x00" * 32), VALIDATOR.public_key, b"\x00" * 64)


def sync_response_of(payload: list[bytes]) -> SyncResponse:
    block = block_of(payload)
    qc = QuorumCert(COMMIT, 1, 1, block.block_hash(), ())
    return SyncResponse((CommittedBlock(block, qc),))


async def client_submit(n: Node, raws: list[bytes]) -> list[Admit | None]:
    subs = [Submission(raw, None, trio.Event()) for raw in raws]
    await n._admit_batch(subs)
    return [s.verdict for s in subs]


async def gossip_in(n: Node, raws: list[bytes]) -> list[Admit | None]:
    """A peer's gossip frame, then one admission batch of what it queued."""
    n._on_tx_gossip(PEER, encode(raws))
    subs: list[Submission] = []
    while True:
        try:
            subs.append(n._admit_rx.receive_nowait())
        except trio.WouldBlock:
            break
    if subs:
        await n._admit_batch(subs)
    return [s.verdict for s in subs]


async def test_each_transaction_is_verified_once_per_node(
    local_node: Node, counting: CountingVerify
) -> None:
    n = local_node
    assert n.chain is not None
    base = now_ms()
    a, b, c, d = (order_tx(base + i) for i in range(4))

    # A: first in a proposal, then submitted by a client.
    await n._preverify_blocks(proposal_of([a]))
    assert n._check_payload(block_of([a]))
    assert await client_submit(n, [a]) == [Admit.OK]
    assert counting.of(a) == 1

    # B: first by gossip, then in a proposal, in a sync response, executed, and re-gossiped.
    assert await gossip_in(n, [b]) == [Admit.OK]
    await n._preverify_blocks(proposal_of([a, b]))
    await n._preverify_blocks(sync_response_of([b]))
    assert n._check_payload(block_of([a, b]))
    n.chain.decode_payload([a, b])
    assert await gossip_in(n, [b]) == []  # already seen: not even queued
    assert counting.of(b) == 1

    # C and D: a client batch large enough for the signature pool, then a proposal.
    fillers = [order_tx(base + 100 + i) for i in range(20)]
    verdicts = await client_submit(n, [c, d, *fillers])
    assert verdicts == [Admit.OK] * 22
    await n._preverify_blocks(proposal_of([c, d, *fillers]))
    assert n._check_payload(block_of([c, d, *fillers]))
    assert all(counting.of(raw) == 1 for raw in [c, d, *fillers])

    # Every signature the node checked, it checked exactly once.
    assert counting.calls and set(counting.calls.values()) == {1}


async def test_a_copy_with_another_signature_is_verified_and_rejected(
    local_node: Node, counting: CountingVerify
) -> None:
    """A good verdict for a transaction says nothing about a copy with the same tx id and a
    different signature: the copy is verified on its own and refused on every path."""
    n = local_node
    good = order_tx(now_ms())
    bad = with_bad_signature(good)
    await n._preverify_blocks(proposal_of([good]))  # good verdict cached, not in the mempool
    assert len(n.mempool) == 0

    assert await client_submit(n, [bad]) == [Admit.BAD_SIGNATURE]
    assert await gossip_in(n, [bad]) == []  # its bad verdict is cached: dropped unqueued
    await n._preverify_blocks(proposal_of([bad]))
    assert not n._check_payload(block_of([bad]))
    assert not n._check_payload(block_of([good, bad]))
    assert counting.of(bad) == 1

    # The genuine transaction is still admitted, without a second check.
    assert await client_submit(n, [good]) == [Admit.OK]
    assert counting.of(good) == 1
    # A bad copy arriving by gossip first, on a fresh transaction, is refused there too.
    fresh = order_tx(now_ms() + 1)
    assert await gossip_in(n, [with_bad_signature(fresh)]) == [Admit.BAD_SIGNATURE]
    assert await client_submit(n, [fresh]) == [Admit.OK]
    assert counting.of(fresh) == 1 and counting.of(with_bad_signature(fresh)) == 1


def newview_of(block: Block, certified_hash: bytes) -> NewView:
    qc = QuorumCert(PREPARE, 1, 1, certified_hash, ())
    return NewView(2, qc, block, VALIDATOR.public_key, b"\x00" * 64)


async def test_blocks_the_replica_could_not_use_are_not_verified(
    local_node: Node, counting: CountingVerify
) -> None:
    """Verifying a block's transactions ahead of the replica costs one Ed25519 check each:
    it is spent only on blocks that pass the replica's cheap checks. A proposal or NEW-VIEW
    that no honest validator sends is refused (and counted against the sender)."""
    n = local_node
    raws = [order_tx(now_ms() + i) for i in range(8)]
    block = block_of(raws)
    other = block_of(raws[:1])

    # A NEW-VIEW whose block is not the one its high QC certifies.
    assert not await n._preverify_blocks(newview_of(block, other.block_hash()))
    # A proposal whose payload is not the one its header commits to.
    tampered = Block(block.header, tuple(raws[:4]))
    assert not await n._preverify_blocks(
        Proposal(1, tampered, genesis_qc(b"\x00" * 32), VALIDATOR.public_key, b"\x00" * 64)
    )
    # A proposal by a validator that does not lead the view.
    assert not await n._preverify_blocks(
        Proposal(1, block, genesis_qc(b"\x00" * 32), PEER, b"\x00" * 64)
    )
    # A sync answer whose QC certifies another block: skipped, not a fault.
    wrong_qc = QuorumCert(COMMIT, 1, 1, other.block_hash(), ())
    assert await n._preverify_blocks(SyncResponse((CommittedBlock(block, wrong_qc),)))
    assert not counting.calls

    # The matching NEW-VIEW block is verified, once.
    assert await n._preverify_blocks(newview_of(block, block.block_hash()))
    assert all(counting.of(raw) == 1 for raw in raws)
