"""The peer manager over real TLS sockets on 127.0.0.1 (ephemeral ports).

Every test bounds itself with ``trio.fail_after``; waits are on the manager's own events
(``wait_connected``, ``wait_statistics``), never on sleeps.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import random
import ssl
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import trio
import trio.testing
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import NameOID

from p2p import (
    ALPN_PROTOCOL,
    FrameTooLarge,
    InboundFrame,
    InboundQueue,
    PeerAddress,
    PeerManager,
    PeerManagerStatistics,
    TransportConfig,
    make_tls_contexts,
)
from p2p.check import InvariantError
from p2p.tls import public_key_from_seed

TEST_TIMEOUT_S = 20

FAST = TransportConfig(
    listen_host="127.0.0.1",
    listen_port=0,
    frame_bytes_max=64 * 1024,
    outbound_queue_bytes_max=4 * 1024 * 1024,
    inbound_queue_bytes_max=4 * 1024 * 1024,
    handshake_timeout_ms=3_000,
    idle_timeout_ms=5_000,
    keepalive_interval_ms=200,
    write_timeout_ms=5_000,
    dial_backoff_base_ms=10,
    dial_backoff_max_ms=100,
    backoff_reset_after_ms=1_000,
    penalty_threshold=100,
    penalty_decay_per_s=0,
    ban_ms=60_000,
)


@dataclasses.dataclass
class Node:
    seed: bytes

    @property
    def key(self) -> bytes:
        return public_key_from_seed(self.seed)


def make_nodes(count: int) -> list[Node]:
    # Sorted by key so tests can name the lower and the higher key.
    return sorted((Node(os.urandom(32)) for _ in range(count)), key=lambda n: n.key)


def manager(
    node: Node,
    allowed: Sequence[Node],
    config: TransportConfig = FAST,
    clock: Callable[[], float] | None = None,
) -> PeerManager:
    return PeerManager(
        node.seed,
        config,
        allowed_keys=[n.key for n in allowed],
        rng=random.Random(node.key),
        clock=clock,
    )


def address(node: Node, port: int) -> PeerAddress:
    return PeerAddress(node.key, "127.0.0.1", port)


async def wait_all(managers: Sequence[PeerManager], condition: Callable[[], bool]) -> None:
    """Wait until ``condition`` holds, re-checking after any manager's next event."""
    while True:
        events = [m.next_change() for m in managers]
        if condition():
            return
        async with trio.open_nursery() as nursery:
            for event in events:
                nursery.start_soon(_set_then_cancel, event, nursery)


async def _set_then_cancel(event: trio.Event, nursery: trio.Nursery) -> None:
    await event.wait()
    nursery.cancel_scope.cancel()


async def tls_client(seed: bytes, port: int) -> trio.SSLStream[trio.SocketStream]:
    """A raw TLS client presenting ``seed``'s certificate, as a hostile peer would."""
    tcp = await trio.open_tcp_stream("127.0.0.1", port)
    stream = trio.SSLStream(tcp, make_tls_contexts(seed).client)
    await stream.do_handshake()
    return stream


async def read_until_closed(stream: trio.abc.ReceiveStream) -> None:
    """Return once the other side closed the connection (EOF or reset)."""
    try:
        while await stream.receive_some(65536):
            pass
    except trio.BrokenResourceError:
        pass


