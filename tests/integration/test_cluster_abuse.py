"""Bad input against a real four-validator cluster: transactions the mempool must refuse (with
their reason codes, through the HTTP API), a flood from one signer, and hostile p2p peers.

Every refusal must be visible to an operator (a reply code, or a counter on /metrics) and the
cluster must keep committing. One cluster serves the module; the hostile-peer test runs last
because it stops validator 3 to borrow its key.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import trio

from consensus.types import COMMIT, Decide, QuorumCert, encode_message
from node.config import Config
from node.node import CHANNEL_CONSENSUS, CHANNEL_EVIDENCE, CHANNEL_TXS
from p2p.frames import FRAME_HEADER_BYTES, encode_frame
from p2p.tls import make_tls_contexts
from state_machine.tx import MAX_TX_BYTES
from tests.cluster import Cluster
from tests.integration.load import ioc_order_tx

pytestmark = pytest.mark.slow

PER_SIGNER_MAX = 8
FRAME_BYTES_MAX = 1024 * 1024
PEER_TIMEOUT_S = 10.0


def abuse_settings(config: Config) -> Config:
    return dataclasses.replace(
        config,
        # Validator 3 is stopped in the last test: keep its turns to lead short.
        consensus=dataclasses.replace(config.consensus, view_timeout_cap_ms=4_000),
        mempool=dataclasses.replace(config.mempool, per_signer_max=PER_SIGNER_MAX),
        p2p=dataclasses.replace(config.p2p, frame_bytes_max=FRAME_BYTES_MAX),
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("abuse")
    with Cluster(root, block_ms=150, configure=abuse_settings) as cluster:
        cluster.start_all()
        cluster.wait_height(2)
        yield cluster


# Nonces are the wall clock in ms plus a counter: unique, and inside the acceptance window.
_nonces = itertools.count(int(time.time() * 1000))


def fresh_nonce() -> int:
    return next(_nonces)


def reply_code(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, str(r.json().get("code"))


# ---- mempool through the API --------------------------------------------------------------


def test_each_bad_transaction_is_refused_with_its_reason(cluster: Cluster) -> None:
    key, chain = cluster.demo_key(0), cluster.chain_id
    nonce = fresh_nonce()
    good = ioc_order_tx(key, chain, nonce, True)
    r = cluster.submit(0, good)
    assert r.status_code == 200 and r.json()["status"] == "committed", r.text

    # A committed nonce: the same transaction again, and other content under that nonce.
    assert reply_code(cluster.submit(0, good, wait=False)) == (400, "nonce_used")
    reused = ioc_order_tx(key, chain, nonce, False)
    assert reply_code(cluster.submit(1, reused, wait=False)) == (400, "nonce_used")

    bad_signature = bytearray(ioc_order_tx(key, chain, fresh_nonce(), True))
    bad_signature[-1] ^= 0x01  # the signature is the last field
    assert reply_code(cluster.submit(0, bytes(bad_signature), wait=False)) == (
        400,
        "bad_signature",
    )

    other_chain = ioc_order_tx(key, "another-chain", fresh_nonce(), True)
    assert reply_code(cluster.submit(0, other_chain, wait=False)) == (400, "wrong_chain")

    past_ms = int(time.time() * 1000) - 1_000
    expired = ioc_order_tx(key, chain, fresh_nonce(), True, expires_at_ms=past_ms)
    assert reply_code(cluster.submit(0, expired, wait=False)) == (400, "expired")

    ancient_nonce = ioc_order_tx(key, chain, 1, True)
    assert reply_code(cluster.submit(0, ancient_nonce, wait=False)) == (
        400,
        "nonce_out_of_window",
    )

    oversize = good + bytes(MAX_TX_BYTES)
    assert reply_code(cluster.submit(0, oversize, wait=False)) == (413, "oversize")
    assert reply_code(cluster.submit(0, b"\x93\x01\x02", wait=False)) == (400, "malformed")

    for reason in ("bad_signature", "wrong_chain", "expired", "nonce_used"):
        assert cluster.metric(0, "perpbft_transactions_rejected_total", reason=reason) >= 1


def test_a_pending_duplicate_is_refused(cluster: Cluster) -> None:
    """Sent twice before its block commits: the second copy is a duplicate. If a block
    commits between the two posts, the copy is refused as nonce_used; try again then."""
    key = cluster.demo_key(0)
    seen: list[tuple[int, str]] = []
    for _ in range(5):
        raw = ioc_order_tx(key, cluster.chain_id, fresh_nonce(), True)
        assert cluster.submit(2, raw, wait=False).status_code == 202
        seen.append(reply_code(cluster.submit(2, raw, wait=False)))
        if seen[-1] == (409, "duplicate"):
            return
        assert seen[-1] == (400, "nonce_used"), seen
    raise AssertionError(f"never refused as duplicate: {seen}")


def flood(cluster: Cluster, signer: int, txs: int, codes: collections.Counter[str]) -> None:
    key = cluster.demo_key(signer)
    with httpx.Client(timeout=10.0) as http:
        for _ in range(txs):
            raw = ioc_order_tx(key, cluster.chain_id, fresh_nonce(), True)
            r = http.post(
                cluster.api(0) + "/v1/txs",
                content=raw,
                headers={"content-type": "application/msgpack"},
            )
            codes[str(r.json().get("code", r.json().get("status")))] += 1


def test_a_flood_from_one_signer_does_not_starve_others(cluster: Cluster) -> None:
    codes: collections.Counter[str] = collections.Counter()
    threads = [
        threading.Thread(target=flood, args=(cluster, 1, 40, codes), daemon=True) for _ in range(3)
    ]
    for t in threads:
        t.start()
    cluster.wait_for(lambda: codes["signer_limit"] > 0, "the per-signer cap to refuse the flood")
    # While the flooder is being refused, another signer still gets in and is committed.
    r = cluster.submit(0, ioc_order_tx(cluster.demo_key(2), cluster.chain_id, fresh_nonce(), True))
    assert r.status_code == 200 and r.json()["status"] == "committed", r.text
    for t in threads:
        t.join(timeout=60)
    assert codes["pending"] > 0 and codes["signer_limit"] > 0, codes
    assert set(codes) <= {"pending", "signer_limit"}, codes


# ---- hostile peers ------------------------------------------------------------------------


async def tls_connect(seed: bytes, port: int) -> trio.SSLStream[trio.SocketStream]:
    """A p2p client with the node's own TLS code, presenting ``seed``'s key."""
    tcp = await trio.open_tcp_stream("127.0.0.1", port)
    stream = trio.SSLStream(tcp, make_tls_contexts(seed).client, server_side=False)
    await stream.do_handshake()
    return stream


async def closed_by_peer(stream: trio.SSLStream[trio.SocketStream]) -> bool:
    """True once the node closes the connection (everything it sends is discarded)."""
    with trio.move_on_after(PEER_TIMEOUT_S):
        try:
            while await stream.receive_some(65536):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        return True
    return False


async def send_frames(seed: bytes, port: int, payloads: list[bytes]) -> None:
    """Connect as ``seed``'s key and send ``payloads``; a node that hangs up on us midway
    (a ban) ends the sending."""
    stream = await tls_connect(seed, port)
    try:
        for payload in payloads:
            await stream.send_all(encode_frame(payload, FRAME_BYTES_MAX))
        await stream.aclose()
    except trio.BrokenResourceError:
        await trio.aclose_forcefully(stream)


async def refused(seed: bytes, port: int) -> bool:
    """Does the node close a connection presenting ``seed``'s key (during or after TLS)?"""
    try:
        stream = await tls_connect(seed, port)
    except trio.BrokenResourceError:
        return True
    return await closed_by_peer(stream)


