"""Transaction gossip in batches (``node/gossip.py``): how admitted transactions are cut into
frames, that one node's admissions over a flush interval reach a peer as one frame over real
TLS, that the receiver admits a frame in one pass with one signature-pool call, and that
malformed or oversize batches are refused and held against the sender."""

from __future__ import annotations

import dataclasses
import os
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import trio
import trio.testing

from node.config import Config
from node.gossip import GOSSIP_BATCH_TXS_MAX, TX_GOSSIP, GossipOutbox
from node.mempool import Admit
from node.node import CHANNEL_TXS, Node, Submission, now_ms
from p2p import PeerAddress, PeerManager, TransportConfig
from p2p.frames import encode_frame
from p2p.tls import public_key_from_seed
from state_machine.codec import decode_raw, encode
from state_machine.crypto import Keypair
from state_machine.genesis import default_genesis
from state_machine.tx import KIND_LIMIT, MAX_TX_BYTES, TIF_GTC, PlaceOrder, sign_transaction

VALIDATOR = Keypair(b"\x01" * 32)
ALICE = Keypair(b"\x02" * 32)
PEER_SEED = b"\x03" * 32
PEER = public_key_from_seed(PEER_SEED)
GENESIS = default_genesis("perpbft-test", [(VALIDATOR.public_key, 1)], [ALICE.public_key])
TEST_TIMEOUT_S = 20


def order_tx(nonce: int) -> bytes:
    order = PlaceOrder(2, True, KIND_LIMIT, TIF_GTC, 6_000_000, 1)
    return sign_transaction(ALICE, GENESIS.chain_id, nonce, [order]).to_wire()


def decoded(body: bytes) -> list[bytes]:
    """What a receiving node accepts from one gossip frame body."""
    return list(TX_GOSSIP.check(decode_raw(body), "tx_gossip"))


# ---- the outbox ------------------------------------------------------------------------------


def test_outbox_cuts_full_frames_at_once_and_keeps_the_rest_until_drained() -> None:
    outbox = GossipOutbox(4 * 1024 * 1024)
    raws = [os.urandom(134) for _ in range(GOSSIP_BATCH_TXS_MAX * 2 + 7)]
    outbox.add(raws[:100])
    assert outbox.take_full() == [] and len(outbox) == 100
    outbox.add(raws[100:])
    full = outbox.take_full()
    assert [len(decoded(b)) for b in full] == [GOSSIP_BATCH_TXS_MAX] * 2
    assert len(outbox) == 7
    rest = outbox.drain()
    assert [len(decoded(b)) for b in rest] == [7]
    assert [raw for body in full + rest for raw in decoded(body)] == raws  # order kept
    assert outbox.drain() == [] and len(outbox) == 0


def test_outbox_frames_stay_under_the_frame_size_limit() -> None:
    frame_bytes_max = 64 * 1024
    outbox = GossipOutbox(frame_bytes_max)
    raws = [os.urandom(random.Random(i).randint(9_000, MAX_TX_BYTES)) for i in range(40)]
    outbox.add(raws)
    bodies = outbox.drain()
    assert len(bodies) > 1
    for body in bodies:
        # The frame the node broadcasts: one channel byte and the body, length-prefixed.
        encode_frame(bytes([CHANNEL_TXS]) + body, frame_bytes_max)
    assert [raw for body in bodies for raw in decoded(body)] == raws


def test_outbox_skips_a_transaction_no_frame_can_carry() -> None:
    outbox = GossipOutbox(4 * 1024)
    small, huge = os.urandom(200), os.urandom(8 * 1024)
    outbox.add([small, huge, small])
    assert outbox.too_large == 1
    assert [decoded(b) for b in outbox.drain()] == [[small, small]]


# ---- one node's admissions reach a peer as one frame ------------------------------------------