async def test_three_nodes_connect_and_exchange_frames_both_ways() -> None:
    nodes = make_nodes(3)
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            managers = [manager(n, nodes) for n in nodes]
            ports = [await nursery.start(m.run) for m in managers]
            for i, m in enumerate(managers):  # everyone dials everyone: duplicates happen
                for j, other in enumerate(nodes):
                    if i != j:
                        m.add_peer(address(other, ports[j]))

            def settled() -> bool:
                # Each pair keeps one connection, the same one at both ends: whoever dialed
                # it is "outbound" at one end and "inbound" at the other.
                for i, a in enumerate(managers):
                    for j, b in enumerate(managers):
                        if i == j:
                            continue
                        mine = a.statistics().peers[nodes[j].key]
                        theirs = b.statistics().peers[nodes[i].key]
                        if not (mine.connected and theirs.connected):
                            return False
                        if mine.direction == theirs.direction:
                            return False
                return True

            await wait_all(managers, settled)
            for m in managers:
                assert len(m.connected_peers()) == 2

            for i, m in enumerate(managers):
                for j, other in enumerate(nodes):
                    if i != j:
                        assert m.send(other.key, f"{i}->{j}".encode())
            for j, m in enumerate(managers):
                got = {await m.inbound.receive() for _ in range(2)}
                expected = {
                    InboundFrame(nodes[i].key, f"{i}->{j}".encode()) for i in range(3) if i != j
                }
                assert got == expected

            assert managers[0].broadcast(b"to all") == 2
            for m in managers[1:]:
                assert await m.inbound.receive() == InboundFrame(nodes[0].key, b"to all")

            totals = managers[0].statistics()
            stats = totals.peers[nodes[1].key]
            assert stats.frames_out == 2 and stats.frames_in == 1
            assert stats.bytes_out >= len(b"0->1") + len(b"to all") + 8
            assert totals.frames_out == 4 and totals.frames_in == 2
            assert totals.bytes_in == sum(p.bytes_in for p in totals.peers.values())
            nursery.cancel_scope.cancel()


async def test_send_needs_a_connection_and_a_legal_size() -> None:
    a, b = make_nodes(2)
    m = manager(a, [a, b])
    assert not m.send(b.key, b"nobody there")
    assert m.broadcast(b"nobody there") == 0
    with pytest.raises(FrameTooLarge):
        m.send(b.key, b"x" * (FAST.frame_bytes_max + 1))
    with pytest.raises(ValueError, match="not in the allowed set"):
        m.add_peer(address(make_nodes(1)[0], 1))


async def test_unknown_key_is_rejected_after_the_handshake() -> None:
    a, b = make_nodes(2)
    stranger = make_nodes(1)[0]
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            m = manager(a, [a, b])
            port = await nursery.start(m.run)
            stream = await tls_client(stranger.seed, port)
            await stream.send_all(b"\x00\x00\x00\x05hello")
            await read_until_closed(stream)
            stats = await m.wait_statistics(lambda s: s.rejected_unknown_key == 1)
            assert stats.connected_peers == 0
            assert stranger.key not in stats.peers  # no per-peer state for strangers
            assert m.inbound.queued_bytes == 0
            nursery.cancel_scope.cancel()


async def test_dialed_peer_with_another_key_is_rejected() -> None:
    a, b, c = make_nodes(3)
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            ma, mb = manager(a, [a, b, c]), manager(b, [a, b, c])
            await nursery.start(ma.run)
            port_b = await nursery.start(mb.run)
            # a believes c listens at b's address: b's certificate does not carry c's key.
            ma.add_peer(address(c, port_b))
            stats = await ma.wait_statistics(lambda s: s.rejected_identity_mismatch >= 2)
            assert stats.connected_peers == 0
            nursery.cancel_scope.cancel()


async def test_random_bytes_are_rejected_and_the_node_keeps_working() -> None:
    a, b = make_nodes(2)
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            ma, mb = manager(a, [a, b]), manager(b, [a, b])
            port_a = await nursery.start(ma.run)
            garbage = await trio.open_tcp_stream("127.0.0.1", port_a)
            await garbage.send_all(random.Random(1).randbytes(4096))
            await read_until_closed(garbage)
            await ma.wait_statistics(lambda s: s.handshake_failures == 1)

            await nursery.start(mb.run)
            mb.add_peer(address(a, port_a))
            await ma.wait_connected(b.key)
            assert mb.send(a.key, b"still alive")
            assert await ma.inbound.receive() == InboundFrame(b.key, b"still alive")
            nursery.cancel_scope.cancel()


async def test_silent_socket_hits_the_silent_timeout() -> None:
    a, b = make_nodes(2)
    config = dataclasses.replace(FAST, handshake_silent_timeout_ms=200)
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            m = manager(a, [a, b], config)
            port = await nursery.start(m.run)
            silent = await trio.open_tcp_stream("127.0.0.1", port)
            await read_until_closed(silent)  # the node hangs up on us
            stats = await m.wait_statistics(lambda s: s.handshake_silent_timeouts == 1)
            assert stats.handshakes_pending == 0 and stats.handshake_timeouts == 0
            nursery.cancel_scope.cancel()