async def oversize_frame_is_closed(seed: bytes, port: int) -> bool:
    stream = await tls_connect(seed, port)
    await stream.send_all((FRAME_BYTES_MAX + 1).to_bytes(FRAME_HEADER_BYTES, "big"))
    return await closed_by_peer(stream)


def send_garbage(port: int, size: int) -> None:
    """Random bytes where TLS (or HTTP) is expected; returns once the node hangs up."""
    with socket.create_connection(("127.0.0.1", port), timeout=PEER_TIMEOUT_S) as s:
        s.sendall(os.urandom(size))
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass  # reset by the node: also a hang-up


def old_replays(cluster: Cluster, height: int) -> list[bytes]:
    """Genuine old consensus messages rebuilt from a stored commit QC: every vote in it,
    and the DECIDE that carried it."""
    qc = QuorumCert.from_wire(bytes.fromhex(cluster.block(0, height)["commit_qc"]["wire"]))
    assert qc.phase == COMMIT
    votes = [bytes([CHANNEL_CONSENSUS]) + encode_message(v) for v in qc.votes()]
    return [*votes, bytes([CHANNEL_CONSENSUS]) + encode_message(Decide(qc))]


def forged_vote(cluster: Cluster) -> bytes:
    """A recent vote of a real validator with one bit of its signature flipped."""
    tip = cluster.height(0)
    qc = QuorumCert.from_wire(bytes.fromhex(cluster.block(0, tip)["commit_qc"]["wire"]))
    vote = qc.votes()[0]
    signature = bytes([vote.signature[0] ^ 0x01]) + vote.signature[1:]
    return bytes([CHANNEL_CONSENSUS]) + encode_message(
        dataclasses.replace(vote, signature=signature)
    )


