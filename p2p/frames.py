"""Frames on a p2p connection: a 4-byte big-endian length, then that many payload bytes.

A zero-length frame is a keepalive: it proves the peer is alive and is never delivered. Any
length above the connection's ``frame_bytes_max`` is a protocol violation detected from the
4-byte header alone, before a single payload byte is buffered, so a hostile peer cannot make
us allocate more than ``frame_bytes_max`` plus one read chunk.

This module is pure (no I/O): :class:`FrameDecoder` is fed bytes and returns whole frames, and
:class:`OutboundQueue` is the bounded per-peer send queue with its drop policy.
"""

from __future__ import annotations

from collections import deque

from p2p.check import check

FRAME_HEADER_BYTES = 4
# The length field is a u32; a configured limit can never exceed it.
FRAME_BYTES_LIMIT = 2**32 - 1
KEEPALIVE_FRAME = b"\x00\x00\x00\x00"


class FrameTooLarge(ValueError):
    """A frame whose length exceeds the limit (from a peer's header, or a local payload)."""

    def __init__(self, frame_bytes: int, frame_bytes_max: int) -> None:
        super().__init__(f"frame of {frame_bytes} bytes exceeds limit of {frame_bytes_max}")
        self.frame_bytes = frame_bytes
        self.frame_bytes_max = frame_bytes_max


def encode_frame(payload: bytes, frame_bytes_max: int) -> bytes:
    """Header + payload. Raises FrameTooLarge: sending an oversize frame is the caller's bug,
    and the peer would disconnect us for it anyway."""
    if len(payload) > frame_bytes_max:
        raise FrameTooLarge(len(payload), frame_bytes_max)
    return len(payload).to_bytes(FRAME_HEADER_BYTES, "big") + payload


class FrameDecoder:
    """Incremental decoder: ``feed`` bytes as they arrive, get back complete payloads.

    Keepalives come back as ``b""``; the caller skips them. The buffer never holds more than
    one partial frame (at most ``frame_bytes_max + FRAME_HEADER_BYTES - 1`` bytes) plus the
    last chunk fed.
    """

    __slots__ = ("_buffer", "frame_bytes_max")

    def __init__(self, frame_bytes_max: int) -> None:
        check(0 < frame_bytes_max <= FRAME_BYTES_LIMIT, "frame_bytes_max out of range")
        self.frame_bytes_max = frame_bytes_max
        self._buffer = bytearray()

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes | bytearray) -> list[bytes]:
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        position = 0
        # One compaction per feed instead of one per frame: many small frames in one read
        # would otherwise cost quadratic copying.
        while len(buffer) - position >= FRAME_HEADER_BYTES:
            frame_bytes = int.from_bytes(buffer[position : position + FRAME_HEADER_BYTES], "big")
            if frame_bytes > self.frame_bytes_max:
                raise FrameTooLarge(frame_bytes, self.frame_bytes_max)
            end = position + FRAME_HEADER_BYTES + frame_bytes
            if end > len(buffer):
                break
            frames.append(bytes(buffer[position + FRAME_HEADER_BYTES : end]))
            position = end
        if position:
            del buffer[:position]
        return frames


class OutboundQueue:
    """The bounded queue of encoded frames waiting to be written to one peer.

    Bounded both in frames and in bytes. Drop policy when full: drop the OLDEST frames until
    the new one fits. A peer that is this far behind will not use stale consensus messages
    (their view has passed) and recovers missed blocks through block sync, so the newest
    traffic is the most valuable; dropping the newest instead would keep a slow peer stuck on
    old views. Every drop is counted by the caller.
    """

    __slots__ = ("_frames", "bytes_max", "frames_max", "queued_bytes")

    def __init__(self, frames_max: int, bytes_max: int) -> None:
        check(frames_max >= 1 and bytes_max >= 1, "outbound queue limits must be positive")
        self.frames_max = frames_max
        self.bytes_max = bytes_max
        self.queued_bytes = 0
        self._frames: deque[bytes] = deque()

    def __len__(self) -> int:
        return len(self._frames)

    def push(self, frame: bytes) -> int:
        """Queue ``frame``; return how many older frames were dropped to make room."""
        check(len(frame) <= self.bytes_max, "frame larger than the whole outbound queue")
        dropped = 0
        while self._frames and (
            len(self._frames) >= self.frames_max or self.queued_bytes + len(frame) > self.bytes_max
        ):
            self.queued_bytes -= len(self._frames.popleft())
            dropped += 1
        self._frames.append(frame)
        self.queued_bytes += len(frame)
        check(len(self._frames) <= self.frames_max, "outbound queue over its frame bound")
        check(self.queued_bytes <= self.bytes_max, "outbound queue over its byte bound")
        return dropped

    def pop_batch(self, batch_bytes_max: int) -> list[bytes]:
        """Frames to write in one ``send_all``: at least one if any are queued, then more
        while the batch stays within ``batch_bytes_max`` (write coalescing)."""
        batch: list[bytes] = []
        batch_bytes = 0
        frames = self._frames
        while frames and (not batch or batch_bytes + len(frames[0]) <= batch_bytes_max):
            frame = frames.popleft()
            batch.append(frame)
            batch_bytes += len(frame)
        self.queued_bytes -= batch_bytes
        return batch