def node_config(tmp_path: Path, flush_ms: int) -> Config:
    config = Config(home=tmp_path)
    return dataclasses.replace(
        config, p2p=dataclasses.replace(config.p2p, gossip_flush_ms=flush_ms)
    )


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    """A sending and a receiving node, storage open, not running."""
    made = []
    for name in ("sender", "receiver"):
        home = tmp_path / name
        home.mkdir()
        n = Node(node_config(home, flush_ms=10), GENESIS, VALIDATOR)
        n.chain = n.open_chain()
        made.append(n)
    yield made[0], made[1]
    for n in made:
        n.sigpool.close()
        assert n.chain is not None
        n.chain.close()


def transport(seed: bytes, allowed: bytes) -> PeerManager:
    config = TransportConfig(listen_host="127.0.0.1", listen_port=0, keepalive_interval_ms=200)
    return PeerManager(seed, config, allowed_keys=[allowed])


async def client_submit(n: Node, raws: Sequence[bytes]) -> list[Admit | None]:
    subs = [Submission(raw, None, trio.Event()) for raw in raws]
    await n._admit_batch(subs)
    return [s.verdict for s in subs]


def queued(n: Node) -> list[Submission]:
    out: list[Submission] = []
    while True:
        try:
            out.append(n._admit_rx.receive_nowait())
        except trio.WouldBlock:
            return out