def counter_reaches(cluster: Cluster, name: str, at_least: float, **labels: str) -> None:
    cluster.wait_for(
        lambda: cluster.metric(0, name, **labels) >= at_least,
        f"{name}{labels} >= {at_least} on node 0",
        timeout_s=20.0,
    )


def test_hostile_peers_are_refused_counted_and_the_cluster_keeps_committing(
    cluster: Cluster,
) -> None:
    port = cluster.layout.ports[0].p2p
    metric = cluster.metric
    assert cluster.stop(3) == 0  # its key is ours now: a "valid" peer that misbehaves
    impostor = cluster.validator_key(3).seed
    start_height = cluster.height(0)

    tls_failures = metric(0, "perpbft_p2p_handshakes_failed_total", reason="tls")
    send_garbage(port, 4096)
    counter_reaches(cluster, "perpbft_p2p_handshakes_failed_total", tls_failures + 1, reason="tls")

    assert trio.run(refused, os.urandom(32), port)
    counter_reaches(cluster, "perpbft_p2p_connections_rejected_total", 1, reason="unknown_key")

    assert trio.run(oversize_frame_is_closed, impostor, port)
    counter_reaches(cluster, "perpbft_p2p_oversize_frames_total", 1)
    counter_reaches(cluster, "perpbft_p2p_penalties_total", 1, reason="oversize_frame")

    malformed = {
        "malformed_consensus": bytes([CHANNEL_CONSENSUS]) + b"\x92\x07\xc1",
        "malformed_tx_gossip": bytes([CHANNEL_TXS]) + b"\xff\x00",
        "malformed_evidence": bytes([CHANNEL_EVIDENCE]) + b"\x91",
        "unknown_channel": bytes([99]) + b"hello",
        "bad_signature": forged_vote(cluster),
    }
    replays = old_replays(cluster, 1)
    trio.run(send_frames, impostor, port, [*malformed.values(), *replays])
    for reason in malformed:
        counter_reaches(cluster, "perpbft_p2p_invalid_messages_total", 1, reason=reason)
    counter_reaches(cluster, "perpbft_consensus_old_messages_total", len(replays) - 1, kind="Vote")
    counter_reaches(cluster, "perpbft_consensus_old_messages_total", 1, kind="Decide")

    # Repeated abuse: the peer is disconnected and banned; its next connection is refused.
    trio.run(send_frames, impostor, port, [malformed["malformed_consensus"]] * 12)
    counter_reaches(cluster, "perpbft_p2p_bans_total", 1)
    assert trio.run(refused, impostor, port)
    counter_reaches(cluster, "perpbft_p2p_connections_rejected_total", 1, reason="banned")

    # Garbage on the API port is HTTP's problem, answered and forgotten.
    send_garbage(cluster.layout.ports[0].api, 4096)
    assert cluster.status(0) is not None

    cluster.wait_height(start_height + 5, nodes=[0, 1, 2])
    for h in range(1, start_height + 6):
        assert len({cluster.block(i, h)["block_hash"] for i in (0, 1, 2)}) == 1
