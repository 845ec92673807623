"""The validator process: wires the pure cores to the network, the disk and the clock.

Theory of operation
-------------------
One trio nursery runs these tasks:

* **consensus loop** — the only task that touches the :class:`~consensus.replica.Replica` and
  the :class:`~node.chain.Chain`. It takes events from a bounded channel, feeds each to
  ``Replica.handle`` (after a ``ClockTick``) and carries out the returned actions strictly in
  order: ``PersistSafety`` is written durably (LMDB, synchronous) in a worker thread and
  awaited *before* any later action of the same list, so no vote, proposal or new-view leaves
  the node before the promise it embodies is on disk. ``Execute`` applies the block to the
  exchange state and commits it in one LMDB write (worker thread), then feeds ``BlockExecuted``
  back. Events produced locally (payloads, executed blocks) are handled before the next
  channel event.
* **peer inbound** — reads frames from the :class:`~p2p.manager.PeerManager`. A frame is one
  channel byte and a body: consensus messages are decoded strictly (garbage is counted against
  the peer); a proposal's transactions are decoded and verified on the signature pool *before*
  the proposal enters the consensus loop, so the replica's synchronous payload check only hits
  the cache. Gossiped transactions go to the admission queue. Sync requests are answered from
  storage here, so a far-behind peer can fetch any stored height.
* **admission** — batches submitted and gossiped transactions, runs the mempool's cheap checks,
  takes the signature verdicts of transactions already in the decode cache and verifies the
  rest of the batch on the thread pool, admits the good ones and gossips the ones that came
  from our own clients.
* **timers** — one short task per ``SetTimer``; a timer never cancelled, the replica ignores
  stale ones.
* **clock** — a tick every 20 ms between events (the replica's PROPOSE timer paces proposals;
  every event is preceded by a tick anyway), and the heartbeat ``/livez`` checks.

Limits: the event channel, the admission channel and the peer queues are bounded; a full
admission queue rejects with ``mempool_busy`` instead of growing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import lmdb
import trio

from consensus.config import ConsensusConfig
from consensus.epochs import EpochSets
from consensus.events import (
    Action,
    BlockExecuted,
    Broadcast,
    ClockTick,
    Committed,
    Event,
    Execute,
    MessageReceived,
    PayloadAvailable,
    PeerConnected,
    PeerFault,
    PersistSafety,
    ReportEvidence,
    RequestPayload,
    Send,
    SetTimer,
    TimerFired,
)
from consensus.follow import SENDER_FAULTS, STATE_DIVERGED, committed_block_refusal
from consensus.quorum import vote_signature_valid
from consensus.replica import Replica
from consensus.signing import Signer
from consensus.types import (
    EVIDENCE,
    PHASE_NAMES,
    Block,
    Commit,
    Decide,
    Evidence,
    Message,
    NewView,
    PreCommit,
    Proposal,
    ProposalEquivocation,
    QuorumCert,
    SyncRequest,
    SyncResponse,
    Vote,
    VoteEquivocation,
    decode_message,
    encode_message,
    genesis_block,
)
from consensus.validators import ValidatorSet
from consensus.verify import newview_signature_valid, proposal_signature_valid
from node.audit_runner import Auditor
from node.block_limits import block_actions_ok, consensus_limit_changes, proposal_actions_max
from node.chain import Chain, Executed, genesis_state_root
from node.config import Config
from node.diskwatch import DiskWatch
from node.evidence import EvidenceBook, EvidenceVerdict, offender_and_view
from node.evidence_submit import EvidenceSubmitter
from node.fatal import NodeFatal, state_diverged, storage_failure
from node.follower import FollowPlan
from node.gossip import TX_GOSSIP, GossipOutbox
from node.handover_run import HandoverKeeper
from node.logs import fields, get_logger
from node.mempool import Admit, Mempool, MempoolLimits, Prepared
from node.metrics import Metrics
from node.observe import ConsensusObserver
from node.preverify import BLOCK_MISMATCH, blocks_to_preverify
from node.signer import RemoteSigner
from node.sigpool import SignaturePool
from node.statesync_run import CHANNEL_STATESYNC, StateSyncer
from node.storage import StoreError
from node.sync_serve import SyncServeBudget, read_committed_blocks
from node.validator_sets import (
    NodeSets,
    genesis_set,
    member_addresses,
    next_set_after,
    sets_from_genesis,
    sets_from_state,
    state_schedule,
)
from p2p.manager import PeerManager
from state_machine.codec import MAX_MESSAGE_BYTES, DecodeError, encode
from state_machine.crypto import Keypair, verify
from state_machine.genesis import Genesis
from state_machine.governance.engine import governance_summary
from state_machine.nonces import NonceCheck
from state_machine.queries import vault_summary
from state_machine.tx import Transaction

# Channel bytes at the start of every p2p frame.
CHANNEL_CONSENSUS = 1
CHANNEL_TXS = 2
CHANNEL_EVIDENCE = 3

EVENT_QUEUE_MAX = 4096
ADMISSION_QUEUE_MAX = 20_000
ADMISSION_BATCH_MAX = 2_000
# The replica paces proposals with its own PROPOSE timer and gets a ClockTick before every
# event; the clock task is the safety net between events (and the liveness heartbeat). At
# 5 ms it cost an idle validator about 20 ms of CPU a second (44 against 25 ms at 20 ms).
CLOCK_TICK_S = 0.02
RECENT_BLOCKS_FOR_RESTORE = 64
PRUNE_EVERY_BLOCKS = 10
COMMIT_WAIT_MAX_S = 30.0
# A consensus message this many views behind ours is "old" (counted in metrics).
OLD_MESSAGE_VIEWS = 2
WAITERS_MAX = 100_000
INLINE_VERIFY_MAX = 4  # about 0.25 ms of the event loop
ADMISSION_SLICE_S = 0.005
FOLLOW_TICK_S = 0.05  # how often a full node looks whether to ask peers for blocks

log = get_logger("node")
_T = TypeVar("_T")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclasses.dataclass(slots=True)
class Submission:
    """One transaction waiting for admission; ``done`` fires with the verdict."""

    raw: bytes
    from_peer: bytes | None
    done: trio.Event
    verdict: Admit | None = None
    tx_id: bytes = b""
    decoded: Transaction | None = None  # from_wire(raw), if the submitter already decoded it


class CommitWaiter:
    """A client waiting for its transaction to be committed and executed."""

    __slots__ = ("event", "height", "index", "result")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.height = 0
        self.index = 0
        self.result: Any = None


Subscriber = Callable[[Executed], None]


class Node:
    """One validator (or full node) process. ``await node.run(task_status=...)``."""

    def __init__(
        self, config: Config, genesis: Genesis, key: Keypair, signer: Signer | None = None
    ) -> None:
        self.config = config
        self.genesis = genesis
        self._market_symbols = {m.market_id: m.symbol for m in genesis.markets}
        self.key = key
        # Consensus signs through a remote signer when one is configured (node/signer.py);
        # it holds the same key, since the p2p TLS identity is still the validator key.
        if signer is not None and signer.public_key != key.public_key:
            raise ValueError("the remote signer's key is not this node's key")
        self.signer: Signer = key if signer is None else signer
        self.metrics = Metrics()
        if isinstance(signer, RemoteSigner):
            signer.on_failure = self._count_signer_failure
        self.chain_id = genesis.chain_id
        self.observer = ConsensusObserver(self.metrics)
        storage = config.storage
        self.disk = DiskWatch(
            config.data_path, storage.disk_free_ready_min_bytes, self.metrics.disk_free_bytes
        )
        self.auditor = Auditor(
            storage.audit_every_blocks,
            config.data_path,
            self.metrics.state_audits,
            self.metrics.state_audit_seconds,
        )
        # The validator sets by epoch (node/validator_sets.py): genesis's until the store is
        # open, then the stored state's, fed by each executed epoch end.
        self.sets: EpochSets = sets_from_genesis(genesis)
        self.node_sets = NodeSets(self.sets)
        # A key in the set votes unless the operator chose the full-node role. With staking a
        # validator outside the set runs its replica too: it votes once staking puts it in.
        self.is_validator = config.role.mode == "validator" and (
            key.public_key in genesis_set(genesis) or genesis.staking is not None
        )
        self.follow: FollowPlan | None = None if self.is_validator else FollowPlan()
        self._genesis_hash = genesis_block(genesis.genesis_time_ms).block_hash()
        self._tip_hash = self._genesis_hash  # the stored tip's block hash (set on open)
        self.evidence_book = EvidenceBook(self.chain_id, self.sets)
        self.evidence_submitter = EvidenceSubmitter(self)
        self.sync_budget = SyncServeBudget(
            config.sync.serve_bytes_per_s, config.sync.serve_burst_bytes
        )
        self.chain: Chain | None = None
        self.replica: Replica | None = None
        self.peers: PeerManager | None = None
        self.sigpool = SignaturePool()
        self.mempool = Mempool(
            self.chain_id,
            self._committed_nonce_check,
            MempoolLimits(
                txs_max=config.mempool.txs_max,
                bytes_max=config.mempool.bytes_max,
                per_signer_max=config.mempool.per_signer_max,
            ),
        )
        self._events_tx, self._events_rx = trio.open_memory_channel[Event](EVENT_QUEUE_MAX)
        self._admit_tx, self._admit_rx = trio.open_memory_channel[Submission](ADMISSION_QUEUE_MAX)
        self._gossip = GossipOutbox(config.p2p.frame_bytes_max)
        self._gossip_due = trio.Event()
        self._local: deque[Event] = deque()
        self._nursery: trio.Nursery | None = None
        self._waiters: dict[bytes, list[CommitWaiter]] = {}
        self._waiter_count = 0  # sum of the lists' lengths, kept so admission stays O(1)
        self._subscribers: list[Subscriber] = []
        self.last_commit_time_s = 0.0
        self.last_block_time_ms = 0
        self.started_at_s = time.monotonic()
        self.loop_heartbeat_s = time.monotonic()
        self.p2p_listen_port = 0
        self.ready = trio.Event()
        self.statesync = StateSyncer(self)
        self.handovers = HandoverKeeper(self)
        self._consensus_config: ConsensusConfig | None = None

    # ---- validator sets ----------------------------------------------------------------

    @property
    def _height(self) -> int:
        return 0 if self.chain is None else self.chain.height

    @property
    def validators(self) -> ValidatorSet:
        """The set of the next height to decide (the current epoch's)."""
        return self.node_sets.current(self._height)

    def is_member(self, key: bytes) -> bool:
        """In the current or the next epoch's set: a peer whose consensus messages count."""
        return self.node_sets.is_member(self._height, key)

    def current_epoch(self) -> int:
        return self.node_sets.current_epoch(self._height)

    def _adopt_stored_sets(self, chain: Chain) -> None:
        """The sets of the stored state (before the replica is built from them)."""
        self.sets = sets_from_state(chain.state)
        self.node_sets = NodeSets(self.sets)
        self.evidence_book.sets = self.sets

    def _pinned_keys(self) -> list[bytes]:
        """Whom p2p accepts: the current and next sets' members and the configured full
        nodes."""
        keys = dict.fromkeys(self.node_sets.pinned_keys(self._height))
        keys.update(dict.fromkeys(self.config.full_node_keys()))
        return list(keys)

    def _update_pinning(self) -> None:
        """At start and after an epoch end: pin the current and next sets, disconnect the
        members that left both, dial new ones at the address their validator record
        publishes."""
        if self.peers is None or self.chain is None:
            return
        allowed = self._pinned_keys()
        added, removed = self.peers.set_allowed(allowed)
        configured = {a.public_key for a in self.config.peer_addresses()}
        full_nodes = set(self.config.full_node_keys())
        members = tuple(k for k in allowed if k not in full_nodes)
        for address in member_addresses(self.chain.state, members):
            if address.public_key not in configured and address.public_key != self.key.public_key:
                self.peers.add_peer(address)
        if added or removed:
            log.info(
                "p2p_pinning_changed",
                extra=fields(
                    epoch=self.current_epoch(),
                    added=[k.hex()[:16] for k in added],
                    removed=[k.hex()[:16] for k in removed],
                ),
            )

    # ---- context for logs ----------------------------------------------------------------

    def log_context(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.chain is not None:
            out["height"] = self.chain.height
        if self.replica is not None:
            out["view"] = self.replica.view
        return out

    # ---- startup --------------------------------------------------------------------------

    def open_chain(self) -> Chain:
        """Open storage and rebuild the state (blocking: call in a worker thread)."""
        chain = Chain.open(
            self.config.data_path, self.genesis, map_size_bytes=self.config.storage.map_size_bytes
        )
        chain.store.proof_history_heights = self.config.storage.proof_history_heights
        chain.store.archive = self.config.storage.archive
        try:
            self.auditor.check(chain.state, chain.height, "startup")
        except NodeFatal:
            chain.close()
            raise
        return chain

    def consensus_config(self) -> ConsensusConfig:
        """Built once: its genesis state root rebuilds the whole genesis state (seconds for
        100,000 funded accounts), and sync serving and following ask for it per request."""
        if self._consensus_config is None:
            self._consensus_config = self._build_consensus_config()
        return self._consensus_config

    def _build_consensus_config(self) -> ConsensusConfig:
        frame_max = self.config.p2p.frame_bytes_max
        # A proposal or sync response must fit in one frame with room for headers and QCs.
        payload_max = max(64 * 1024, frame_max - 256 * 1024)
        return ConsensusConfig(
            chain_id=self.chain_id,
            genesis_time_ms=self.genesis.genesis_time_ms,
            genesis_state_root=genesis_state_root(self.genesis),
            block_interval_ms=self.config.consensus.block_interval_ms,
            view_timeout_base_ms=self.config.consensus.view_timeout_base_ms,
            view_timeout_cap_ms=self.config.consensus.view_timeout_cap_ms,
            max_block_txs=self.config.consensus.max_block_txs,
            max_block_bytes=min(4 * 1024 * 1024, payload_max),
            sync_response_max_bytes=payload_max,
        )

    def configured_block_limits(self) -> tuple[int, int, int]:
        """What this node's configuration allows in its own proposals (txs, bytes, actions):
        the chain's limits before any governed one, a cap on them after."""
        consensus = self.config.consensus
        return (
            consensus.max_block_txs,
            self.consensus_config().max_block_bytes,
            consensus.max_block_actions,
        )

    def _count_signer_failure(self, reason: str) -> None:
        self.metrics.signer_failures.labels(reason=reason).inc()

    def build_replica(self, chain: Chain) -> Replica | None:
        if not self.is_validator:
            return None
        config = self.consensus_config()
        safety = chain.read_safety(self.chain_id)
        if safety is None and chain.height == 0:
            replica = Replica(config, self.signer, self.sets, self._check_payload)
        else:
            if safety is None:
                # Data imported from a snapshot: nothing was ever promised from this home.
                safety = Replica(config, self.signer, self.sets).safety
            replica = Replica.restore(
                config,
                self.signer,
                self.sets,
                self._check_payload,
                safety,
                chain.recent_committed(RECENT_BLOCKS_FOR_RESTORE),
                chain.state_root,
            )
        replica.learn_block_limits(consensus_limit_changes(chain.state))  # node/block_limits.py
        return replica

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # A node that state-syncs needs its peers before it has a store; any other opens its
        # store first, so a broken one stops it before it binds a port.
        restoring = self.statesync.needed()
        if not restoring:
            self.chain = await trio.to_thread.run_sync(self.open_chain)
            self._adopt_stored_sets(self.chain)
        try:
            await trio.to_thread.run_sync(self.handovers.open)
            self.peers = PeerManager(
                self.key.seed,
                self.config.transport_config(),
                allowed_keys=self._pinned_keys(),
                peers=self.config.peer_addresses(),
                on_connected=self._on_peer_connected,
            )
            self.metrics.watch_peers(self.peers.statistics)
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self.p2p_listen_port = await nursery.start(self.peers.run)
                nursery.start_soon(self._peer_inbound_loop)
                if restoring:
                    await self.statesync.restore()
                    self.chain = await trio.to_thread.run_sync(self.open_chain)
                    self._adopt_stored_sets(self.chain)
                chain = self.chain
                assert chain is not None
                await trio.to_thread.run_sync(self.handovers.backfill, chain)
                self._update_pinning()
                if chain.height > 0:
                    self._tip_hash = chain.store.meta.block_hash
                self.replica = self.build_replica(chain)
                self.metrics.height.set(chain.height)
                self.metrics.observe_vault(vault_summary(chain.state), self._market_symbols)
                self.metrics.observe_governance(governance_summary(chain.state))
                await self.statesync.load_local()
                nursery.start_soon(self._admission_loop)
                nursery.start_soon(self._gossip_loop)
                nursery.start_soon(self._consensus_loop)
                nursery.start_soon(self._clock_loop)
                nursery.start_soon(self.disk.run)
                log.info(
                    "node_started",
                    extra=fields(
                        node_id=self.key.public_key.hex()[:16],
                        p2p_port=self.p2p_listen_port,
                        validator=self.is_validator,
                        height=chain.height,
                    ),
                )
                task_status.started()
                self.ready.set()
        finally:
            self.sigpool.close()
            self.handovers.close()
            if self.chain is not None:
                await trio.to_thread.run_sync(self.chain.close)

    def stop(self) -> None:
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    # ---- subscriptions (API, WebSocket) ----------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback`` after each executed block; returns the unsubscribe function."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    # ---- transaction submission ----------------------------------------------------------

    async def submit(self, raw: bytes, decoded: Transaction | None = None) -> Submission:
        """Admit a client's transaction (waits for the verdict, not for the commit).
        ``decoded``: the caller's ``Transaction.from_wire(raw)``, saving a second decode."""
        sub = Submission(raw, None, trio.Event(), decoded=decoded)
        if self.chain is not None and self._admit_rx.statistics().current_buffer_used == 0:
            # Nothing is waiting for admission: admit it here, in the caller's task, instead
            # of a hop to the admission task and back (two task switches per transaction).
            # Anything queued goes first (FIFO). Not shielded (a cancel scope costs about a
            # tenth of this path): a pass of one transaction verifies inline and its only
            # checkpoints come before ``insert``, so a client hanging up cannot cut it in two.
            await self._admit_batch([sub])
            return sub
        try:
            self._admit_tx.send_nowait(sub)
        except trio.WouldBlock:
            sub.verdict = Admit.MEMPOOL_FULL
            self.metrics.tx_rejected.labels(reason="mempool_busy").inc()
            return sub
        await sub.done.wait()
        return sub

    async def submit_many(
        self, raws: Sequence[bytes], decoded: Sequence[Transaction] | None = None
    ) -> list[Submission]:
        """Admit several transactions at once (one HTTP request of a batch submission): they
        enter the admission queue together, so they are verified as one batch."""
        txs = decoded if decoded is not None else [None] * len(raws)
        subs = [
            Submission(raw, None, trio.Event(), decoded=tx)
            for raw, tx in zip(raws, txs, strict=True)
        ]
        for sub in subs:
            try:
                self._admit_tx.send_nowait(sub)
            except trio.WouldBlock:
                sub.verdict = Admit.MEMPOOL_FULL
                self.metrics.tx_rejected.labels(reason="mempool_busy").inc()
        for sub in subs:
            if sub.verdict is None:
                await sub.done.wait()
        return subs

    def watch_commit(self, tx_id: bytes) -> CommitWaiter | None:
        """Register interest in ``tx_id``'s commit; None if too many clients already wait."""
        if self._waiter_count >= WAITERS_MAX:
            return None
        waiter = CommitWaiter()
        self._waiters.setdefault(tx_id, []).append(waiter)
        self._waiter_count += 1
        return waiter

    def forget_waiter(self, tx_id: bytes, waiter: CommitWaiter) -> None:
        waiters = self._waiters.get(tx_id)
        if waiters and waiter in waiters:
            waiters.remove(waiter)
            self._waiter_count -= 1
            if not waiters:
                del self._waiters[tx_id]

    def _committed_nonce_check(self, signer: bytes, nonce: int, now: int) -> NonceCheck:
        if self.chain is None:
            return NonceCheck.OK
        return self.chain.state.nonces.check(signer, nonce, now)

    async def _admission_loop(self) -> None:
        while True:
            first = await self._admit_rx.receive()
            batch = [first]
            while len(batch) < ADMISSION_BATCH_MAX:
                try:
                    batch.append(self._admit_rx.receive_nowait())
                except trio.WouldBlock:
                    break
            await self._admit_batch(batch)

    async def _admit_batch(self, batch: list[Submission]) -> None:
        """Admit a batch. A transaction whose exact bytes are in the decode cache (seen in a
        proposal, a sync response or an earlier submission) takes its decoded form and its
        signature verdict from there; only the others are verified, together, on the pool."""
        assert self.chain is not None
        cache = self.chain.decoded
        now = now_ms()
        prepared: list[tuple[Submission, Prepared, bool | None]] = []
        slicer = _Slicer()
        for sub in batch:
            await slicer.maybe_yield()
            cached = cache.get(sub.raw)
            decoded = sub.decoded if cached is None else cached[0]
            result = self.mempool.prepare(sub.raw, now, decoded)
            if isinstance(result, Admit):
                self._finish_submission(sub, result)
            else:
                sub.tx_id = result.tx_id
                prepared.append((sub, result, None if cached is None else cached[2]))
        if prepared:
            unverified = [prep for _, prep, known in prepared if known is None]
            fresh = iter(await self._verify(self.mempool.signature_items(unverified)))
            gossip: list[bytes] = []
            for sub, prep, known in prepared:
                await slicer.maybe_yield()
                if known is None:
                    ok = next(fresh)
                    cache.put(prep.raw, prep.tx, prep.tx_id, ok)
                else:
                    ok = known
                verdict = self.mempool.insert(prep, ok, now_ms())
                if verdict is Admit.OK and (sub.from_peer is None or self.follow is not None):
                    # A validator gossips its own clients' transactions (every validator
                    # hears them directly); a full node also relays its peers' onward, so a
                    # transaction reaches the validators through a chain of full nodes.
                    gossip.append(prep.raw)
                self._finish_submission(sub, verdict)
            self._gossip_txs(gossip)
        # The vault and governance gauges follow the state, which only blocks change: they
        # are set after each block (``_after_execution``), not here (a pass per transaction).
        self.metrics.mempool_transactions.set(len(self.mempool))
        self.metrics.mempool_bytes.set(self.mempool.size_bytes)

    async def _verify(self, items: list[tuple[bytes, bytes, bytes]]) -> list[bool]:
        """Verify on the signature pool; a handful inline, where the two thread hops (trio's
        worker, then the pool) would cost more than the checks themselves."""
        if len(items) <= INLINE_VERIFY_MAX:
            return [verify(pk, msg, sig) for pk, msg, sig in items]
        return await trio.to_thread.run_sync(self.sigpool.verify_many, items)

    def _finish_submission(self, sub: Submission, verdict: Admit) -> None:
        sub.verdict = verdict
        if verdict is Admit.OK:
            self.metrics.tx_admitted.inc()
        else:
            self.metrics.tx_rejected.labels(reason=verdict.value).inc()
            if sub.from_peer is not None and verdict in (Admit.MALFORMED, Admit.BAD_SIGNATURE):
                self._penalize(sub.from_peer, f"gossip_{verdict.value}")
        sub.done.set()

    def _gossip_txs(self, raws: list[bytes]) -> None:
        """Queue admitted transactions for gossip (``node/gossip.py``): full frames go now,
        the rest within ``[p2p] gossip_flush_ms`` in as few frames as the limits allow."""
        if not raws or self.peers is None:
            return
        self._gossip.add(raws)
        bodies = self._gossip.take_full()
        if self.config.p2p.gossip_flush_ms == 0:
            bodies.extend(self._gossip.drain())
        elif len(self._gossip):
            self._gossip_due.set()
        self._send_gossip(bodies)

    async def _gossip_loop(self) -> None:
        flush_s = self.config.p2p.gossip_flush_ms / 1000
        while True:
            await self._gossip_due.wait()
            await trio.sleep(flush_s)
            # Anything added from here on sets the new event and goes in the next round.
            self._gossip_due = trio.Event()
            self._send_gossip(self._gossip.drain())

    def _send_gossip(self, bodies: list[bytes]) -> None:
        for body in bodies:
            self._broadcast_frame(CHANNEL_TXS, body)
            self.metrics.gossip_frames_sent.inc()

    # ---- p2p -----------------------------------------------------------------------------

    def _broadcast_frame(self, channel: int, body: bytes) -> None:
        assert self.peers is not None
        payload = bytes([channel]) + body
        sent = self.peers.broadcast(payload)
        self.metrics.p2p_sent_bytes.inc(len(payload) * sent)

    def _send_frame(self, peer: bytes, channel: int, body: bytes) -> None:
        assert self.peers is not None
        payload = bytes([channel]) + body
        if self.peers.send(peer, payload):
            self.metrics.p2p_sent_bytes.inc(len(payload))

    def _on_peer_connected(self, peer: bytes) -> None:
        """A validator (re)connected: the replica re-sends it its latest NEW-VIEW, which it
        missed if it was broadcast while the peer was away (it may be waiting for exactly that
        to rejoin the others' view). Queued like any event; never blocks the peer manager."""
        if self.replica is not None and self._nursery is not None and self.is_member(peer):
            self._nursery.start_soon(self._events_tx.send, PeerConnected(peer))

    def _penalize(self, peer: bytes, reason: str) -> None:
        self.metrics.p2p_invalid_messages.labels(reason=reason).inc()
        if self.peers is not None:
            self.peers.penalize(peer, reason)
        log.warning("peer_invalid_message", extra=fields(peer=peer.hex()[:16], reason=reason))

    async def _peer_inbound_loop(self) -> None:
        assert self.peers is not None
        async for frame in self.peers.inbound:
            peer, payload = frame.peer_id, frame.payload
            self.metrics.p2p_received_bytes.inc(len(payload))
            self.metrics.p2p_peers.set(len(self.peers.connected_peers()))
            if not payload:
                self._penalize(peer, "empty_frame")
                continue
            channel, body = payload[0], bytes(payload[1:])
            if channel == CHANNEL_STATESYNC:
                await self.statesync.on_frame(peer, body)
            elif self.chain is None:
                continue  # state-syncing: nothing to check blocks or transactions against
            elif channel == CHANNEL_CONSENSUS:
                await self._on_consensus_frame(peer, body)
            elif channel == CHANNEL_TXS:
                self._on_tx_gossip(peer, body)
            elif channel == CHANNEL_EVIDENCE:
                self._on_evidence(peer, body)
            else:
                self._penalize(peer, "unknown_channel")

    async def _on_consensus_frame(self, peer: bytes, body: bytes) -> None:
        try:
            message = decode_message(body, MAX_MESSAGE_BYTES)
        except DecodeError:
            self._penalize(peer, "malformed_consensus")
            return
        if not self.is_member(peer) and not self._non_validator_may_send(message):
            if not isinstance(message, NewView):
                self._penalize(peer, "consensus_from_non_validator")
            # A NEW-VIEW from a validator that just left the set (or a staked one that has
            # not joined yet) is an honest race at an epoch change: dropped, not held against it.
            return
        if isinstance(message, SyncRequest):
            await self._serve_sync(peer, message)
            return
        if not signature_valid(self.chain_id, message):
            # The replica would drop it silently; an honest peer never sends a bad signature.
            self._penalize(peer, "bad_signature")
            return
        if isinstance(
            message, Proposal | NewView | SyncResponse
        ) and not await self._preverify_blocks(message):
            self._penalize(peer, BLOCK_MISMATCH)
            return
        if isinstance(message, Vote):
            self.metrics.votes_received.inc()
        self._count_if_old(message)
        if self.replica is not None or self.follow is not None:
            await self._events_tx.send(MessageReceived(peer, message))

    def _non_validator_may_send(self, message: Message) -> bool:
        """A non-validator peer may ask for blocks; a full node may also answer a full node
        (its blocks are verified against their commit QCs like anyone's). Votes, proposals,
        QCs and NEW-VIEWs from a non-validator are refused: a full node never votes."""
        if isinstance(message, SyncRequest):
            return True
        return isinstance(message, SyncResponse) and self.follow is not None

    def _count_if_old(self, message: Message) -> None:
        """Count messages of views well behind ours. The replica drops them without a word;
        honest peers rarely send them (a straggling vote is one view behind), replays do.
        Counted, not penalized: a peer that was partitioned may still send some."""
        if self.replica is None:
            return
        view = message_view(message)
        if view is not None and view + OLD_MESSAGE_VIEWS < self.replica.view:
            self.metrics.consensus_old_messages.labels(kind=type(message).__name__).inc()

    async def _preverify_blocks(self, message: Message) -> bool:
        """Decode and verify the transactions of the blocks in ``message`` the replica could
        use (``node/preverify.py``) on the thread pool, so the replica's synchronous payload
        check finds them in the cache. False if the message carries a block no honest
        validator sends."""
        assert self.chain is not None
        blocks, fault = blocks_to_preverify(message, self.chain.height, self.sets)
        if fault:
            return False
        cache = self.chain.decoded
        pending: list[tuple[bytes, Any, bytes, bytes]] = []
        for block in blocks:
            for raw in block.payload:
                if cache.get(raw) is not None:
                    continue
                try:
                    tx = _decode_tx(raw)
                except DecodeError:
                    continue  # the payload check will reject the block
                signing = tx.signing_bytes()
                pending.append((raw, tx, signing, tx.tx_id_from(signing)))
        if not pending:
            return True
        items = [(tx.signer, signing, tx.signature) for _, tx, signing, _ in pending]
        verdicts = await trio.to_thread.run_sync(self.sigpool.verify_many, items)
        for (raw, tx, _, tx_id), ok in zip(pending, verdicts, strict=True):
            cache.put(raw, tx, tx_id, ok)
        return True

    def _check_payload(self, block: Block) -> bool:
        """Replica hook: every transaction decodes and carries a valid signature, and the
        block keeps the governed action limit of its height."""
        assert self.chain is not None
        cache = self.chain.decoded
        txs = []
        for raw in block.payload:
            entry = cache.decode_and_verify(raw)
            if entry is None or not entry[2]:
                return False
            txs.append(entry[0])
        return block_actions_ok(self.chain.state, block, txs)

    def _on_tx_gossip(self, peer: bytes, body: bytes) -> None:
        try:
            from state_machine.codec import decode_raw

            raws = TX_GOSSIP.check(decode_raw(body), "tx_gossip")
        except DecodeError:
            self._penalize(peer, "malformed_tx_gossip")
            return
        self.metrics.gossip_txs_received.inc(len(raws))
        for raw in raws:
            if self.chain is not None and self.chain.decoded.get(raw) is not None:
                continue  # already seen
            try:
                self._admit_tx.send_nowait(Submission(raw, peer, trio.Event()))
            except trio.WouldBlock:
                self.metrics.tx_rejected.labels(reason="mempool_busy").inc()
                break

    def _on_evidence(self, peer: bytes, body: bytes) -> None:
        try:
            from state_machine.codec import decode_union

            evidence = decode_union(EVIDENCE, body, MAX_MESSAGE_BYTES)
        except DecodeError:
            self._penalize(peer, "malformed_evidence")
            return
        if not isinstance(evidence, VoteEquivocation | ProposalEquivocation):
            self._penalize(peer, "malformed_evidence")  # the union decodes to nothing else
            return
        self._take_evidence(evidence, peer)

    def _take_evidence(self, evidence: Evidence, peer: bytes | None) -> None:
        """Count, log and gossip equivocation evidence once it is proven, once per validator
        and view (see ``node/evidence.py``). ``peer``: who sent it (None: our replica)."""
        verdict = self.evidence_book.consider(evidence, self.current_epoch())
        if verdict is not EvidenceVerdict.NEW:
            self.metrics.evidence_ignored.labels(reason=verdict.value).inc()
            if verdict is EvidenceVerdict.FORGED and peer is not None:
                self._penalize(peer, "forged_evidence")
            return
        self.metrics.evidence.inc()
        offender, view = offender_and_view(evidence)
        about = {"offender": offender.hex()[:16], "view": view, "kind": type(evidence).__name__}
        if peer is None:
            log.warning("equivocation", extra=fields(**about))
        else:
            log.warning(
                "equivocation_evidence_received", extra=fields(**about, peer=peer.hex()[:16])
            )
        self._broadcast_frame(CHANNEL_EVIDENCE, encode(EVIDENCE.dump(evidence)))
        self.evidence_submitter.submit(evidence, self.current_epoch())

    async def _serve_sync(self, peer: bytes, request: SyncRequest) -> None:
        """Answer from storage within the peer's sync budget (``node/sync_serve.py``)."""
        assert self.chain is not None
        chain = self.chain
        cfg = self.consensus_config()
        peer_type = "validator" if self.is_member(peer) else "full_node"
        allowance = self.sync_budget.admit(peer, time.monotonic())
        if allowance is None:
            self.metrics.sync_requests.labels(peer_type=peer_type, outcome="refused").inc()
            return
        count = min(request.max_blocks, cfg.sync_batch_blocks)
        max_bytes = min(cfg.sync_response_max_bytes, allowance)
        blocks = await trio.to_thread.run_sync(
            read_committed_blocks, chain, request.from_height, count, max_bytes
        )
        if not blocks:
            self.metrics.sync_requests.labels(peer_type=peer_type, outcome="empty").inc()
            return
        body = encode_message(SyncResponse(tuple(blocks)))
        self.sync_budget.charge(peer, len(body) + 1, time.monotonic())
        self.metrics.sync_requests.labels(peer_type=peer_type, outcome="served").inc()
        self.metrics.sync_served_bytes.labels(peer_type=peer_type).inc(len(body) + 1)
        self.metrics.sync_served_blocks.labels(peer_type=peer_type).inc(len(blocks))
        self._send_frame(peer, CHANNEL_CONSENSUS, body)

    # ---- the consensus loop --------------------------------------------------------------

    async def _clock_loop(self) -> None:
        while True:
            await trio.sleep(CLOCK_TICK_S)
            self.loop_heartbeat_s = time.monotonic()
            if self.replica is not None and self._events_rx.statistics().current_buffer_used == 0:
                with contextlib.suppress(trio.WouldBlock):
                    self._events_tx.send_nowait(ClockTick(now_ms()))

    async def _consensus_loop(self) -> None:
        replica = self.replica
        if replica is None:
            await self._follow_loop()
            return
        await self._carry_out(replica.start(now_ms()))
        while True:
            event = await self._events_rx.receive()
            await self._handle(replica, event)
            while self._local:
                await self._handle(replica, self._local.popleft())
            self.metrics.view.set(replica.view)

    # ---- following the chain (full node) -----------------------------------------------------

    async def _follow_loop(self) -> None:
        """A full node's counterpart of the consensus loop and, like it, the only task that
        stores blocks: takes the peers' proposals, DECIDEs and sync answers, and asks for the
        blocks it lacks (``node/follower.py``)."""
        while True:
            event: Event | None = None
            with trio.move_on_after(FOLLOW_TICK_S):
                event = await self._events_rx.receive()
            # Outside the timeout: a block's execution and its store write must never be cut
            # in two (the state would run ahead of the disk).
            if isinstance(event, MessageReceived):
                await self._follow_message(event.sender, event.message)
            self._maybe_request_blocks()

    async def _follow_message(self, peer: bytes, message: Message) -> None:
        follow, chain = self.follow, self.chain
        assert follow is not None and chain is not None
        if isinstance(message, Proposal):
            follow.keep_proposal(message.block, message.block.block_hash(), chain.height)
        elif isinstance(message, Decide):
            qc = message.qc
            block = follow.proposal(qc.block_hash)
            if block is not None and qc.height == chain.height + 1:
                await self._follow_store(peer, block, qc, "proposal")
            follow.announced(qc.height, chain.height)  # still behind: ask for it
        elif isinstance(message, SyncResponse):
            follow.answered(peer)
            for entry in message.blocks:
                if entry.block.height <= chain.height:
                    continue  # we got it meanwhile
                follow.announced(entry.block.height, chain.height)
                if not await self._follow_store(peer, entry.block, entry.commit_qc, "sync"):
                    break
        self.metrics.follow_target_height.set(follow.target_height)

    async def _follow_store(self, peer: bytes, block: Block, qc: QuorumCert, source: str) -> bool:
        """Verify a committed block against its QC (``consensus/follow.py``), then execute
        and store it like a validator does. A refusal the peer caused is held against it."""
        follow, chain = self.follow, self.chain
        assert follow is not None and chain is not None
        reason = committed_block_refusal(
            block,
            qc,
            tip_height=chain.height,
            tip_hash=self._tip_hash,
            tip_state_root=chain.state_root,
            chain_id=self.chain_id,
            genesis_set=self.sets,
            genesis_hash=self._genesis_hash,
        )
        if reason == STATE_DIVERGED:
            raise state_diverged(chain.height, chain.state_root, block.header.state_root)
        if reason:
            self.metrics.follow_refused.labels(reason=reason).inc()
            if reason in SENDER_FAULTS:
                self._penalize(peer, f"follow_{reason}")
                follow.bad_peer(peer, time.monotonic())
            return False
        executed = await self._execute(Execute(block, qc))
        self._tip_hash = executed.block_hash
        follow.stored(chain.height)
        self._on_committed(
            Committed(block.height, executed.block_hash, qc.view, block.header.timestamp_ms)
        )
        self.metrics.follow_blocks.labels(source=source).inc()
        return True

    def _maybe_request_blocks(self) -> None:
        """Ask one peer for the blocks after our tip, when ``FollowPlan`` says it is time."""
        follow, chain, peers = self.follow, self.chain, self.peers
        assert follow is not None and chain is not None and peers is not None
        now_s = time.monotonic()
        if not follow.request_due(now_s, chain.height):
            return
        connected = peers.connected_peers()
        validators = [p for p in connected if self.is_member(p)]
        others = [p for p in connected if not self.is_member(p)]
        peer = follow.choose_peer(now_s, validators, others)
        if peer is None:
            return
        start = chain.height + 1
        request = SyncRequest(start, self.consensus_config().sync_batch_blocks)
        self._send_frame(peer, CHANNEL_CONSENSUS, encode_message(request))
        follow.sent(peer, start, now_s, poll=follow.target_height <= chain.height)
        peer_type = "validator" if self.is_member(peer) else "full_node"
        self.metrics.follow_requests.labels(peer_type=peer_type).inc()

    async def _handle(self, replica: Replica, event: Event) -> None:
        actions: list[Action] = []
        view_before = replica.view
        if not isinstance(event, ClockTick):
            actions.extend(replica.handle(ClockTick(now_ms())))
        actions.extend(replica.handle(event))
        self.observer.observe(view_before, replica.view, event, actions)
        await self._carry_out(actions)

    async def _carry_out(self, actions: Sequence[Action]) -> None:
        assert self.chain is not None
        for action in actions:
            if isinstance(action, PersistSafety):
                raw = action.safety.to_wire()
                await self._storage_write(
                    "safety record write", self.chain.store.write_safety_data, raw
                )
            elif isinstance(action, Send | Broadcast) and not self._may_speak(action.message):
                continue
            elif isinstance(action, Send):
                if isinstance(action.message, Vote):
                    self.metrics.votes_sent.inc()
                self._record_signed(action.message)
                self._send_frame(action.to, CHANNEL_CONSENSUS, encode_message(action.message))
            elif isinstance(action, Broadcast):
                self._record_signed(action.message)
                self._broadcast_frame(CHANNEL_CONSENSUS, encode_message(action.message))
            elif isinstance(action, SetTimer):
                assert self._nursery is not None
                self._nursery.start_soon(self._timer, action)
            elif isinstance(action, RequestPayload):
                self._local.append(self._payload_for(action))
            elif isinstance(action, Execute):
                self._local.append(await self._execute(action))
            elif isinstance(action, Committed):
                self._on_committed(action)
            elif isinstance(action, ReportEvidence):
                self._take_evidence(action.evidence, None)
            elif isinstance(action, PeerFault):
                self._penalize(action.peer, action.reason)

    def _may_speak(self, message: Message) -> bool:
        """A replica outside the current and next sets (a staked validator before its epoch,
        or one that left) only asks for and serves blocks: its NEW-VIEWs count for nobody."""
        if isinstance(message, SyncRequest | SyncResponse):
            return True
        return self.is_member(self.key.public_key)

    def _record_signed(self, message: Message) -> None:
        """Opt-in (log level debug) record of each signature of ours that leaves the node,
        written before it leaves: with it a test can check that no crash or restart ever made
        this key sign two different blocks in one view and phase."""
        if not log.isEnabledFor(logging.DEBUG):
            return
        for record in signed_by(self.key.public_key, message):
            log.debug("signed", extra=fields(**record))

    async def _timer(self, action: SetTimer) -> None:
        await trio.sleep(action.delay_ms / 1000)
        await self._events_tx.send(TimerFired(action.kind, action.view))

    def _payload_for(self, request: RequestPayload) -> PayloadAvailable:
        # The replica asks for the chain's limits of the height; this node's own configuration
        # may only lower them (node/block_limits.py).
        assert self.chain is not None
        txs_max, bytes_max, actions_max = self.configured_block_limits()
        entries = self.mempool.take_batch(
            min(request.max_txs, txs_max),
            min(request.max_bytes, bytes_max),
            proposal_actions_max(self.chain.state, request.height, actions_max),
        )
        return PayloadAvailable(request.view, request.height, tuple(e.raw for e in entries))

    def _on_committed(self, action: Committed) -> None:
        self.metrics.commits.inc()
        now_s = time.monotonic()
        if self.last_commit_time_s:
            self.metrics.block_interval_seconds.observe(now_s - self.last_commit_time_s)
        self.last_commit_time_s = now_s

    async def _execute(self, action: Execute) -> BlockExecuted:
        assert self.chain is not None
        chain = self.chain
        block, qc = action.block, action.commit_qc
        t0 = time.perf_counter()
        txs, ids, result = chain.apply(block)
        t1 = time.perf_counter()
        if self.auditor.due(block.height):  # before the block is stored (node/audit_runner.py)
            self.auditor.check(chain.state, block.height, "block")  # on the loop: see there
            t1_stored = time.perf_counter()
        else:
            t1_stored = t1
        root = await self._storage_write(
            f"commit of block {block.height}", chain.persist, block, qc, ids, result
        )
        t2 = time.perf_counter()
        await self._maybe_prune(block.height)
        executed = Executed(
            block.height,
            block.block_hash(),
            root,
            block.header.timestamp_ms,
            txs,
            ids,
            result,
            t1 - t0,
            t2 - t1_stored,
        )
        self._after_execution(executed)
        next_set = next_set_after(chain.state, block.height)
        schedule = None
        if next_set is not None:  # an epoch end: the set of e + 2 and the schedule after it
            schedule = state_schedule(chain.state)
            epoch = schedule.epoch_of(block.height) + 2
            if self.replica is None:
                self.sets.add(epoch, next_set, schedule)  # a full node
            else:  # the replica adds it to the same EpochSets when it takes BlockExecuted
                self.node_sets.learned(epoch, next_set, schedule)
            self._after_epoch_end(block.height)
        await self.handovers.after_commit(chain, block.header, qc)
        limits = consensus_limit_changes(chain.state)
        return BlockExecuted(
            executed.height,
            executed.block_hash,
            root,
            next_set,
            block_limits=limits,
            schedule=schedule,
        )

    def _after_epoch_end(self, height: int) -> None:
        """The epoch turned: p2p pins the sets of the epoch starting and of the next one."""
        self._update_pinning()
        epoch = self.node_sets.current_epoch(height)
        log.info(
            "epoch_started",
            extra=fields(
                epoch=epoch,
                height=height + 1,
                members=len(self.validators),
                member=self.is_member(self.key.public_key),
            ),
        )

    async def _maybe_prune(self, height: int) -> None:
        """Apply ``[storage] pruning_keep_blocks``: every PRUNE_EVERY_BLOCKS heights, delete
        stored blocks below the kept window in one bounded write. A restarted replica needs
        the last RECENT_BLOCKS_FOR_RESTORE blocks, so at least those are always kept."""
        keep = self.config.storage.pruning_keep_blocks
        if keep == 0 or height % PRUNE_EVERY_BLOCKS != 0:
            return
        assert self.chain is not None
        store = self.chain.store
        keep_blocks = max(keep, RECENT_BLOCKS_FOR_RESTORE)
        await self._storage_write("pruning", store.prune_blocks, keep_blocks)

    async def _storage_write(self, operation: str, write: Callable[..., _T], *args: Any) -> _T:
        """A store write in a worker thread (a py-lmdb write transaction stays on one thread).
        A failed write stops the node with one ``fatal_storage_error`` event (node/fatal.py):
        the working state is ahead of the disk, or the disk refuses writes."""
        try:
            return await trio.to_thread.run_sync(write, *args)
        except (StoreError, lmdb.Error, OSError) as exc:
            assert self.chain is not None
            height = self.chain.height
            raise storage_failure(exc, self.config.data_path, height, operation) from exc

    def _after_execution(self, executed: Executed) -> None:
        self.last_block_time_ms = executed.timestamp_ms
        self.metrics.height.set(executed.height)
        self.metrics.block_execution_seconds.observe(executed.execute_s)
        self.metrics.block_persist_seconds.observe(executed.persist_s)
        self.metrics.block_transactions.observe(len(executed.txs))
        self.mempool.remove(executed.tx_ids)
        self.statesync.after_block(executed.height)
        if executed.height % 20 == 0:
            self.mempool.remove_stale(executed.timestamp_ms)
        self.metrics.mempool_transactions.set(len(self.mempool))
        self.metrics.mempool_bytes.set(self.mempool.size_bytes)
        if self.chain is not None:
            self.metrics.observe_vault(vault_summary(self.chain.state), self._market_symbols)
            self.metrics.observe_governance(governance_summary(self.chain.state))
        for index, (tx_id, tx_result) in enumerate(
            zip(executed.tx_ids, executed.result.tx_results, strict=True)
        ):
            waiters = self._waiters.pop(tx_id, None)
            self._waiter_count -= len(waiters or ())
            for waiter in waiters or ():
                waiter.height = executed.height
                waiter.index = index
                waiter.result = tx_result
                waiter.event.set()
        for callback in list(self._subscribers):
            try:
                callback(executed)
            except Exception:  # a subscriber's bug must not stop consensus
                log.exception("subscriber_failed")
        if executed.txs or executed.height % 20 == 0:
            log.info(
                "block_executed",
                extra=fields(
                    height=executed.height,
                    txs=len(executed.txs),
                    execute_ms=round(executed.execute_s * 1000, 2),
                    persist_ms=round(executed.persist_s * 1000, 2),
                ),
            )


def signature_valid(chain_id: str, message: Message) -> bool:
    """The sender's own signature on a vote, proposal or NEW-VIEW (one Ed25519 check; QCs are
    left to the replica, which caches its verdicts)."""
    if isinstance(message, Vote):
        return vote_signature_valid(chain_id, message)
    if isinstance(message, Proposal):
        return proposal_signature_valid(chain_id, message, message.block.block_hash())
    if isinstance(message, NewView):
        return newview_signature_valid(chain_id, message)
    return True


def message_view(message: Message) -> int | None:
    """The view a consensus message belongs to (None for sync messages)."""
    if isinstance(message, Vote | Proposal | NewView):
        return message.view
    if isinstance(message, PreCommit | Commit | Decide):
        return message.qc.view
    return None


def signed_by(signer: bytes, message: Message) -> list[dict[str, Any]]:
    """What ``signer`` vouches for in an outgoing ``message``: its own vote, its proposal,
    its NEW-VIEW, or its vote inside a leader's QC (a leader's own vote leaves only that way)."""
    if isinstance(message, Vote):
        if message.voter != signer:
            return []
        return [
            _signed(
                "vote", message.view, PHASE_NAMES[message.phase], message.height, message.block_hash
            )
        ]
    if isinstance(message, Proposal):
        if message.proposer != signer:
            return []
        block = message.block
        return [_signed("proposal", message.view, "proposal", block.height, block.block_hash())]
    if isinstance(message, NewView):
        if message.sender != signer:
            return []
        high = message.high_qc
        return [_signed("newview", message.view, "newview", high.height, high.block_hash)]
    if isinstance(message, PreCommit | Commit | Decide):
        qc = message.qc
        if all(s.signer != signer for s in qc.signatures):
            return []
        return [_signed("vote", qc.view, PHASE_NAMES[qc.phase], qc.height, qc.block_hash)]
    return []


def _signed(kind: str, view: int, phase: str, height: int, block_hash: bytes) -> dict[str, Any]:
    return {
        "kind": kind,
        "view": view,
        "phase": phase,
        "height": height,
        "block_hash": block_hash.hex(),
    }


class _Slicer:
    """Lets other tasks run every ADMISSION_SLICE_S of a long admission batch.

    Decoding a burst of large (batched) transactions can take seconds of event-loop time; votes
    and proposals waiting behind it would make views time out. Yielding is safe: ``insert``
    re-checks everything ``prepare`` checked that may change meanwhile.
    """

    __slots__ = ("start_s",)

    def __init__(self) -> None:
        self.start_s = time.perf_counter()

    async def maybe_yield(self) -> None:
        if time.perf_counter() - self.start_s > ADMISSION_SLICE_S:
            await trio.lowlevel.checkpoint()
            self.start_s = time.perf_counter()


def _decode_tx(raw: bytes) -> Any:
    from state_machine.tx import Transaction

    return Transaction.from_wire(raw)


def wait_timeout_s(requested: float | None) -> float:
    if requested is None or math.isnan(requested) or requested <= 0:
        return COMMIT_WAIT_MAX_S
    return min(requested, COMMIT_WAIT_MAX_S)