async def test_stalled_handshake_hits_the_handshake_timeout() -> None:
    a, b = make_nodes(2)
    config = dataclasses.replace(FAST, handshake_silent_timeout_ms=200, handshake_timeout_ms=400)
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            m = manager(a, [a, b], config)
            port = await nursery.start(m.run)
            stalled = await trio.open_tcp_stream("127.0.0.1", port)
            await stalled.send_all(b"\x16\x03\x01")  # the start of a ClientHello, then nothing
            await read_until_closed(stalled)
            stats = await m.wait_statistics(lambda s: s.handshake_timeouts == 1)
            assert stats.handshakes_pending == 0 and stats.handshake_silent_timeouts == 0
            nursery.cancel_scope.cancel()


async def test_half_open_peer_hits_the_idle_timeout() -> None:
    a, b = make_nodes(2)
    config = dataclasses.replace(FAST, idle_timeout_ms=300, keepalive_interval_ms=100)
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            m = manager(a, [a, b], config)
            port = await nursery.start(m.run)
            # An allowed peer that completes the handshake and then never sends a byte (not
            # even keepalives), like a machine that vanished without a FIN.
            stream = await tls_client(b.seed, port)
            await m.wait_connected(b.key)
            stats = await m.wait_statistics(lambda s: s.idle_timeouts == 1)
            assert stats.peers[b.key].last_close_reason == "idle_timeout"
            assert not stats.peers[b.key].connected
            await trio.aclose_forcefully(stream)
            nursery.cancel_scope.cancel()


async def test_oversize_frame_disconnects_and_counts_against_the_peer() -> None:
    a, b = make_nodes(2)
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            m = manager(a, [a, b])
            port = await nursery.start(m.run)
            stream = await tls_client(b.seed, port)
            await m.wait_connected(b.key)
            await stream.send_all(b"\x00\x00\x00\x02ok")
            assert await m.inbound.receive() == InboundFrame(b.key, b"ok")
            await stream.send_all((FAST.frame_bytes_max + 1).to_bytes(4, "big"))
            await read_until_closed(stream)
            stats = await m.wait_statistics(lambda s: s.oversize_frames == 1)
            peer = stats.peers[b.key]
            assert not peer.connected
            assert peer.invalid_frames == 1
            assert peer.last_close_reason == "oversize_frame"
            assert peer.penalties_by_reason == {"oversize_frame": 1}
            nursery.cancel_scope.cancel()


async def test_reconnects_after_a_peer_restarts() -> None:
    a, b = make_nodes(2)
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            ma = manager(a, [a, b])
            port_a = await nursery.start(ma.run)
            mb = manager(b, [a, b])
            port_b = await nursery.start(mb.run)
            ma.add_peer(address(b, port_b))
            mb.add_peer(address(a, port_a))
            await ma.wait_connected(b.key)

            mb.stop()
            await ma.wait_disconnected(b.key)
            # The same node comes back on the same port; a must find it again by itself.
            restarted = manager(b, [a, b], dataclasses.replace(FAST, listen_port=port_b))
            await nursery.start(restarted.run)
            await ma.wait_connected(b.key)
            await restarted.wait_connected(a.key)
            assert restarted.send(a.key, b"back")
            assert await ma.inbound.receive() == InboundFrame(b.key, b"back")
            assert ma.statistics().peers[b.key].connects >= 2
            nursery.cancel_scope.cancel()


async def test_on_connected_reports_each_connect_and_reconnect_with_the_peer_reachable() -> None:
    """The node re-sends consensus state to a peer that (re)connected: the callback comes for
    every registered connection, and a frame sent from inside it reaches the peer."""
    a, b = make_nodes(2)
    seen: list[bytes] = []
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:

            def greet(peer: bytes) -> None:
                seen.append(peer)
                assert ma.send(peer, b"hello %d" % len(seen))

            ma = PeerManager(a.seed, FAST, allowed_keys=[a.key, b.key], on_connected=greet)
            await nursery.start(ma.run)
            mb = manager(b, [a, b])
            port_b = await nursery.start(mb.run)
            ma.add_peer(address(b, port_b))
            assert await mb.inbound.receive() == InboundFrame(a.key, b"hello 1")
            mb.stop()
            await ma.wait_disconnected(b.key)
            restarted = manager(b, [a, b], dataclasses.replace(FAST, listen_port=port_b))
            await nursery.start(restarted.run)  # a redials it (only a dials: one connection)
            assert await restarted.inbound.receive() == InboundFrame(a.key, b"hello 2")
            assert seen == [b.key, b.key]
            nursery.cancel_scope.cancel()


