"""The node's side of state sync: snapshots taken and served, and a restore run before the
chain opens. The protocol, its trust and its limits are in ``node/statesync.py``; this module
does the I/O (p2p frames, worker threads, timeouts) and the counting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from node.handover import HandoverCertificate, HandoverChain
from node.logs import fields, get_logger
from node.snapshot import SnapshotError, export_snapshot
from node.statesync import (
    CHUNK_MISMATCH,
    CHUNK_MISSING,
    CHUNK_TIMEOUT,
    HANDOVER_FORGED,
    HANDOVER_UNAVAILABLE,
    HANDOVERS_PER_REPLY_MAX,
    MESSAGE_BYTES_MAX,
    OFFER_BAD_ANCHOR,
    OFFER_SET_UNKNOWN,
    OFFERS_KEPT_MAX,
    OFFERS_PER_REPLY_MAX,
    STATESYNC_MESSAGE,
    Candidate,
    ChunkRequest,
    ChunkResponse,
    ChunkStore,
    HandoverCertificates,
    HandoverRequest,
    LocalSnapshot,
    RestorePlan,
    SnapshotOffer,
    SnapshotOffers,
    SnapshotsRequest,
    StateSyncMessage,
    Trust,
    chunk_hash,
    create_store_from_snapshot,
    index_snapshot,
    offer_refusal,
    providers_in_turn,
    prune_snapshots,
    read_chunk,
    snapshot_file,
)
from node.storage import StoreError, store_path
from node.validator_sets import epoch_length_blocks, genesis_set
from state_machine.codec import DecodeError, decode_union

if TYPE_CHECKING:
    from node.node import Node

CHANNEL_STATESYNC = 4
INBOX_MAX = 256
FRAME_OVERHEAD_BYTES = 1024
PROGRESS_EVERY_CHUNKS = 50
PEER_WAIT_S = 0.05

log = get_logger("statesync")


class StateSyncer:
    """One per node: serves its snapshots, and restores an empty data dir when enabled."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.settings = node.config.statesync
        data = node.config.data_path
        self.snapshots_dir = data / "snapshots"
        self.resume_dir = data / "statesync"
        self.local: dict[int, LocalSnapshot] = {}
        self.plan = RestorePlan()
        trust_hash = bytes.fromhex(self.settings.trust_hash)
        self.trust = Trust(self.settings.trust_height, trust_hash)
        # The sets a restore trusts: genesis's, then those hand-over certificates prove.
        self.verified = HandoverChain(
            genesis_set(node.genesis),
            epoch_length_blocks(node.genesis),
            node.chain_id,
            node._genesis_hash,
        )
        # Offers whose anchor's epoch is beyond the verified sets, until hand-overs are fetched.
        self.waiting: dict[tuple[bytes, bytes], SnapshotOffer] = {}
        self._taking = False
        self._restoring = False
        self._inbox_tx, self._inbox_rx = trio.open_memory_channel[tuple[bytes, StateSyncMessage]](
            INBOX_MAX
        )

    def needed(self) -> bool:
        """State sync runs for a full node with the setting on and no store yet. (A validator
        joins by state-syncing as a full node, then restarting with its validator role.)"""
        if not self.settings.enabled or self.node.is_validator:
            return False
        return not (store_path(self.node.config.data_path) / "data.mdb").exists()

    # ---- inbound frames ----------------------------------------------------------------------

    async def on_frame(self, peer: bytes, body: bytes) -> None:
        try:
            message = decode_union(STATESYNC_MESSAGE, body, MESSAGE_BYTES_MAX)
        except DecodeError:
            self.node._penalize(peer, "malformed_statesync")
            return
        if isinstance(message, SnapshotsRequest):
            await self._send_offers(peer)
        elif isinstance(message, ChunkRequest):
            await self._serve_chunk(peer, message)
        elif isinstance(message, HandoverRequest):
            await self.node.handovers.serve(peer, message)
        elif self._restoring and isinstance(
            message, SnapshotOffers | ChunkResponse | HandoverCertificates
        ):
            try:
                self._inbox_tx.send_nowait((peer, message))
            except trio.WouldBlock:
                self.node.metrics.statesync_refused.labels(reason="inbox_full").inc()
        # Else an answer nobody asked for (we finished meanwhile): dropped.

    # ---- serving -----------------------------------------------------------------------------

    async def _send_offers(self, peer: bytes) -> None:
        """Offer our newest snapshots whose anchor block (H + 1) we have, metered by the
        peer's sync budget like block sync."""
        node, chain = self.node, self.node.chain
        if chain is None or not self.local:
            return
        if node.sync_budget.admit(peer, time.monotonic()) is None:
            node.metrics.snapshot_chunks_served.labels(outcome="refused").inc()
            return
        offers: list[SnapshotOffer] = []
        for height in sorted(self.local, reverse=True)[:OFFERS_PER_REPLY_MAX]:
            snap = self.local[height]
            anchor = await trio.to_thread.run_sync(chain.committed_block, height + 1)
            if anchor is None:
                continue
            offers.append(
                SnapshotOffer(
                    height,
                    snap.state_root,
                    snap.entry_count,
                    snap.chunk_hashes,
                    anchor.block.header,
                    anchor.commit_qc,
                )
            )
        if offers:
            body = SnapshotOffers(tuple(offers)).to_wire()
            node.sync_budget.charge(peer, len(body) + 1, time.monotonic())
            node._send_frame(peer, CHANNEL_STATESYNC, body)

    async def _serve_chunk(self, peer: bytes, request: ChunkRequest) -> None:
        node = self.node
        if node.sync_budget.admit(peer, time.monotonic()) is None:
            node.metrics.snapshot_chunks_served.labels(outcome="refused").inc()
            return
        snap = self.local.get(request.height)
        data = None
        if snap is not None:
            data = await trio.to_thread.run_sync(read_chunk, snap, request.index)
        if data is None or len(data) > node.config.p2p.frame_bytes_max - FRAME_OVERHEAD_BYTES:
            data = b""  # gone (pruned), or too large for one frame: "missing"
        body = ChunkResponse(request.height, request.index, data).to_wire()
        node.sync_budget.charge(peer, len(body) + 1, time.monotonic())
        node.metrics.snapshot_chunks_served.labels(outcome="served" if data else "missing").inc()
        node._send_frame(peer, CHANNEL_STATESYNC, body)

    # ---- taking snapshots --------------------------------------------------------------------

    async def load_local(self) -> None:
        """Index the snapshots already on disk (a restarted node serves them again)."""
        paths = sorted(self.snapshots_dir.glob("*.snap")) if self.snapshots_dir.exists() else []
        for path in paths:
            try:
                snap = await trio.to_thread.run_sync(index_snapshot, path)
            except (SnapshotError, DecodeError, OSError) as exc:
                log.warning("snapshot_unreadable", extra=fields(path=str(path), error=str(exc)))
                continue
            self.local[snap.height] = snap

    def after_block(self, height: int) -> None:
        """Take a snapshot every ``snapshot_interval`` heights (one at a time)."""
        interval = self.settings.snapshot_interval
        nursery = self.node._nursery
        if not interval or height % interval or self._taking or nursery is None:
            return
        self._taking = True
        nursery.start_soon(self._take, height)

    async def _take(self, height: int) -> None:
        t0 = time.monotonic()
        try:
            snap, gone = await trio.to_thread.run_sync(self._export_and_index, height)
        except (SnapshotError, StoreError, OSError) as exc:
            log.warning("snapshot_failed", extra=fields(height=height, error=str(exc)))
            return
        finally:
            self._taking = False
        self.local[height] = snap
        for path in gone:
            self.local = {h: s for h, s in self.local.items() if s.path != path}
        self.node.metrics.snapshots_taken.inc()
        log.info(
            "snapshot_taken",
            extra=fields(
                height=height,
                entries=snap.entry_count,
                chunks=len(snap.chunk_hashes),
                seconds=round(time.monotonic() - t0, 3),
            ),
        )

    def _export_and_index(self, height: int) -> tuple[LocalSnapshot, list[Path]]:
        """Blocking: export the state at ``height`` in its own LMDB read transaction."""
        chain = self.node.chain
        assert chain is not None
        self.snapshots_dir.mkdir(parents=True, exist_ok=True)
        path = snapshot_file(self.snapshots_dir, height)
        export_snapshot(chain.store, path, height)
        snap = index_snapshot(path)
        return snap, prune_snapshots(self.snapshots_dir, self.settings.snapshot_keep_recent)

    # ---- restoring ---------------------------------------------------------------------------

    async def restore(self) -> None:
        """Fill the empty data dir from a verified snapshot; returns when the store exists."""
        self._restoring = True
        log.info("statesync_started", extra=fields(trust_height=self.trust.height))
        try:
            while True:
                await self._discover()
                if self.waiting:
                    await self._fetch_handovers()
                candidate = self.plan.best()
                if candidate is None:
                    log.info("statesync_no_snapshot_yet", extra=fields(peers=self._peer_count()))
                    continue
                if await self._fetch(candidate):
                    return
        finally:
            self._restoring = False

    def _peer_count(self) -> int:
        peers = self.node.peers
        return 0 if peers is None else len(peers.connected_peers())

    async def _discover(self) -> None:
        """Ask every peer for offers and collect them for ``discovery_ms`` (at start-up, once
        the first peer is connected: a request sent to nobody would waste the round)."""
        with trio.move_on_after(self.settings.discovery_ms / 1000):
            while self._peer_count() == 0:
                await trio.sleep(PEER_WAIT_S)
        self.node._broadcast_frame(CHANNEL_STATESYNC, SnapshotsRequest().to_wire())
        with trio.move_on_after(self.settings.discovery_ms / 1000):
            while True:
                peer, message = await self._inbox_rx.receive()
                if isinstance(message, SnapshotOffers):
                    self._consider_offers(peer, message)

    def _consider_offers(self, peer: bytes, message: SnapshotOffers) -> None:
        for offer in message.offers:
            self._consider_offer(peer, offer)

    def _consider_offer(self, peer: bytes, offer: SnapshotOffer) -> None:
        node = self.node
        reason = offer_refusal(
            offer,
            chain_id=node.chain_id,
            sets=self.verified.epoch_sets(),
            genesis_hash=node._genesis_hash,
            trust=self.trust,
        )
        if reason == OFFER_SET_UNKNOWN:
            if len(self.waiting) < OFFERS_KEPT_MAX:
                self.waiting[(peer, offer.identity())] = offer
            return
        if reason:
            node.metrics.statesync_refused.labels(reason=reason).inc()
            if reason == OFFER_BAD_ANCHOR:  # no honest node offers an uncertified root
                node._penalize(peer, f"statesync_{reason}")
            return
        self.plan.consider(peer, offer)

    # ---- hand-overs: the sets after genesis's ------------------------------------------------

    async def _fetch_handovers(self) -> None:
        """Verify the hand-over certificates up to the epoch after the newest waiting offer's
        anchor (the one after, so this node can serve it too), asking the offering peers first,
        then every other; then look at the waiting offers again."""
        verified = self.verified

        def needed() -> int:  # asked again after each reply: a proven schedule moves epochs
            return max(verified.epoch_of(o.anchor_header.height) for o in self.waiting.values())

        offering = list(dict.fromkeys(peer for peer, _ in self.waiting))
        peers = self.node.peers
        others = [] if peers is None else [p for p in peers.connected_peers() if p not in offering]
        for peer in offering + others:
            while verified.latest_epoch() <= needed() and await self._handovers_from(
                peer, needed() + 1
            ):
                pass
            if verified.latest_epoch() > needed():
                break
        required = needed()
        log.info(
            "statesync_handovers",
            extra=fields(verified_epoch=verified.latest_epoch(), needed_epoch=required),
        )
        waiting, self.waiting = self.waiting, {}
        for (peer, _), offer in waiting.items():
            self._consider_offer(peer, offer)
        self.waiting.clear()  # still beyond the verified sets: asked again next round

    async def _handovers_from(self, peer: bytes, wanted: int) -> bool:
        """One request for the next certificates; True if it moved the verified sets on.
        A certificate that does not verify is a lie (no honest node stores one): the peer
        is penalised."""
        node, verified = self.node, self.verified
        start = verified.latest_epoch() + 1
        count = min(HANDOVERS_PER_REPLY_MAX, wanted - start + 1)
        node._send_frame(peer, CHANNEL_STATESYNC, HandoverRequest(start, count).to_wire())
        reply = await self._wait_handovers(peer, start)
        if reply is None:
            node.metrics.statesync_refused.labels(reason=HANDOVER_UNAVAILABLE).inc()
            return False
        good: list[HandoverCertificate] = []
        failures: list[str] = []
        for raw in reply.certificates:
            try:
                cert = HandoverCertificate.from_wire(raw)
            except DecodeError as exc:
                failures = [f"does not decode: {exc}"]
                break
            failures = verified.extend(cert)
            if failures:
                break
            good.append(cert)
        if good:
            await trio.to_thread.run_sync(node.handovers.store_verified, good)
        if failures:
            node.metrics.statesync_refused.labels(reason=HANDOVER_FORGED).inc()
            node._penalize(peer, f"statesync_{HANDOVER_FORGED}")
            log.warning(
                "statesync_handover_refused",
                extra=fields(peer=peer.hex()[:16], epoch=start + len(good), failure=failures[0]),
            )
        return bool(good) and not failures

    async def _answer_from(
        self, peer: bytes, answers: Callable[[object], bool]
    ) -> object | None:
        """The first message from ``peer`` that ``answers`` the request outstanding, within
        the chunk timeout (None: no answer). Offers arriving meanwhile are considered."""
        with trio.move_on_after(self.settings.chunk_timeout_ms / 1000):
            while True:
                sender, message = await self._inbox_rx.receive()
                if isinstance(message, SnapshotOffers):
                    self._consider_offers(sender, message)
                elif sender == peer and answers(message):
                    return message
        return None

    async def _wait_handovers(self, peer: bytes, start: int) -> HandoverCertificates | None:
        message = await self._answer_from(
            peer, lambda m: isinstance(m, HandoverCertificates) and m.from_epoch == start
        )
        return message if isinstance(message, HandoverCertificates) else None

    async def _fetch(self, candidate: Candidate) -> bool:
        """Fetch, verify and store every chunk of ``candidate``, then run the whole check and
        create the store. False if no provider could serve it or the whole check failed."""
        offer = candidate.offer
        chunks = ChunkStore(self.resume_dir, candidate)
        total = len(offer.chunk_hashes)
        log.info(
            "statesync_fetching",
            extra=fields(
                snapshot_height=offer.height,
                chunks=total,
                entries=offer.entry_count,
                providers=len(candidate.providers),
            ),
        )
        turn = 0
        for index in range(total):
            if await trio.to_thread.run_sync(chunks.have, index):
                self.node.metrics.statesync_chunks.labels(source="resumed").inc()
                continue
            while True:
                peer = providers_in_turn(candidate.providers, turn)
                turn += 1
                if peer is None:
                    log.warning("statesync_no_provider_left", extra=fields(height=offer.height))
                    return False
                data = await self._chunk_from(peer, candidate, index)
                if data is not None:
                    await trio.to_thread.run_sync(chunks.put, index, data)
                    self.node.metrics.statesync_chunks.labels(source="peer").inc()
                    break
            if index % PROGRESS_EVERY_CHUNKS == 0:
                log.info("statesync_progress", extra=fields(chunk=index + 1, chunks=total))
        return await self._finish(candidate, chunks)

    async def _chunk_from(self, peer: bytes, candidate: Candidate, index: int) -> bytes | None:
        """Chunk ``index`` from ``peer``, verified against the offer; None (and the peer is
        dropped from this snapshot's providers, penalised if it lied) otherwise."""
        node, offer = self.node, candidate.offer
        node._send_frame(peer, CHANNEL_STATESYNC, ChunkRequest(offer.height, index).to_wire())
        data, reason = await self._wait_chunk(peer, offer.height, index)
        if data is not None and chunk_hash(data) != offer.chunk_hashes[index]:
            data, reason = None, CHUNK_MISMATCH
            node._penalize(peer, f"statesync_{CHUNK_MISMATCH}")
        if data is None:
            node.metrics.statesync_refused.labels(reason=reason).inc()
            self.plan.drop_provider(candidate, peer)
            log.warning(
                "statesync_chunk_refused",
                extra=fields(peer=peer.hex()[:16], chunk=index, reason=reason),
            )
        return data

    async def _wait_chunk(self, peer: bytes, height: int, index: int) -> tuple[bytes | None, str]:
        message = await self._answer_from(
            peer,
            lambda m: isinstance(m, ChunkResponse) and (m.height, m.index) == (height, index),
        )
        if not isinstance(message, ChunkResponse):
            return None, CHUNK_TIMEOUT
        return (message.chunk, "") if message.chunk else (None, CHUNK_MISSING)

    async def _finish(self, candidate: Candidate, chunks: ChunkStore) -> bool:
        node, offer = self.node, candidate.offer
        reason = await trio.to_thread.run_sync(
            create_store_from_snapshot,
            node.config.data_path,
            chunks,
            offer,
            node.chain_id,
            node.genesis.hash(),
            node.config.storage.map_size_bytes,
        )
        await trio.to_thread.run_sync(chunks.remove)
        if reason:
            # Every chunk matched the offer, so the offer itself was false: all who made it lied.
            node.metrics.statesync_refused.labels(reason=reason).inc()
            for peer in candidate.providers:
                node._penalize(peer, f"statesync_{reason}")
            self.plan.reject(candidate)
            log.warning("statesync_snapshot_refused", extra=fields(height=offer.height))
            return False
        node.metrics.statesync_restored_height.set(offer.height)
        log.info(
            "statesync_restored",
            extra=fields(height=offer.height, state_root=offer.state_root.hex()),
        )
        return True
