"""One authenticated connection to one peer: a reader, a writer and a keepalive task.

The connection is created only after the TLS handshake and the key pin succeeded. It runs
until the first of its three tasks ends, then closes the stream forcefully (a half-open
socket must not block shutdown on a TLS close_notify that will never be answered) and
reports a :class:`CloseReason`. It never raises for anything the peer or the network can do;
the peer manager does the accounting (penalties, counters) from the close reason.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from p2p.config import TransportConfig
from p2p.frames import KEEPALIVE_FRAME, FrameDecoder, FrameTooLarge, OutboundQueue

READ_CHUNK_BYTES = 64 * 1024

# Everything the network or a peer can make a stream operation raise. trio turns ssl and
# socket errors into BrokenResourceError; OSError covers the rest of the socket layer.
NETWORK_ERRORS: tuple[type[Exception], ...] = (
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    OSError,
)


class Direction(enum.StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class CloseReason(enum.StrEnum):
    EOF = "eof"  # the peer closed cleanly
    BROKEN = "broken"  # reset, TLS error, or any other transport failure
    IDLE_TIMEOUT = "idle_timeout"
    WRITE_TIMEOUT = "write_timeout"
    OVERSIZE_FRAME = "oversize_frame"
    DUPLICATE = "duplicate"  # a better connection to the same peer replaced this one
    BANNED = "banned"
    LOCAL = "local"  # disconnect() from our side
    SHUTDOWN = "shutdown"


@dataclasses.dataclass(slots=True)
class PeerStatistics:
    """Counters for one peer, kept across its reconnections (the set of peers is bounded)."""

    connected: bool = False
    direction: str = ""
    remote_address: str = ""
    bytes_in: int = 0
    bytes_out: int = 0
    frames_in: int = 0
    frames_out: int = 0
    frames_dropped: int = 0
    outbound_queue_frames: int = 0
    outbound_queue_bytes: int = 0
    invalid_frames: int = 0
    penalties: int = 0
    penalty_score: float = 0.0
    bans: int = 0
    banned: bool = False
    connects: int = 0
    disconnects: int = 0
    last_close_reason: str = ""
    penalties_by_reason: dict[str, int] = dataclasses.field(default_factory=dict)


Deliver = Callable[[bytes, bytes], Awaitable[None]]


class Connection:
    """A registered connection. ``enqueue`` never blocks; ``run`` returns when it is closed."""

    def __init__(
        self,
        stream: trio.SSLStream[Any],
        *,
        peer_id: bytes,
        dialer_key: bytes,
        direction: Direction,
        remote_address: str,
        config: TransportConfig,
        stats: PeerStatistics,
        deliver: Deliver,
        on_drop: Callable[[int], None],
    ) -> None:
        self.peer_id = peer_id
        self.dialer_key = dialer_key
        self.direction = direction
        self.remote_address = remote_address
        self.close_reason: CloseReason | None = None
        self.opened_at_s = trio.current_time()
        self._stream = stream
        self._config = config
        self._stats = stats
        self._deliver = deliver
        self._on_drop = on_drop
        self._queue = OutboundQueue(config.outbound_queue_frames, config.outbound_queue_bytes_max)
        self._queue_nonempty = trio.Event()
        self._last_send_s = self.opened_at_s
        self._cancel_scope = trio.CancelScope()

    def enqueue(self, frame: bytes) -> None:
        """Queue an encoded frame for the writer; drops the oldest frames when full."""
        dropped = self._queue.push(frame)
        self._stats.outbound_queue_frames = len(self._queue)
        self._stats.outbound_queue_bytes = self._queue.queued_bytes
        self._queue_nonempty.set()
        if dropped:
            self._stats.frames_dropped += dropped
            self._on_drop(dropped)

    def close(self, reason: CloseReason) -> None:
        """Ask the connection to close; the first reason given is the one reported."""
        if self.close_reason is None:
            self.close_reason = reason
        self._cancel_scope.cancel()

    async def run(self) -> CloseReason:
        try:
            with self._cancel_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._read_loop)
                    nursery.start_soon(self._write_loop)
                    nursery.start_soon(self._keepalive_loop)
        finally:
            if self.close_reason is None:
                self.close_reason = CloseReason.SHUTDOWN
            # Forceful: a graceful TLS close waits for the peer, which may never answer.
            await trio.aclose_forcefully(self._stream)
        return self.close_reason

    async def _read_loop(self) -> None:
        decoder = FrameDecoder(self._config.frame_bytes_max)
        idle_timeout_s = self._config.idle_timeout_ms / 1000
        while True:
            data: bytes | bytearray = b""
            with trio.move_on_after(idle_timeout_s) as idle:
                try:
                    data = await self._stream.receive_some(READ_CHUNK_BYTES)
                except NETWORK_ERRORS:
                    self.close(CloseReason.BROKEN)
                    return
            if idle.cancelled_caught:
                self.close(CloseReason.IDLE_TIMEOUT)
                return
            if not data:
                self.close(CloseReason.EOF)
                return
            self._stats.bytes_in += len(data)
            try:
                frames = decoder.feed(data)
            except FrameTooLarge:
                self.close(CloseReason.OVERSIZE_FRAME)
                return
            for payload in frames:
                if payload:  # empty frames are keepalives
                    self._stats.frames_in += 1
                    # Blocks while the shared inbound queue is full: backpressure reaches the
                    # peer through TCP flow control instead of an unbounded buffer here.
                    await self._deliver(self.peer_id, payload)

    async def _write_loop(self) -> None:
        write_timeout_s = self._config.write_timeout_ms / 1000
        batch_bytes_max = self._config.write_coalesce_bytes_max
        while True:
            batch = self._queue.pop_batch(batch_bytes_max)
            self._stats.outbound_queue_frames = len(self._queue)
            self._stats.outbound_queue_bytes = self._queue.queued_bytes
            if not batch:
                self._queue_nonempty = trio.Event()
                await self._queue_nonempty.wait()
                continue
            data = b"".join(batch)
            with trio.move_on_after(write_timeout_s) as stalled:
                try:
                    await self._stream.send_all(data)
                except NETWORK_ERRORS:
                    self.close(CloseReason.BROKEN)
                    return
            if stalled.cancelled_caught:
                self.close(CloseReason.WRITE_TIMEOUT)
                return
            self._last_send_s = trio.current_time()
            self._stats.bytes_out += len(data)
            self._stats.frames_out += sum(1 for frame in batch if frame is not KEEPALIVE_FRAME)

    async def _keepalive_loop(self) -> None:
        interval_s = self._config.keepalive_interval_ms / 1000
        while True:
            await trio.sleep(interval_s)
            quiet_s = trio.current_time() - self._last_send_s
            if quiet_s >= interval_s and not len(self._queue):
                self.enqueue(KEEPALIVE_FRAME)