async def test_penalties_disconnect_and_ban_until_the_ban_expires() -> None:
    a, b = make_nodes(2)
    now_s = [1000.0]  # the manager's clock for scores and bans, moved by the test
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            ma = manager(a, [a, b], clock=lambda: now_s[0])
            port_a = await nursery.start(ma.run)
            mb = manager(b, [a, b])
            await nursery.start(mb.run)
            mb.add_peer(address(a, port_a))  # only b dials, so no duplicate connections
            await ma.wait_connected(b.key)

            for _ in range(9):
                assert not ma.penalize(b.key, "bad_vote")
            assert b.key in ma.connected_peers()
            assert ma.penalize(b.key, "bad_vote")  # 10 x 10 points reach the threshold
            await ma.wait_disconnected(b.key)
            assert ma.is_banned(b.key)
            # b keeps redialing; a refuses it after each handshake.
            stats = await ma.wait_statistics(lambda s: s.rejected_banned >= 2)
            assert b.key not in ma.connected_peers()
            peer = stats.peers[b.key]
            assert peer.bans == 1 and peer.banned and peer.penalties == 10
            assert peer.penalties_by_reason == {"bad_vote": 10}
            assert stats.penalties_by_reason == {"bad_vote": 10}
            assert peer.last_close_reason == "banned"

            now_s[0] += FAST.ban_ms / 1000  # the ban expires
            await ma.wait_connected(b.key)
            assert not ma.is_banned(b.key)
            nursery.cancel_scope.cancel()


async def test_slow_peer_gets_bounded_queues_and_loses_the_oldest_frames() -> None:
    a, b = make_nodes(2)
    config = dataclasses.replace(
        FAST,
        outbound_queue_frames=16,
        inbound_queue_frames=8,
        write_timeout_ms=60_000,
        idle_timeout_ms=60_000,
    )
    frames_sent = 600
    payload_bytes = 32 * 1024
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            ma, mb = manager(a, [a, b], config), manager(b, [a, b], config)
            await nursery.start(ma.run)
            port_b = await nursery.start(mb.run)
            ma.add_peer(address(b, port_b))
            await mb.wait_connected(a.key)
            # b's node does not read its inbound queue: b's reader blocks, TCP fills up, a's
            # writer blocks and a's outbound queue overflows.
            for seq in range(frames_sent):
                assert ma.send(b.key, seq.to_bytes(4, "big") + bytes(payload_bytes))
                await trio.lowlevel.checkpoint()  # let the writer run between sends
            stats = await ma.wait_statistics(lambda s: s.frames_dropped > 0)
            peer = stats.peers[b.key]
            assert peer.frames_dropped == stats.frames_dropped
            assert peer.outbound_queue_frames <= 16
            assert len(mb.inbound) <= 8
            assert mb.statistics().inbound_queue_frames <= 8
            assert b.key in ma.connected_peers()  # slow is not dead

            # Draining b: frames arrive in order, with a gap, and the newest one arrives.
            received: list[int] = []
            while not received or received[-1] != frames_sent - 1:
                frame = await mb.inbound.receive()
                received.append(int.from_bytes(frame.payload[:4], "big"))
            assert received == sorted(received)
            assert len(received) < frames_sent
            assert len(received) + ma.statistics().frames_dropped == frames_sent
            nursery.cancel_scope.cancel()


