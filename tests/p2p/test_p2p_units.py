"""Pure parts of the transport: framing, the outbound queue, backoff, abuse score, dedup rule,
addresses, config validation and the TLS certificates."""

from __future__ import annotations

import ast
import dataclasses
import itertools
import random
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given
from hypothesis import strategies as st

from p2p import FrameDecoder, FrameTooLarge, OutboundQueue, PeerAddress, TransportConfig
from p2p.address import parse_host_port
from p2p.check import InvariantError, check
from p2p.frames import KEEPALIVE_FRAME, encode_frame
from p2p.policy import AbuseScore, Backoff, HandshakeSlots, keep_new_connection
from p2p.tls import anchor_certificate, node_certificate, public_key_of_certificate
from state_machine.crypto import Keypair
from tests.conftest import REPO_ROOT

MAX = 1024


def test_check_survives_optimisation_flag() -> None:
    # check() is a plain raise, not an assert statement, so -O cannot remove it.
    with pytest.raises(InvariantError, match="boom"):
        check(False, "boom")
    check(True, "fine")


@given(
    payloads=st.lists(st.binary(max_size=MAX), max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=30_000), max_size=10),
)
def test_decoder_reassembles_frames_split_anywhere(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(p, MAX) for p in payloads)
    points = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    decoder = FrameDecoder(MAX)
    out: list[bytes] = []
    for start, end in itertools.pairwise(points):
        out.extend(decoder.feed(stream[start:end]))
    assert out == payloads
    assert decoder.buffered_bytes == 0


def test_keepalive_is_an_empty_frame() -> None:
    assert FrameDecoder(MAX).feed(KEEPALIVE_FRAME + encode_frame(b"x", MAX)) == [b"", b"x"]


def test_oversize_length_is_rejected_from_the_header_alone() -> None:
    decoder = FrameDecoder(MAX)
    assert decoder.feed(encode_frame(b"ok", MAX)) == [b"ok"]
    # Only the 4-byte header of a too-large frame: rejected before any body arrives.
    with pytest.raises(FrameTooLarge) as info:
        decoder.feed((MAX + 1).to_bytes(4, "big"))
    assert info.value.frame_bytes == MAX + 1
    assert FrameDecoder(MAX).feed(MAX.to_bytes(4, "big")) == []  # exactly MAX is allowed


def test_encode_refuses_oversize_payload() -> None:
    encode_frame(b"a" * MAX, MAX)
    with pytest.raises(FrameTooLarge):
        encode_frame(b"a" * (MAX + 1), MAX)


def test_outbound_queue_drops_oldest_by_frame_count() -> None:
    queue = OutboundQueue(frames_max=3, bytes_max=10_000)
    assert [queue.push(bytes([i])) for i in range(5)] == [0, 0, 0, 1, 1]
    assert len(queue) == 3
    assert queue.pop_batch(10_000) == [b"\x02", b"\x03", b"\x04"]
    assert queue.queued_bytes == 0


def test_outbound_queue_drops_oldest_by_bytes() -> None:
    queue = OutboundQueue(frames_max=100, bytes_max=10)
    queue.push(b"aaaa")
    queue.push(b"bbbb")
    assert queue.push(b"cccccc") == 1  # 4 + 4 + 6 > 10: "aaaa" goes
    assert queue.queued_bytes == 10
    assert queue.pop_batch(100) == [b"bbbb", b"cccccc"]


def test_outbound_queue_coalesces_up_to_the_batch_limit() -> None:
    queue = OutboundQueue(frames_max=100, bytes_max=1000)
    for _ in range(10):
        queue.push(b"x" * 30)
    assert len(queue.pop_batch(100)) == 3  # 3 * 30 <= 100 < 4 * 30
    assert len(queue.pop_batch(1)) == 1  # always at least one frame, or nothing moves
    assert queue.queued_bytes == 6 * 30


@given(
    frames_max=st.integers(1, 20),
    bytes_max=st.integers(50, 500),
    sizes=st.lists(st.integers(0, 50), max_size=100),
)
def test_outbound_queue_never_exceeds_its_bounds(
    frames_max: int, bytes_max: int, sizes: list[int]
) -> None:
    queue = OutboundQueue(frames_max, bytes_max)
    pushed = dropped = 0
    for size in sizes:
        dropped += queue.push(b"x" * size)
        pushed += 1
        assert len(queue) <= frames_max
        assert queue.queued_bytes <= bytes_max
    assert pushed - dropped == len(queue)


