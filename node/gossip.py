"""Transaction gossip in batches: what a node sends its peers on channel 2.

Theory of operation
-------------------
Admission admits a client's transaction alone most of the time (one HTTP request, one
transaction), and gossiping each one at once cost one frame per transaction and peer: one
TLS record to write, one frame to read, decode and queue for admission at every peer, one
admission pass there. At 1,000 tx/s over four validators that is 750 frames a second in
and 750 out per validator, each carrying about 134 bytes.

The outbox gathers admitted transactions for ``[p2p] gossip_flush_ms`` (10 ms by default)
and sends them as few frames as the limits allow: at most ``GOSSIP_BATCH_TXS_MAX``
transactions and ``bytes_max`` encoded bytes per frame (so no frame is refused by a peer's
``frame_bytes_max``). A full frame's worth goes out at once, without waiting. The receiver
decodes a frame once and queues all of its transactions for one admission pass, which
verifies the unknown signatures in one call on the signature pool. ``gossip_flush_ms = 0``
sends at the end of every admission pass, as before.

The outbox is bounded by construction: it holds at most one partial frame; a full one is
encoded at once and the node broadcasts it in the same step (``take_full``), into the peers'
bounded outbound queues.
"""

from __future__ import annotations

from collections.abc import Iterable

from state_machine.codec import Bytes, ListOf, encode
from state_machine.tx import MAX_TX_BYTES

GOSSIP_BATCH_TXS_MAX = 512
# Room a frame needs besides the transactions: the channel byte and the array header.
FRAME_OVERHEAD_BYTES = 16
# msgpack bin 16 header (up to 64 KiB per item) is at most 3 bytes.
ITEM_OVERHEAD_BYTES = 3
TX_GOSSIP = ListOf(Bytes(max_len=MAX_TX_BYTES), GOSSIP_BATCH_TXS_MAX, min_len=1)


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise AssertionError(msg)


class GossipOutbox:
    """Admitted transactions waiting to be gossiped, cut into frame bodies."""

    def __init__(self, frame_bytes_max: int) -> None:
        self.body_bytes_max = frame_bytes_max - FRAME_OVERHEAD_BYTES
        self.too_large = 0  # transactions that fit in no frame (a tiny frame_bytes_max)
        self._pending: list[bytes] = []
        self._pending_bytes = 0  # encoded size of _pending's items
        self._full: list[bytes] = []  # encoded bodies ready to send now

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, raws: Iterable[bytes]) -> None:
        """Queue transactions; each full frame's worth is encoded at once (see ``take_full``)."""
        for raw in raws:
            size = len(raw) + ITEM_OVERHEAD_BYTES
            if size > self.body_bytes_max:
                self.too_large += 1  # a peer would refuse the frame: blocks carry it instead
                continue
            if self._pending and (
                len(self._pending) >= GOSSIP_BATCH_TXS_MAX
                or self._pending_bytes + size > self.body_bytes_max
            ):
                self._cut()
            self._pending.append(raw)
            self._pending_bytes += size
        if len(self._pending) >= GOSSIP_BATCH_TXS_MAX:
            self._cut()

    def take_full(self) -> list[bytes]:
        """Frame bodies that are full already (send without waiting)."""
        out, self._full = self._full, []
        return out

    def drain(self) -> list[bytes]:
        """Every frame body: the full ones and what is pending."""
        if self._pending:
            self._cut()
        return self.take_full()

    def _cut(self) -> None:
        body = encode(self._pending)
        _check(len(body) <= self.body_bytes_max, "gossip frame over its byte budget")
        self._full.append(body)
        self._pending = []
        self._pending_bytes = 0