async def test_pending_handshakes_are_limited() -> None:
    """Connections that have started a handshake keep their slots; a newcomer over the cap is
    closed at once. Silent ones are displaced by newcomers instead."""
    a, b = make_nodes(2)
    config = dataclasses.replace(
        FAST, handshakes_pending_max=2, handshakes_per_host_max=2, handshake_timeout_ms=10_000
    )
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            m = manager(a, [a, b], config)
            port = await nursery.start(m.run)
            silent = await trio.open_tcp_stream("127.0.0.1", port)
            await m.wait_statistics(lambda s: s.handshakes_pending == 1)
            talking = []
            for _ in range(2):
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                await stream.send_all(b"\x16\x03\x01")  # a ClientHello begins, then stalls
                talking.append(stream)
            await read_until_closed(silent)  # displaced by the second talking connection
            await m.wait_statistics(lambda s: s.handshakes_evicted == 1)
            extra = await trio.open_tcp_stream("127.0.0.1", port)
            await read_until_closed(extra)  # closed at once, not left waiting
            stats: PeerManagerStatistics = await m.wait_statistics(
                lambda s: s.handshakes_refused_per_host == 1
            )
            assert stats.handshakes_pending == 2 and stats.handshakes_pending_reserved == 0
            for stream in talking:
                await stream.aclose()
            nursery.cancel_scope.cancel()


async def keep_idle_sockets_open(port: int, count: int, local_address: str) -> None:
    """``count`` idle TCP connections to ``port`` from ``local_address``, each reopened as soon
    as the node closes it (a flood of unauthenticated clients), until cancelled."""

    async def one() -> None:
        while True:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port, local_address=local_address)
            except OSError:
                await trio.sleep(0.01)
                continue
            await read_until_closed(stream)
            await stream.aclose()

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)


@pytest.mark.parametrize("flood_from", ["127.0.0.1", "127.0.0.2"])
async def test_a_validator_connects_through_a_flood_of_idle_sockets(flood_from: str) -> None:
    """A flood of idle sockets, reopened as they are closed, from another host (public slots:
    the per-host cap holds it) or from the validators' own host (a localnet: reserved slots,
    where newcomers displace the silent sockets): a validator dialing in still connects."""
    a, b = make_nodes(2)
    config = dataclasses.replace(
        FAST,
        idle_timeout_ms=30_000,
        handshakes_pending_max=8,
        handshakes_per_host_max=2,
        handshakes_reserved_max=8,
        # Long enough that no idle socket times out while the validator dials: only
        # displacing silent sockets lets it in.
        handshake_silent_timeout_ms=10_000,
        handshake_timeout_ms=10_000,
    )
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            ma = manager(a, [a, b], config)
            # A knows where B lives (127.0.0.1) but B alone dials: the way in is A's listener.
            ma.add_peer(PeerAddress(b.key, "127.0.0.1", 1))
            port = await nursery.start(ma.run)
            nursery.start_soon(keep_idle_sockets_open, port, 40, flood_from)
            await ma.wait_statistics(lambda s: s.tcp_accepted >= 60)  # the flood is on
            mb = manager(b, [a, b], config)
            await nursery.start(mb.run)
            mb.add_peer(address(a, port))
            with trio.fail_after(3):
                await ma.wait_connected(b.key)
                # Each side registers the link when its own handshake ends: B may learn it a
                # moment after A does, and a send before that finds no connection.
                await mb.wait_connected(a.key)
            assert mb.send(a.key, b"through the flood")
            assert await ma.inbound.receive() == InboundFrame(b.key, b"through the flood")
            stats = ma.statistics()
            assert stats.handshakes_evicted > 0
            if flood_from == "127.0.0.2":  # one host of the public pool: its cap holds
                assert stats.handshakes_pending_reserved == 0 and stats.handshakes_pending <= 2
            nursery.cancel_scope.cancel()


async def test_running_twice_is_a_bug_reported_through_the_nursery() -> None:
    a, b = make_nodes(2)
    m = manager(a, [a, b])
    with trio.fail_after(TEST_TIMEOUT_S):
        with pytest.RaisesGroup(InvariantError):
            async with trio.open_nursery() as nursery:
                await nursery.start(m.run)
                await nursery.start(m.run)


