"""How much block sync a node serves to each peer.

A ``SyncRequest`` is a few bytes; its answer is up to ``sync_batch_blocks`` committed blocks
with their QCs, read from storage on a worker thread while the peer-inbound loop waits. A
wide request costs the server hundreds of times what it cost the sender, so serving is
metered per peer with a token bucket in bytes:

* the bucket holds at most ``burst_bytes`` and refills at ``bytes_per_s``;
* a request needs at least ``request_cost_bytes`` in the bucket, else it is refused (counted;
  not a fault: an honest node catching up asks again a view later), and is charged that much
  whatever it returns, so a stream of requests for nothing is metered too;
* an answer holds at most what is left in the bucket (but always one block, or a far-behind
  peer with large blocks could never be served) and its encoded size is charged.

So one peer gets at most ``burst_bytes`` plus ``bytes_per_s`` per second (plus one block),
whatever it asks. Buckets exist only for peers that may connect (an allowed set), so memory
is bounded. The clock is passed in; nothing here reads time.
"""

from __future__ import annotations

import dataclasses

from consensus.types import CommittedBlock
from node.chain import Chain

REQUEST_COST_BYTES = 16 * 1024


@dataclasses.dataclass(slots=True)
class _Bucket:
    tokens: float
    updated_s: float


class SyncServeBudget:
    """Per-peer token buckets for serving block sync (see the module docstring)."""

    __slots__ = ("_buckets", "burst_bytes", "bytes_per_s", "request_cost_bytes")

    def __init__(
        self,
        bytes_per_s: int,
        burst_bytes: int,
        request_cost_bytes: int = REQUEST_COST_BYTES,
    ) -> None:
        if bytes_per_s < 1 or burst_bytes < request_cost_bytes or request_cost_bytes < 1:
            raise ValueError("need bytes_per_s >= 1 and burst_bytes >= request_cost_bytes >= 1")
        self.bytes_per_s = bytes_per_s
        self.burst_bytes = burst_bytes
        self.request_cost_bytes = request_cost_bytes
        self._buckets: dict[bytes, _Bucket] = {}

    def available(self, peer: bytes, now_s: float) -> int:
        """Bytes ``peer`` may be sent now (may be negative after a large block)."""
        bucket = self._buckets.get(peer)
        if bucket is None:
            return self.burst_bytes
        elapsed_s = max(0.0, now_s - bucket.updated_s)
        return int(min(self.burst_bytes, bucket.tokens + elapsed_s * self.bytes_per_s))

    def admit(self, peer: bytes, now_s: float) -> int | None:
        """Charge a request; the bytes its answer may hold, or None if refused."""
        tokens = self.available(peer, now_s)
        if tokens < self.request_cost_bytes:
            return None
        tokens -= self.request_cost_bytes
        self._buckets[peer] = _Bucket(float(tokens), now_s)
        return tokens

    def charge(self, peer: bytes, sent_bytes: int, now_s: float) -> None:
        """Charge the answer actually sent."""
        tokens = self.available(peer, now_s) - sent_bytes
        self._buckets[peer] = _Bucket(float(tokens), now_s)


def read_committed_blocks(
    chain: Chain, from_height: int, count: int, max_bytes: int
) -> list[CommittedBlock]:
    """Committed blocks from ``from_height`` on: at most ``count``, and no more payload
    bytes than ``max_bytes`` (but at least one block). Blocking: run in a worker thread."""
    out: list[CommittedBlock] = []
    size = 0
    start = max(1, from_height)
    for height in range(start, min(chain.height, start + count - 1) + 1):
        entry = chain.committed_block(height)
        if entry is None:
            break
        size += entry.block.payload_bytes()
        if out and size > max_bytes:
            break
        out.append(entry)
    return out