async def test_admissions_within_the_flush_interval_go_out_as_one_frame(
    nodes: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    sender, receiver = nodes
    base = now_ms()
    raws = [order_tx(base + i) for i in range(30)]
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            ours = transport(VALIDATOR.seed, PEER)
            theirs = transport(PEER_SEED, VALIDATOR.public_key)
            await nursery.start(ours.run)
            port = await nursery.start(theirs.run)
            ours.add_peer(PeerAddress(PEER, "127.0.0.1", port))
            await ours.wait_connected(PEER)
            sender.peers = ours

            # Three admission passes (three clients' requests): nothing leaves yet.
            for i in range(0, 30, 10):
                assert await client_submit(sender, raws[i : i + 10]) == [Admit.OK] * 10
            assert len(sender._gossip) == 30
            assert sender.metrics.registry.get_sample_value("perpbft_gossip_frames_sent_total") in (
                None,
                0.0,
            )

            nursery.start_soon(sender._gossip_loop)
            frame = await theirs.inbound.receive()
            assert frame.peer_id == VALIDATOR.public_key
            assert frame.payload[0] == CHANNEL_TXS
            body = bytes(frame.payload[1:])
            assert decoded(body) == raws
            assert sender.metrics.registry.get_sample_value("perpbft_gossip_frames_sent_total") == 1
            nursery.cancel_scope.cancel()

    # The receiver queues the frame's transactions and admits them in one pass, with one call
    # to the signature pool for all 30.
    pool_calls: list[int] = []
    real_verify_many = receiver.sigpool.verify_many

    def counting_verify_many(items: Sequence[tuple[bytes, bytes, bytes]]) -> list[bool]:
        pool_calls.append(len(items))
        return real_verify_many(items)

    monkeypatch.setattr(receiver.sigpool, "verify_many", counting_verify_many)
    receiver._on_tx_gossip(VALIDATOR.public_key, body)
    subs = queued(receiver)
    assert len(subs) == 30
    await receiver._admit_batch(subs)
    assert [s.verdict for s in subs] == [Admit.OK] * 30
    assert pool_calls == [30]
    assert (
        receiver.metrics.registry.get_sample_value("perpbft_gossip_transactions_received_total")
        == 30
    )
    # A receiving validator does not gossip its peers' transactions on.
    assert len(receiver._gossip) == 0


async def test_flush_zero_sends_at_the_end_of_each_admission_pass(tmp_path: Path) -> None:
    n = Node(node_config(tmp_path, flush_ms=0), GENESIS, VALIDATOR)
    n.chain = n.open_chain()
    try:
        n.peers = transport(VALIDATOR.seed, PEER)  # not running: broadcasts reach no one
        base = now_ms()
        await client_submit(n, [order_tx(base), order_tx(base + 1)])
        await client_submit(n, [order_tx(base + 2)])
        assert len(n._gossip) == 0
        assert n.metrics.registry.get_sample_value("perpbft_gossip_frames_sent_total") == 2
    finally:
        n.sigpool.close()
        n.chain.close()


# ---- malformed and oversize batches from a peer ---------------------------------------------


def invalid_count(n: Node, reason: str) -> float:
    value = n.metrics.registry.get_sample_value(
        "perpbft_p2p_invalid_messages_total", {"reason": reason}
    )
    return value or 0.0


@pytest.mark.parametrize(
    "body",
    [
        encode([order_tx(1)] * (GOSSIP_BATCH_TXS_MAX + 1)),  # too many in one frame
        encode([b"\x00" * (MAX_TX_BYTES + 1)]),  # a transaction over the size limit
        encode([]),  # an empty batch
        encode([1, 2, 3]),  # not transactions
        encode({"txs": [b"x"]}),  # not a list
        b"\xdc\x00",  # truncated
    ],
    ids=["too_many", "oversize_tx", "empty", "not_bytes", "not_a_list", "truncated"],
)
async def test_a_malformed_batch_is_refused_whole_and_counted_against_the_peer(
    nodes: tuple[Node, Node], body: bytes
) -> None:
    _, receiver = nodes
    receiver._on_tx_gossip(PEER, body)
    assert queued(receiver) == []
    assert invalid_count(receiver, "malformed_tx_gossip") == 1
    assert receiver.metrics.registry.get_sample_value(
        "perpbft_gossip_transactions_received_total"
    ) in (None, 0.0)


async def test_a_batch_with_a_bad_transaction_admits_the_good_ones(
    nodes: tuple[Node, Node],
) -> None:
    """Each transaction of a well-formed batch gets its own verdict; a bad one costs the
    sender a penalty, as it did when every transaction had its own frame."""
    _, receiver = nodes
    base = now_ms()
    good = [order_tx(base + i) for i in range(20)]
    forged = good[5][:-1] + bytes([good[5][-1] ^ 1])
    batch = [*good[:5], forged, *good[6:], b"\x93\x01\x02"]
    receiver._on_tx_gossip(PEER, encode(batch))
    subs = queued(receiver)
    await receiver._admit_batch(subs)
    verdicts = [s.verdict for s in subs]
    assert verdicts[5] is Admit.BAD_SIGNATURE
    assert verdicts[-1] is Admit.MALFORMED
    assert [v for i, v in enumerate(verdicts) if i not in (5, len(batch) - 1)] == [Admit.OK] * 19
    assert invalid_count(receiver, "gossip_bad_signature") == 1
    assert invalid_count(receiver, "gossip_malformed") == 1


# ---- a client's submission is admitted in its own task when nothing waits ------------------


async def test_a_submission_is_admitted_in_the_callers_task_when_the_queue_is_empty(
    nodes: tuple[Node, Node],
) -> None:
    """No admission task runs here: before, ``submit`` waited for it forever."""
    n, _ = nodes
    raw = order_tx(now_ms())
    with trio.fail_after(TEST_TIMEOUT_S):
        sub = await n.submit(raw)
    assert sub.verdict is Admit.OK and sub.done.is_set()
    assert len(n.mempool) == 1
    with trio.fail_after(TEST_TIMEOUT_S):
        again = await n.submit(raw)
    assert again.verdict is Admit.DUPLICATE


async def test_a_submission_waits_behind_queued_ones(nodes: tuple[Node, Node]) -> None:
    """With submissions queued, a new one joins the queue (first in, first admitted)."""
    n, _ = nodes
    base = now_ms()
    first, second = order_tx(base), order_tx(base + 1)
    n._on_tx_gossip(PEER, encode([first]))
    done: list[Submission] = []

    async def submit_second() -> None:
        done.append(await n.submit(second))

    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(submit_second)
            await trio.testing.wait_all_tasks_blocked()
            assert done == [] and len(n.mempool) == 0
            batch = queued(n)
            assert [s.raw for s in batch] == [first, second]
            await n._admit_batch(batch)
    assert [s.verdict for s in batch] == [Admit.OK, Admit.OK]
    assert done[0].verdict is Admit.OK