def _self_signed_context(seed: bytes) -> ssl.SSLContext:
    """A client presenting a genuinely self-signed certificate for an allowed key."""
    key = Ed25519PrivateKey.from_private_bytes(seed)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "self")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(datetime.datetime(2100, 1, 1, tzinfo=datetime.UTC))
        .sign(key, None)
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols([ALPN_PROTOCOL])
    with tempfile.TemporaryDirectory() as directory:
        cert_file, key_file = Path(directory) / "c.pem", Path(directory) / "k.pem"
        cert_file.write_bytes(certificate.public_bytes(Encoding.PEM))
        key_file.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        context.load_cert_chain(cert_file, key_file)
    return context


def _client_contexts(allowed_seed: bytes) -> dict[str, ssl.SSLContext]:
    no_certificate = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    no_certificate.check_hostname = False
    no_certificate.verify_mode = ssl.CERT_NONE
    tls12 = make_tls_contexts(allowed_seed).client
    tls12.minimum_version = ssl.TLSVersion.TLSv1_2
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    return {
        "no client certificate": no_certificate,
        "TLS 1.2 only": tls12,
        "self-signed, not chained to the anchor": _self_signed_context(allowed_seed),
    }


def failures_at_least(count: int) -> Callable[[PeerManagerStatistics], bool]:
    return lambda stats: stats.handshake_failures >= count


async def test_tls_without_a_valid_client_certificate_or_below_1_3_is_refused() -> None:
    a, b = make_nodes(2)
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            m = manager(a, [a, b])
            port = await nursery.start(m.run)
            contexts = _client_contexts(b.seed)
            for count, (label, context) in enumerate(contexts.items(), start=1):
                tcp = await trio.open_tcp_stream("127.0.0.1", port)
                stream = trio.SSLStream(tcp, context)
                try:
                    await stream.do_handshake()
                    await stream.send_all(b"\x00\x00\x00\x02hi")
                    await read_until_closed(stream)
                except trio.BrokenResourceError:
                    pass  # refused during the handshake
                await trio.aclose_forcefully(stream)
                stats = await m.wait_statistics(failures_at_least(count))
                assert stats.connected_peers == 0, label
                assert stats.peers[b.key].connects == 0, label
            assert len(m.inbound) == 0
            nursery.cancel_scope.cancel()


async def test_peer_that_stops_reading_hits_the_write_timeout() -> None:
    a, b = make_nodes(2)
    config = dataclasses.replace(
        FAST, write_timeout_ms=300, idle_timeout_ms=60_000, outbound_queue_frames=64
    )
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            m = manager(a, [a, b], config)
            port = await nursery.start(m.run)
            # An allowed peer that never reads: once the socket buffers are full, a's writes
            # cannot complete.
            stream = await tls_client(b.seed, port)
            await m.wait_connected(b.key)
            payload = bytes(60 * 1024)
            while b.key in m.connected_peers():
                m.send(b.key, payload)
                await trio.lowlevel.checkpoint()
            stats = await m.wait_statistics(lambda s: s.write_timeouts == 1)
            assert stats.peers[b.key].last_close_reason == "write_timeout"
            await trio.aclose_forcefully(stream)
            nursery.cancel_scope.cancel()


async def test_inbound_queue_blocks_on_its_byte_bound() -> None:
    queue = InboundQueue(frames_max=100, bytes_max=100)
    key = bytes(32)
    with trio.fail_after(TEST_TIMEOUT_S):
        await queue.put(InboundFrame(key, bytes(60)))
        done: list[bool] = []

        async def second_put() -> None:
            await queue.put(InboundFrame(key, bytes(60)))
            done.append(True)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(second_put)
            await trio.testing.wait_all_tasks_blocked()
            assert not done and queue.queued_bytes == 60  # 60 + 60 > 100: it waits
            assert (await queue.receive()).payload == bytes(60)
        assert done and queue.queued_bytes == 60
        # An empty queue takes a frame of any size, so a big frame can never wedge it.
        await queue.receive()
        await queue.put(InboundFrame(key, bytes(500)))
        assert len(queue) == 1


async def test_penalizing_an_unknown_key_is_ignored() -> None:
    a, b = make_nodes(2)
    m = manager(a, [a, b])
    assert not m.penalize(make_nodes(1)[0].key, "bad_vote")
    assert m.statistics().penalties == 0