def test_backoff_grows_is_capped_and_resets() -> None:
    backoff = Backoff(base_ms=100, max_ms=1000, rng=random.Random(1))
    delays = [backoff.next_delay_ms() for _ in range(10)]
    ceilings = [100, 200, 400, 800, 1000, 1000, 1000, 1000, 1000, 1000]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert 50 <= backoff.next_delay_ms() <= 100
    for _ in range(200):  # no overflow after a peer is down for a long time
        backoff.next_delay_ms()
    assert backoff.ceiling_ms() == 1000


def test_backoff_jitter_is_seeded() -> None:
    def run(seed: int) -> list[float]:
        backoff = Backoff(100, 10_000, random.Random(seed))
        return [backoff.next_delay_ms() for _ in range(5)]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_abuse_score_decays_and_bans_at_threshold() -> None:
    score = AbuseScore(threshold=100, decay_per_s=10)
    assert not score.add(60, now_s=0.0)
    assert score.value(now_s=3.0) == pytest.approx(30)
    assert not score.add(60, now_s=3.0)  # 30 + 60 = 90 < 100
    assert score.add(20, now_s=3.0)  # 110 >= 100: ban, and the score starts over
    assert score.value(now_s=3.0) == 0
    assert score.value(now_s=1000.0) == 0  # never negative


def test_duplicate_rule_is_symmetric() -> None:
    low, high = b"\x01" * 32, b"\x02" * 32
    # Connection X dialed by low, connection Y dialed by high. Whichever each end saw
    # first, both ends keep X.
    assert keep_new_connection(low, high, existing_dialer=high, new_dialer=low)
    assert not keep_new_connection(low, high, existing_dialer=low, new_dialer=high)
    assert keep_new_connection(high, low, existing_dialer=high, new_dialer=low)
    assert not keep_new_connection(high, low, existing_dialer=low, new_dialer=high)
    # Same dialer twice: the dialer gave up on the old connection; keep the new one.
    assert keep_new_connection(low, high, existing_dialer=high, new_dialer=high)
    assert keep_new_connection(high, low, existing_dialer=high, new_dialer=high)
    with pytest.raises(InvariantError):
        keep_new_connection(low, low, existing_dialer=low, new_dialer=low)


def test_peer_address_round_trip_and_errors() -> None:
    key = bytes(range(32))
    address = PeerAddress.parse(f"{key.hex()}@10.0.0.1:26656")
    assert address == PeerAddress(key, "10.0.0.1", 26656)
    assert PeerAddress.parse(str(address)) == address
    v6 = PeerAddress.parse(f"{key.hex()}@[::1]:7")
    assert v6.host == "::1" and str(v6).endswith("@[::1]:7")
    for bad in [
        "nokey",
        f"{key.hex()}@host",
        f"{key.hex()}@host:0",
        f"{key.hex()}@host:70000",
        f"{key.hex()[:-2]}@host:1",
        f"{'zz' * 32}@host:1",
        f"{key.hex()}@::1:5",
    ]:
        with pytest.raises(ValueError):
            PeerAddress.parse(bad)
    assert parse_host_port("0.0.0.0:0") == ("0.0.0.0", 0)


def test_transport_config_validation_names_the_field() -> None:
    TransportConfig().validate()
    bad: dict[str, Any] = {
        "frame_bytes_max": 0,
        "listen_port": 70_000,
        "handshake_timeout_ms": 0,
        "inbound_queue_frames": 0,
    }
    for name, value in bad.items():
        with pytest.raises(ValueError, match=name):
            dataclasses.replace(TransportConfig(), **{name: value}).validate()
    with pytest.raises(ValueError, match="keepalive_interval_ms"):
        TransportConfig(keepalive_interval_ms=20_000, idle_timeout_ms=30_000).validate()
    with pytest.raises(ValueError, match="outbound_queue_bytes_max"):
        TransportConfig(frame_bytes_max=2048, outbound_queue_bytes_max=2048).validate()


def test_certificate_carries_the_node_key_and_is_deterministic() -> None:
    seed = bytes(range(32))
    der = node_certificate(seed).public_bytes(Encoding.DER)
    # The key in the certificate is the validator key libsodium derives from the same seed.
    assert public_key_of_certificate(der) == Keypair(seed).public_key
    assert node_certificate(seed).public_bytes(Encoding.DER) == der
    # Chained to the anchor: the anchor's key verifies the certificate's signature.
    certificate = node_certificate(seed)
    anchor_key = anchor_certificate().public_key()
    assert isinstance(anchor_key, Ed25519PublicKey)
    anchor_key.verify(certificate.signature, certificate.tbs_certificate_bytes)
    assert public_key_of_certificate(b"garbage") is None
    assert public_key_of_certificate(None) is None


