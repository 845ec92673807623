"""Limits and timings of the transport, one frozen value per node."""

from __future__ import annotations

import dataclasses

from p2p.frames import FRAME_BYTES_LIMIT

MIB = 1024 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class TransportConfig:
    """Everything the transport is limited by. ``validate`` names the first bad field."""

    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    # Largest payload of one frame; a larger length header disconnects the sender.
    frame_bytes_max: int = 4 * MIB
    # Frames from all peers waiting for the node to read them (shared, with backpressure).
    inbound_queue_frames: int = 4096
    inbound_queue_bytes_max: int = 64 * MIB
    # Frames waiting to be written to one peer; when full the oldest are dropped.
    outbound_queue_frames: int = 1024
    outbound_queue_bytes_max: int = 32 * MIB
    # Most bytes joined into one write (write coalescing).
    write_coalesce_bytes_max: int = 256 * 1024
    # TCP connect + TLS handshake + identity check, either direction. Short: a pending
    # handshake holds a slot that idle sockets would otherwise keep from validators.
    handshake_timeout_ms: int = 3_000
    # An inbound connection that sends no byte for this long is closed (an honest client
    # sends its TLS ClientHello at once); until then it is "silent" and may be evicted.
    handshake_silent_timeout_ms: int = 1_000
    # A connection that delivers no byte for this long is dead (half-open or silent).
    idle_timeout_ms: int = 30_000
    # An empty frame is sent after this long without other traffic, so an idle but healthy
    # connection never hits the peer's idle timeout.
    keepalive_interval_ms: int = 5_000
    # One coalesced write that cannot finish in this time means the peer stopped reading.
    write_timeout_ms: int = 15_000
    dial_backoff_base_ms: int = 100
    dial_backoff_max_ms: int = 10_000
    # A connection that lived this long resets its dial backoff.
    backoff_reset_after_ms: int = 10_000
    connections_max: int = 256
    # Pending inbound handshakes from hosts other than known validators' (see
    # ``HandshakeSlots``), from one such host, and from known validators' hosts.
    handshakes_pending_max: int = 64
    handshakes_per_host_max: int = 4
    handshakes_reserved_max: int = 32
    penalty_threshold: int = 100
    penalty_decay_per_s: int = 1
    ban_ms: int = 600_000

    def validate(self) -> None:
        """Raise ValueError naming the first field out of range or inconsistent."""
        limits: dict[str, tuple[int, int]] = {
            "listen_port": (0, 65_535),
            "frame_bytes_max": (1024, min(FRAME_BYTES_LIMIT, 1024 * MIB)),
            "inbound_queue_frames": (1, 1_000_000),
            "inbound_queue_bytes_max": (1024, 64 * 1024 * MIB),
            "outbound_queue_frames": (1, 1_000_000),
            "outbound_queue_bytes_max": (1024, 64 * 1024 * MIB),
            "write_coalesce_bytes_max": (1024, 64 * MIB),
            "handshake_timeout_ms": (10, 600_000),
            "handshake_silent_timeout_ms": (10, 600_000),
            "idle_timeout_ms": (10, 3_600_000),
            "keepalive_interval_ms": (5, 3_600_000),
            "write_timeout_ms": (10, 3_600_000),
            "dial_backoff_base_ms": (1, 600_000),
            "dial_backoff_max_ms": (1, 3_600_000),
            "backoff_reset_after_ms": (0, 3_600_000),
            "connections_max": (1, 100_000),
            "handshakes_pending_max": (1, 100_000),
            "handshakes_per_host_max": (1, 100_000),
            "handshakes_reserved_max": (1, 100_000),
            "penalty_threshold": (1, 1_000_000),
            "penalty_decay_per_s": (0, 1_000_000),
            "ban_ms": (0, 30 * 24 * 3_600_000),
        }
        for name, (lo, hi) in limits.items():
            value = getattr(self, name)
            if type(value) is not int or not lo <= value <= hi:
                raise ValueError(f"{name} = {value!r} is out of range ({lo}..{hi})")
        if not self.listen_host:
            raise ValueError("listen_host must not be empty")
        # A keepalive goes out at most two intervals after the last write; a third interval
        # of slack covers network delay before the peer's idle timeout fires.
        if 3 * self.keepalive_interval_ms > self.idle_timeout_ms:
            raise ValueError("keepalive_interval_ms must be at most a third of idle_timeout_ms")
        if self.frame_bytes_max + 4 > self.outbound_queue_bytes_max:
            raise ValueError("outbound_queue_bytes_max must hold at least one largest frame")
        if self.frame_bytes_max > self.inbound_queue_bytes_max:
            raise ValueError("inbound_queue_bytes_max must hold at least one largest frame")
        if self.handshake_silent_timeout_ms > self.handshake_timeout_ms:
            raise ValueError("handshake_silent_timeout_ms must not exceed handshake_timeout_ms")
        if self.dial_backoff_base_ms > self.dial_backoff_max_ms:
            raise ValueError("dial_backoff_base_ms must not exceed dial_backoff_max_ms")
