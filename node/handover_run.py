"""The node's side of hand-over certificates: built at commits, kept, served to peers.

The certificate of epoch ``e`` (``node/handover.py``) joins two things the node has at two
different commits:

* committing block ``h`` (the last of epoch ``e - 2``, as the epoch schedule cuts it) writes
  the set of ``e`` (record 0x23 || e) next to the schedule (record 0x2f, absent until
  governance first changes the length); right after that commit the state at ``h`` is the
  latest, whose proofs any node can make whatever its ``proof_history_heights``: the proofs of
  both are taken then and held (:attr:`HandoverKeeper.pending`, one per epoch end);
* committing block ``h + 1`` stores it with its commit QC (a block is committed together with
  the QC that commits it), whose header carries the root after ``h``: the certificate is then
  complete and written to ``handovers.lmdb`` (``node/handover_store.py``).

A node that stops between the two, or state-synced from a snapshot at ``h``, has no pending
proof: :meth:`HandoverKeeper.backfill` at start and the commit of ``h + 1`` prove the state at
``h`` from the store's undo history instead (``[storage] proof_history_heights`` >= 1, the
default keeps 300), and a tip that ends an epoch is proven at start. Backfill also builds the
certificates of every past epoch whose state the store can still prove (all of them on an
archive node), so a node that ran before certificates existed serves what it can.

Serving (p2p, state-sync channel): ``HandoverRequest(from_epoch, count)`` is answered with the
stored run of certificates from that epoch, at most :data:`HANDOVERS_PER_REPLY_MAX` and
:data:`HANDOVER_REPLY_BYTES_MAX` bytes (and what fits in one frame), metered by the per-peer
byte budget of block sync like snapshot chunks.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import trio

from consensus.epochs import EpochSchedule
from consensus.types import BlockHeader, QuorumCert
from node.api.recordkeys import epoch_set_key, hand_over_height
from node.handover import HandoverCertificate
from node.handover_store import HandoverStore
from node.logs import fields, get_logger
from node.statesync import (
    HANDOVER_REPLY_BYTES_MAX,
    HANDOVERS_PER_REPLY_MAX,
    HandoverCertificates,
    HandoverRequest,
)
from node.statesync_run import CHANNEL_STATESYNC, FRAME_OVERHEAD_BYTES
from node.storage import ProofAt, ProofHeightError, StoreError
from node.validator_sets import state_schedule
from state_machine.staking.records import SCHEDULE_KEY

if TYPE_CHECKING:
    from node.chain import Chain
    from node.node import Node

BACKFILL_BATCH = 256

log = get_logger("handover")


class HandoverKeeper:
    """One per node: builds, stores and serves the hand-over certificates."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.store: HandoverStore | None = None
        # epoch -> proofs of its set and of the schedule at the epoch end
        self.pending: dict[int, tuple[ProofAt, ProofAt]] = {}

    def open(self) -> None:
        """Open ``handovers.lmdb`` (blocking)."""
        self.node.config.data_path.mkdir(parents=True, exist_ok=True)
        self.store = HandoverStore.open(self.node.config.data_path)
        self._count()

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    def _count(self) -> None:
        if self.store is not None:
            self.node.metrics.handover_certificates.set(self.store.epochs()[0])

    # ---- building ----------------------------------------------------------------------------

    async def after_commit(self, chain: Chain, header: BlockHeader, qc: QuorumCert) -> None:
        """Called after each committed block is stored (module docstring)."""
        # The schedule in our own latest state cuts every epoch up to the one after the
        # latest's right (a change starts two epochs after the one it executed in).
        schedule = state_schedule(chain.state)
        if self.store is None or not schedule.has_epochs:
            return
        height = header.height
        if schedule.is_epoch_end(height):
            await trio.to_thread.run_sync(self._prove_pending, chain, schedule, height)
        if height > 1 and schedule.is_epoch_end(height - 1):
            await trio.to_thread.run_sync(self._complete, chain, schedule, header, qc)

    def _prove_pending(self, chain: Chain, schedule: EpochSchedule, height: int) -> None:
        """At an epoch end: prove the set it wrote and the schedule next to it, at the
        latest height (blocking)."""
        epoch = schedule.epoch_of(height) + 2
        proof, sched = chain.store.prove_many([epoch_set_key(epoch), SCHEDULE_KEY])
        if proof.height == height and proof.value is not None:
            self.pending = {epoch: (proof, sched)}  # the one epoch end not completed yet

    def _complete(
        self, chain: Chain, schedule: EpochSchedule, header: BlockHeader, qc: QuorumCert
    ) -> None:
        """Block ``h + 1`` of an epoch end ``h`` is stored: the certificate is complete."""
        epoch = schedule.epoch_of(header.height - 1) + 2
        proofs = self.pending.pop(epoch, None) or self._prove_at(chain, schedule, epoch)
        cert = None if proofs is None else certificate_of(epoch, header, qc, *proofs)
        if cert is None:
            self.node.metrics.handover_unbuilt.inc()
            log.warning("handover_not_built", extra=fields(epoch=epoch, height=header.height))
            return
        self._put([cert], "commit")

    def _prove_at(
        self, chain: Chain, schedule: EpochSchedule, epoch: int
    ) -> tuple[ProofAt, ProofAt] | None:
        height = hand_over_height(epoch, schedule)
        try:
            proof, sched = chain.store.prove_many([epoch_set_key(epoch), SCHEDULE_KEY], height)
        except ProofHeightError:
            return None
        return proof, sched

    def _put(self, certs: list[HandoverCertificate], source: str) -> None:
        store = self.store
        if store is None or not certs:
            return
        try:
            new = store.put_many(certs)
        except StoreError as exc:  # not the chain's data: the node goes on, backfill retries
            log.error("handover_store_failed", extra=fields(error=str(exc)))
            return
        self.node.metrics.handover_stored.labels(source=source).inc(new)
        self._count()

    def store_verified(self, certs: list[HandoverCertificate]) -> None:
        """Certificates a state sync verified from peers (blocking)."""
        self._put(certs, "peer")

    def backfill(self, chain: Chain) -> int:
        """At start (blocking): the pending proof of a tip that ends an epoch, then every
        missing certificate whose block and state the store still has, newest first, down to
        the first it cannot build. Returns how many were built."""
        schedule, store, tip = state_schedule(chain.state), self.store, chain.height
        if store is None or not schedule.has_epochs or tip == 0:
            return 0
        if schedule.is_epoch_end(tip):
            self._prove_pending(chain, schedule, tip)
        built: list[HandoverCertificate] = []
        total = 0
        for epoch in range(schedule.epoch_of(tip) + 1, 1, -1):  # hand-over block <= tip
            if store.has(epoch):
                continue
            cert = self._build_from_store(chain, schedule, epoch)
            if cert is None:
                break
            built.append(cert)
            if len(built) >= BACKFILL_BATCH:
                self._put(built, "backfill")
                total, built = total + len(built), []
        self._put(built, "backfill")
        return total + len(built)

    def _build_from_store(
        self, chain: Chain, schedule: EpochSchedule, epoch: int
    ) -> HandoverCertificate | None:
        entry = chain.committed_block(hand_over_height(epoch, schedule) + 1)
        proofs = None if entry is None else self._prove_at(chain, schedule, epoch)
        if entry is None or proofs is None:
            return None
        return certificate_of(epoch, entry.block.header, entry.commit_qc, *proofs)

    # ---- serving -----------------------------------------------------------------------------

    async def serve(self, peer: bytes, request: HandoverRequest) -> None:
        """Answer a peer's ``HandoverRequest`` (module docstring: "Serving")."""
        node, store = self.node, self.store
        if store is None:
            return
        budget_bytes = node.sync_budget.admit(peer, time.monotonic())
        if budget_bytes is None:
            node.metrics.handover_served.labels(outcome="refused").inc()
            return
        count = min(request.count, HANDOVERS_PER_REPLY_MAX)
        frame_bytes = node.config.p2p.frame_bytes_max - FRAME_OVERHEAD_BYTES
        bytes_max = min(HANDOVER_REPLY_BYTES_MAX, frame_bytes, budget_bytes)
        try:
            certs = await trio.to_thread.run_sync(
                store.raw_run, request.from_epoch, count, bytes_max
            )
        except StoreError as exc:
            log.error("handover_read_failed", extra=fields(error=str(exc)))
            certs = []
        body = HandoverCertificates(request.from_epoch, tuple(certs)).to_wire()
        node.sync_budget.charge(peer, len(body) + 1, time.monotonic())
        node.metrics.handover_served.labels(outcome="served" if certs else "empty").inc()
        node._send_frame(peer, CHANNEL_STATESYNC, body)


def certificate_of(
    epoch: int, header: BlockHeader, qc: QuorumCert, proof: ProofAt, schedule: ProofAt
) -> HandoverCertificate | None:
    """The certificate from its parts, None if the proofs are not of the state the header
    certifies or prove no set (the state machine wrote none: a bug reported by the caller)."""
    if proof.value is None or proof.state_root != header.state_root:
        return None
    if proof.height != header.height - 1 or schedule.state_root != proof.state_root:
        return None
    return HandoverCertificate(
        epoch, header, qc, proof.value, proof.proof, schedule.value, schedule.proof
    )