def test_p2p_knows_nothing_of_blocks_or_orders() -> None:
    # p2p moves bytes between peers; it must not import the node, the cores or the CLI. The one
    # exception is the project's shared invariant helper, a leaf module that imports nothing.
    forbidden = {"node", "consensus", "state_machine", "cli", "localnet"}
    allowed = {"state_machine.invariants"}
    for path in sorted((REPO_ROOT / "p2p").glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for item in ast.walk(tree):
            if isinstance(item, ast.Import):
                names = [alias.name for alias in item.names]
            elif isinstance(item, ast.ImportFrom) and item.level == 0 and item.module:
                names = [item.module]
            else:
                continue
            for name in names:
                if name in allowed:
                    continue
                assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"


def test_handshake_slots_cap_each_host_and_evict_its_oldest_silent_connection() -> None:
    slots = HandshakeSlots(public_max=10, per_host_max=2, reserved_max=4)
    first, _, _ = slots.admit("10.0.0.1", reserved=False)
    second, _, _ = slots.admit("10.0.0.1", reserved=False)
    assert first is not None and second is not None
    third, evicted, refusal = slots.admit("10.0.0.1", reserved=False)
    assert (evicted, refusal) == (first, "") and third is not None
    assert not slots.holds(first) and not slots.mark_spoken(first)
    assert slots.mark_spoken(second) and slots.mark_spoken(third)
    # Every slot of the host has spoken: nothing to displace, the newcomer is refused.
    assert slots.admit("10.0.0.1", reserved=False) == (None, None, "per_host")
    other, evicted, _ = slots.admit("10.0.0.2", reserved=False)
    assert other is not None and evicted is None
    slots.release(second)
    slots.release(second)  # a second release is a no-op
    assert slots.admit("10.0.0.1", reserved=False)[0] is not None
    assert len(slots) == 3


def test_handshake_slots_pools_are_separate_and_full_pools_evict_or_refuse() -> None:
    slots = HandshakeSlots(public_max=3, per_host_max=3, reserved_max=2)
    public = [slots.admit(f"10.0.1.{i}", reserved=False)[0] for i in range(3)]
    assert all(token is not None for token in public)
    # Full public pool: the oldest silent public connection makes room, whatever its host.
    newcomer, evicted, _ = slots.admit("10.0.1.9", reserved=False)
    assert newcomer is not None and evicted == public[0]
    for token in (*public[1:], newcomer):
        assert token is not None and slots.mark_spoken(token)
    assert slots.admit("10.0.1.10", reserved=False) == (None, None, "public_full")
    # The reserved pool is untouched by the public one and has no per-host cap.
    reserved = [slots.admit("127.0.0.1", reserved=True)[0] for _ in range(2)]
    assert all(token is not None for token in reserved)
    assert slots.count(reserved=True) == 2 and slots.count(reserved=False) == 3
    again, evicted, _ = slots.admit("127.0.0.1", reserved=True)
    assert again is not None and evicted == reserved[0]
    for token in (reserved[1], again):
        assert token is not None and slots.mark_spoken(token)
    assert slots.admit("127.0.0.1", reserved=True) == (None, None, "reserved_full")


@given(
    st.lists(
        st.tuples(st.sampled_from(["admit", "speak", "release"]), st.integers(0, 5), st.booleans()),
        max_size=200,
    )
)
def test_handshake_slots_never_exceed_their_caps(ops: list[tuple[str, int, bool]]) -> None:
    slots = HandshakeSlots(public_max=4, per_host_max=2, reserved_max=3)
    live: list[int] = []
    for op, n, reserved in ops:
        if op == "admit":
            token, evicted, _ = slots.admit(f"h{n % 3}", reserved=reserved)
            if evicted is not None:
                live.remove(evicted)
            if token is not None:
                live.append(token)
        elif live:
            token = live[n % len(live)]
            if op == "speak":
                slots.mark_spoken(token)
            else:
                slots.release(token)
                live.remove(token)
        assert len(slots) == len(live)
        assert slots.count(reserved=True) <= 3 and slots.count(reserved=False) <= 4
        assert all(slots.host_count(f"h{i}") <= 2 for i in range(3))
