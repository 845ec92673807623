"""What a full node asks its peers for, and when.

Theory of operation
-------------------
A full node (no vote: ``[role] mode = "full"``, or a key outside the validator set) follows the
chain with two sources, both checked by ``consensus/follow.py`` before anything is stored:

* the validators' broadcasts it receives like any peer: a leader's PROPOSAL (its block kept
  here, a few at most) and then its DECIDE (the commit QC). When the QC certifies a kept block
  at our next height, the block is stored at once: the follower lags the validators by one
  message, not by a round trip.
* block sync: a ``SyncRequest`` for the heights after our tip, sent to one connected peer at a
  time (validators first, then full nodes, in turn), answered with blocks and their commit QCs.
  It runs when a DECIDE announced a height we lack (missed proposal, restart, far behind) and
  otherwise every ``POLL_INTERVAL_S`` (a full node behind other full nodes hears no DECIDE).

A request unanswered within ``REQUEST_TIMEOUT_S`` (an empty answer is no answer: the serving
side sends nothing when it has nothing) moves on to the next peer. A peer whose blocks fail
verification is penalised by the caller and skipped for ``BAD_PEER_SKIP_S``.

Limits: ``PROPOSALS_MAX`` kept blocks; one request in flight; the announced target height is a
hint only (it decides whether to ask, never what to store).
"""

from __future__ import annotations

from collections.abc import Sequence

from consensus.types import Block

PROPOSALS_MAX = 8
REQUEST_TIMEOUT_S = 1.0
POLL_INTERVAL_S = 0.5
BAD_PEER_SKIP_S = 30.0
PEERS_SKIPPED_MAX = 1024


class FollowPlan:
    """Bookkeeping of the follower: kept proposals, the request in flight, peers to avoid.
    Time comes in as arguments (``now_s``, monotonic seconds)."""

    def __init__(self) -> None:
        self.target_height = 0
        self._proposals: dict[bytes, Block] = {}
        # (peer, from_height, deadline, poll): a poll is a request sent while not behind
        self._inflight: tuple[bytes, int, float, bool] | None = None
        self._last_request_s = -1e9
        self._turn = 0
        self._skip_until_s: dict[bytes, float] = {}

    # ---- what peers told us ------------------------------------------------------------

    def keep_proposal(self, block: Block, block_hash: bytes, tip_height: int) -> None:
        """Keep a proposed block that could be our next one (its QC may follow)."""
        if block.height != tip_height + 1:
            return
        if block_hash not in self._proposals and len(self._proposals) >= PROPOSALS_MAX:
            self._proposals.pop(next(iter(self._proposals)))
        self._proposals[block_hash] = block

    def proposal(self, block_hash: bytes) -> Block | None:
        return self._proposals.get(block_hash)

    def announced(self, height: int, tip_height: int) -> None:
        """A DECIDE (or a sync answer) said ``height`` is committed. A poll in flight was sent
        to a peer that may not have had the block yet (it answers nothing then): a real
        request replaces it at once."""
        self.target_height = max(self.target_height, height)
        if height > tip_height and self._inflight is not None and self._inflight[3]:
            self._inflight = None

    def stored(self, tip_height: int) -> None:
        """A block was stored: proposals at or below the tip are useless now."""
        self._proposals = {h: b for h, b in self._proposals.items() if b.height > tip_height}

    def answered(self, peer: bytes) -> None:
        """``peer`` answered our request (a new one may go out at once)."""
        if self._inflight is not None and self._inflight[0] == peer:
            self._inflight = None
            self._last_request_s = -1e9

    def bad_peer(self, peer: bytes, now_s: float) -> None:
        """``peer`` sent a block that failed verification: ask the others for a while."""
        if len(self._skip_until_s) >= PEERS_SKIPPED_MAX:
            self._skip_until_s.clear()
        self._skip_until_s[peer] = now_s + BAD_PEER_SKIP_S
        self.answered(peer)

    # ---- what to ask -------------------------------------------------------------------

    def request_due(self, now_s: float, tip_height: int) -> bool:
        """True if a sync request should go out now."""
        if self._inflight is not None:
            if now_s < self._inflight[2]:
                return False
            self._inflight = None  # timed out: the next peer gets the next one
        behind = self.target_height > tip_height
        return behind or now_s - self._last_request_s >= POLL_INTERVAL_S

    def choose_peer(
        self, now_s: float, validators: Sequence[bytes], others: Sequence[bytes]
    ) -> bytes | None:
        """The next peer to ask, in turn: validators first (they have every block first),
        then full nodes; peers that recently sent bad blocks are skipped."""
        for group in (validators, others):
            usable = [p for p in group if self._skip_until_s.get(p, 0.0) <= now_s]
            if usable:
                self._turn += 1
                return usable[self._turn % len(usable)]
        return None

    def sent(self, peer: bytes, from_height: int, now_s: float, *, poll: bool) -> None:
        self._inflight = (peer, from_height, now_s + REQUEST_TIMEOUT_S, poll)
        self._last_request_s = now_s

    def statistics(self) -> dict[str, object]:
        return {
            "target_height": self.target_height,
            "proposals": len(self._proposals),
            "inflight": self._inflight is not None,
            "peers_skipped": len(self._skip_until_s),
        }
