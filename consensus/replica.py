"""The HotStuff replica: events in, actions out.

Theory of operation
-------------------
One replica is one validator's view of basic three-phase HotStuff (Yin et al., PODC 2019) with
rotating leaders and one block per view. It is a pure state machine (h11/etcd-raft style): the
driver calls :meth:`Replica.handle` with an event and carries out the returned actions in order.
The replica never reads a clock, draws randomness, touches the disk or the network.

A view ``v`` led by ``leader(v)`` (round robin) runs:

1. NEW-VIEW: every replica entering ``v`` sends its highest prepare QC to the leader.
2. PREPARE: with NEW-VIEWs from more than 2/3 of the power, the leader takes the highest prepare
   QC among them (``high``). If ``high``'s block is committed, it proposes a *new* block on its
   committed tip, with a payload from the driver (``RequestPayload``), paced to one block per
   block interval. If ``high``'s block was prepared but not committed, it re-proposes that
   block unchanged. Replicas vote if the block is valid and ``safe_node`` holds.
3. PRE-COMMIT: the leader's prepare QC; replicas store it as their highest prepare QC and vote.
4. COMMIT: the leader's pre-commit QC; replicas lock on it and vote.
5. DECIDE: the leader's commit QC; replicas commit the block, emit ``Execute`` and move to
   ``v + 1``.

Why re-propose instead of always extending ``high``'s block: a header carries the state root
after its parent, and only committed blocks are executed. So every block is proposed on a
committed, executed parent, and the tree of uncommitted blocks is one level deep: all candidate
blocks sit at ``committed_height + 1``. The HotStuff safety argument only needs "the proposed
block extends the justify QC's block", which a re-proposal does trivially (see ``safety.py``).

Invariants (checked with :func:`consensus.check.check`, which survives ``python -O``):

* committed heights are contiguous, each committed block's parent is the previous committed
  block, and no two commit QCs this replica accepts certify different blocks at one height;
* ``BlockExecuted`` arrives in height order for committed blocks only, and the root it reports
  equals the state root the next committed header carries (else our execution diverged);
* every vote, proposal and new-view leaves after the :class:`PersistSafety` that records it.

Views advance on a DECIDE, on a valid QC from a later view (we were behind), on a proposal
for the view right after its justify QC's (when that QC is from our view or later), and on a
timeout certificate (TC): NEW-VIEWs for the view (or later) from more than 2/3 of the power,
either collected here or carried by the leader's proposal. A replica whose view timer fires
stops voting in its view and broadcasts NEW-VIEW for the next one, but waits for the
certificate before it moves; it joins a timeout as soon as more than 1/3 of the power has (see
``pacemaker.py``, which also argues why these jumps are safe).

Recovery after an outage must not wait for a timer: the survivors' timeouts may have doubled
to the cap while the quorum was gone. So a leader whose view follows one that ended without a
prepare QC attaches the TC for its view to its proposal, and on each ``PeerConnected`` the
replica re-sends that peer its latest NEW-VIEW (and its proposal of the current view): a
returning validator learns the view the others are in from them, at once.
A replica that sees a height it lacks asks the sender for committed blocks with their commit QCs
(``SyncRequest``) and commits them after checking each QC.

Validator-set changes (epochs)
------------------------------
Each height is certified by its epoch's set (``epochs.py``: the set of epoch ``e + 2`` is fixed
by executing the last block of epoch ``e``, and reported to the replica with that block's
``BlockExecuted``). Votes for a block count only if their voter is in the set of the block's
height, QCs are checked against the set of their height, a proposal's leader is the leader of
its view in the set of its block's height (the leader proposes at its committed height + 1, so
that is the set it used), and NEW-VIEWs and timeout certificates are counted in the set of the
height the view will decide (our committed height + 1). A replica whose key is in no known set
follows the chain (commits on DECIDE, syncs) but never votes or proposes.

Safety of the hand-over. Two facts make a set change look, to the safety argument, like no
change at all:

1. *Every height has one set.* The set of height ``h`` is a function of the committed chain
   strictly below ``h`` (``epochs.py``), and honest replicas vote only for blocks whose parent
   is their committed tip; by induction on heights they agree on the chain below ``h``, hence
   on the set that certifies ``h``. All QCs at one height, in any view, come from one set, and
   any two of its quorums share an honest member when that set has less than 1/3 Byzantine
   power (the assumption, now per epoch).
2. *Locks are only released by QCs of the same or a later height* (``safety.hand_over_safe``).
   The HotStuff argument (``safety.py``) says: once a commit QC for block B at height h forms
   in view v, more than 1/3 of h's honest power is locked on B, and every later prepare QC at
   height h needs one of them, who votes only for blocks extending B or for proposals
   justified by a newer QC. Within one set that newer QC is itself for B (induction on views).
   Across sets it need not be: the old set, done with height h - 1, could still form a prepare
   QC for the committed block h - 1 in a view after v (its honest members locked on that block
   vote for a re-proposal of it; the new set's locked members are not in that quorum), and a
   Byzantine leader could then justify a conflicting fresh block at h with it, releasing every
   lock at h. The hand-over rule refuses exactly that: a QC at height h - 1 never releases a
   lock at height h. A QC at height >= h comes from h's set or a later one, and a later one's
   QC needs an honest voter that executed, so committed, B first. With the rule, the
   induction on views goes through height by height as with one set.

Epoch-length changes (governance ``SetEpochLength``) are handed over like sets. Executing a
change in epoch ``e`` makes epochs ``e + 2`` on (the first whose set is not fixed yet) the new
length; the schedule in the state after the last block of ``e`` goes to the replica in that
block's ``BlockExecuted`` together with the set of ``e + 2``, and :meth:`EpochSets.add` checks
that it cuts every epoch up to ``e + 1`` as before. So at any moment a replica's schedule and
every honest replica's schedule cut the heights of all *known* epochs identically (both are
functions of the same committed prefix, by the induction of fact 1), and a height past the last
known epoch maps, under the old schedule or the new one, to an epoch whose set is not known,
for which the replica decides nothing (it waits, syncs). A length change therefore never makes
two honest replicas pick different sets for one height, which is all facts 1 and 2 use: it is
as safe as a set change. The ``epoch_length`` simulator scenario changes lengths (down to one
block) on top of the set changes of ``epochs``.

The simulator's ``epochs`` scenario changes the set every few epochs (members added, removed,
jailed, the stake majority moving) under all the other faults; a replica with the hand-over
rule disabled (``tests/sim/mutants.py``) is caught by its safety checker.

Catch-up across several set changes: a syncing replica commits a synced block only once it
knows the set of its height; it learns the sets by executing what it committed (each set is
known a full epoch ahead, so a batch rarely waits), and asks again from where it stopped. After
a restart the driver passes the sets of the epochs around its stored tip (``restore``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from consensus.block_limits import BlockLimits
from consensus.check import ConsensusInvariantError, check
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
    TimerKind,
)
from consensus.pacemaker import (
    joined_view,
    joins_on_justify,
    joins_on_timeout_cert,
    next_block_timestamp_ms,
    proposal_ready_at_ms,
    quorum_view,
    timestamp_acceptable,
    view_timeout_ms,
)
from consensus.quorum import (
    VoteCollector,
    qc_valid,
    tc_valid,
    timeout_cert,
    vote_signature_valid,
)
from consensus.safety import (
    block_extends,
    hand_over_safe,
    not_voted_yet,
    proposal_well_formed,
    safe_node,
    updated_high_qc,
    updated_lock,
)
from consensus.signing import Signer, SigningFailed
from consensus.types import (
    COMMIT,
    PRECOMMIT,
    PREPARE,
    Block,
    BlockHeader,
    Commit,
    CommittedBlock,
    Decide,
    Message,
    NewView,
    PreCommit,
    Proposal,
    ProposalEquivocation,
    QuorumCert,
    SafetyData,
    SyncRequest,
    SyncResponse,
    Vote,
    VoteEquivocation,
    genesis_block,
    genesis_qc,
    payload_root,
)
from consensus.validators import ValidatorSet
from consensus.verify import (
    newview_signature_valid,
    proposal_signature_valid,
    sign_newview,
    sign_proposal,
    sign_vote,
)

CheckPayload = Callable[[Block], bool]

# How many views back we remember signed votes and proposals to detect equivocation.
EVIDENCE_WINDOW_VIEWS = 8
MAX_PENDING_BLOCKS = 64
MAX_BUFFERED_PER_VIEW = 64
MAX_QC_CACHE = 4_096

_VALID, _INVALID, _NEED_SYNC, _WAIT_EXECUTION = range(4)
_NEXT_MESSAGE: dict[int, type[PreCommit | Commit | Decide]] = {
    PREPARE: PreCommit,
    PRECOMMIT: Commit,
    COMMIT: Decide,
}


class Replica:
    """One validator's HotStuff state machine.

    Driver contract:

    * Build with ``Replica(config, key, validators, check_payload)`` for a new chain or
      :meth:`restore` after a restart, then carry out :meth:`start`'s actions. ``validators``
      is one set for ever (a :class:`ValidatorSet`) or the known epoch sets (:class:`EpochSets`).
    * Feed :class:`ClockTick` with the local time (ms) whenever it moved, at least before each
      other event. Carry out the actions of each ``handle`` call in order: a
      :class:`PersistSafety` must be durable before any later action of the list is carried out.
    * ``RequestPayload`` -> later ``PayloadAvailable`` with transactions from the mempool.
    * ``Execute`` -> execute the block, store block + commit QC + state in one write, then feed
      ``BlockExecuted(height, hash, state_root, next_set, schedule)``; ``next_set`` is the set
      of epoch ``e + 2`` when the block is the last of epoch ``e`` (with epochs), else None;
      ``schedule`` the epoch schedule after that block (None: unchanged). Until then
      the replica cannot propose or vote on the next height (its header must carry that root).
      ``BlockExecuted.block_limits`` reports the block limits the chain scheduled
      (consensus/block_limits.py); after a restart, pass them to :meth:`learn_block_limits`.
    * ``Send``/``Broadcast`` -> deliver as ``MessageReceived`` at the peers (the replica handles
      its own copies of broadcasts and messages to itself internally).
    * ``SetTimer`` -> ``TimerFired`` after the delay.
    """

    def __init__(
        self,
        config: ConsensusConfig,
        key: Signer,
        validators: ValidatorSet | EpochSets,
        check_payload: CheckPayload | None = None,
    ) -> None:
        self.config = config
        self.key = key
        self.me = key.public_key
        self.sets = validators if isinstance(validators, EpochSets) else EpochSets.fixed(validators)
        self.check_payload = check_payload
        # The configured limits until the chain schedules others (learn_block_limits).
        self.block_limits = BlockLimits(config.max_block_txs, config.max_block_bytes)
        genesis = genesis_block(config.genesis_time_ms)
        self.genesis_hash = genesis.block_hash()
        gqc = genesis_qc(self.genesis_hash)
        self.safety = SafetyData(config.chain_id, 0, 0, 0, 0, 0, gqc, gqc, None)
        self.committed_height = 0
        self.executed_height = 0
        self._committed: dict[int, CommittedBlock] = {0: CommittedBlock(genesis, gqc)}
        self._hashes: dict[int, bytes] = {0: self.genesis_hash}
        self._roots: dict[int, bytes] = {0: config.genesis_state_root}
        self._now_ms = 0
        self._timeouts_since_commit = 0
        self._pending: dict[bytes, Block] = {}
        self._valid_blocks: set[bytes] = set()
        self._latest_newview: dict[bytes, NewView] = {}
        self._announced_view = 0  # highest view we broadcast a NEW-VIEW for
        self._own_proposal: Proposal | None = None  # our proposal of the view we are in
        self._collectors: dict[tuple[int, int, bytes], VoteCollector] = {}
        self._formed: set[tuple[int, int]] = set()
        self._seen_votes: dict[tuple[bytes, int, int], Vote] = {}
        self._seen_proposals: dict[tuple[int, bytes], tuple[bytes, bytes]] = {}
        self._reported: set[tuple[int, bytes, int, int]] = set()
        self._future: dict[int, list[tuple[bytes, Message]]] = {}
        self._waiting: list[tuple[bytes, Proposal]] = []
        self._payload_requested: tuple[int, int] | None = None
        self._payload: tuple[bytes, ...] | None = None
        self._propose_timer_view = 0
        self._qc_cache: dict[QuorumCert, bool] = {}
        self._message_sender: bytes | None = None
        self._sync_requested: tuple[int, int] | None = None
        self._sync_target = 0
        self._sync_peer: bytes | None = None
        self._out: list[Action] = []
        self._inbox: list[tuple[bytes, Message, bool]] = []

    # ---- construction after a crash ---------------------------------------------------------

    @classmethod
    def restore(
        cls,
        config: ConsensusConfig,
        key: Signer,
        validators: ValidatorSet | EpochSets,
        check_payload: CheckPayload | None,
        safety: SafetyData,
        committed: Sequence[CommittedBlock],
        tip_state_root: bytes,
    ) -> Replica:
        """A replica after a restart: ``safety`` as last persisted, ``committed`` the most recent
        committed blocks in height order (the last one is the tip; empty for genesis) and
        ``tip_state_root`` the stored state root after the tip. With epochs, ``validators``
        must hold the sets of the tip's epoch and the next one (the next after that too, when
        the tip's execution fixed it), as derived from the stored state.

        The restored replica keeps every promise in ``safety`` (no second vote in a view and
        phase it voted in, the lock, no second proposal), so it cannot equivocate.
        """
        replica = cls(config, key, validators, check_payload)
        if safety.chain_id != config.chain_id:
            raise ValueError("safety data belongs to another chain")
        replica.safety = safety
        previous: CommittedBlock | None = None
        for entry in committed:
            height = entry.block.height
            if height == 0:
                continue
            block_hash = entry.block.block_hash()
            check(entry.commit_qc.block_hash == block_hash, "stored commit QC does not match")
            if previous is not None:
                check(
                    height == previous.block.height + 1
                    and entry.block.header.parent_hash == previous.block.block_hash(),
                    "stored committed blocks are not a chain",
                )
            replica._committed[height] = entry
            replica._hashes[height] = block_hash
            previous = entry
        if previous is not None:
            tip = previous.block.height
            replica.committed_height = tip
            replica.executed_height = tip
            replica._roots = {tip: tip_state_root}
        else:
            check(tip_state_root == config.genesis_state_root, "tip root of an empty chain")
        prepared = safety.prepare_block
        if prepared is not None and prepared.block_hash() == safety.prepare_qc.block_hash:
            replica._remember_block(prepared, safety.prepare_qc.block_hash)
        replica._prune_committed()
        return replica

    @property
    def view(self) -> int:
        return self.safety.view

    @property
    def validators(self) -> ValidatorSet:
        """The set of the height the current view decides (committed height + 1); while that
        set is not known yet (execution lags a catch-up), the latest known set before it. Only
        view-entry and leader decisions use it, which are liveness matters."""
        return self.sets.at_or_before(self.sets.epoch_of(self.committed_height + 1))

    def _set_at(self, height: int) -> ValidatorSet | None:
        """The one lookup: the set that certifies ``height`` (None if not known)."""
        return self.sets.for_height(height)

    def _next_set(self) -> ValidatorSet | None:
        return self.sets.for_epoch(self.sets.epoch_of(self.committed_height + 1) + 1)

    def _in_current_or_next_set(self, key: bytes) -> bool:
        nxt = self._next_set()
        return key in self.validators or (nxt is not None and key in nxt)

    def committed_block(self, height: int) -> CommittedBlock | None:
        return self._committed.get(height)

    # ---- the event loop entry points --------------------------------------------------------

    def start(self, now_ms: int) -> list[Action]:
        """First actions after construction or restore: enter (or re-enter) a view."""
        self._out = []
        self._now_ms = now_ms
        if self.view == 0:
            self._enter_view(1, newview="leader")
        else:
            self._out.append(SetTimer(TimerKind.VIEW, self.view, self._view_timeout()))
            self._send_newview(self.view, broadcast=False)
        self._drain()
        return self._take()

    def handle(self, event: Event) -> list[Action]:
        """Process one event; return the actions to carry out, in order."""
        self._out = []
        self._message_sender = None
        if isinstance(event, MessageReceived):
            self._on_message(event.sender, event.message, local=False)
        elif isinstance(event, ClockTick):
            self._now_ms = event.now_ms
            self._try_propose()
        elif isinstance(event, TimerFired):
            self._on_timer(event)
        elif isinstance(event, PayloadAvailable):
            self._on_payload(event)
        elif isinstance(event, BlockExecuted):
            self._on_executed(event)
        elif isinstance(event, PeerConnected):
            self._on_peer_connected(event.peer)
        else:
            raise TypeError(f"unknown event {type(event).__name__}")
        self._drain()
        return self._take()

    def _take(self) -> list[Action]:
        out, self._out = self._out, []
        return out

    def _drain(self) -> None:
        while self._inbox:
            sender, message, local = self._inbox.pop(0)
            self._on_message(sender, message, local)

    # ---- overridable rules (tests disable one to prove the simulator notices) ---------------

    def _safe_node(self, extends_locked_block: bool, justify_view: int, locked_view: int) -> bool:
        return safe_node(extends_locked_block, justify_view, locked_view)

    def _may_vote(self, last_voted_view: int, view: int) -> bool:
        return not_voted_yet(last_voted_view, view)

    def _hand_over_safe(
        self, extends_locked_block: bool, justify_height: int, locked_height: int
    ) -> bool:
        return hand_over_safe(extends_locked_block, justify_height, locked_height)

    # ---- small helpers ----------------------------------------------------------------------

    def _persist(self, safety: SafetyData) -> None:
        self.safety = safety
        self._out.append(PersistSafety(safety))

    def _ensure_persisted(self) -> None:
        """Make sure this action list persists the current safety data before what follows."""
        if not any(isinstance(a, PersistSafety) and a.safety == self.safety for a in self._out):
            self._out.append(PersistSafety(self.safety))

    def _update_safety(self, **changes: object) -> None:
        new = dataclasses.replace(self.safety, **changes)  # type: ignore[arg-type]
        if new != self.safety:
            self._persist(new)

    def _send(self, to: bytes, message: Message) -> None:
        if to == self.me:
            self._inbox.append((self.me, message, True))
        else:
            self._out.append(Send(to, message))

    def _broadcast(self, message: Message) -> None:
        self._out.append(Broadcast(message))
        self._inbox.append((self.me, message, True))

    def _view_timeout(self) -> int:
        cfg = self.config
        return view_timeout_ms(
            cfg.view_timeout_base_ms, cfg.view_timeout_cap_ms, self._timeouts_since_commit
        )

    def _committed_hash_at(self, height: int) -> bytes | None:
        return self._hashes.get(height)

    def _tip(self) -> Block:
        return self._committed[self.committed_height].block

    def _qc_ok(self, qc: QuorumCert) -> bool:
        """Is ``qc`` valid for the set of its height? False, and no fault, if we do not know
        that set (yet): the QC may be fine, we cannot tell."""
        cached = self._qc_cache.get(qc)
        if cached is None:
            validators = self._set_at(qc.height)
            if validators is None:
                return False
            cached = qc_valid(qc, self.config.chain_id, validators, self.genesis_hash)
            if len(self._qc_cache) >= MAX_QC_CACHE:
                self._qc_cache.clear()
            self._qc_cache[qc] = cached
        if not cached and self._message_sender is not None:
            # Honest replicas only pass on QCs they verified: a forged one is the sender's fault.
            self._out.append(PeerFault(self._message_sender, "invalid_qc"))
        return cached

    def _remember_block(self, block: Block, block_hash: bytes) -> None:
        height = block.height
        if height <= self.committed_height or height > self.committed_height + 2:
            return
        if block_hash not in self._pending:
            if len(self._pending) >= MAX_PENDING_BLOCKS:
                self._pending.pop(next(iter(self._pending)))
            self._pending[block_hash] = block

    # ---- views ------------------------------------------------------------------------------

    def _enter_view(self, view: int, *, newview: str) -> None:
        """Move to ``view``. ``newview``: "leader" (send NEW-VIEW to its leader), "broadcast"
        (to everyone: after a timeout, so lagging replicas can synchronise) or "none"."""
        check(view > self.view, f"views only move forward ({self.view} -> {view})")
        self._update_safety(view=view)
        self._out.append(SetTimer(TimerKind.VIEW, view, self._view_timeout()))
        self._payload_requested = None
        self._payload = None
        self._waiting = []
        self._prune_views(view)
        if newview != "none" and self._announced_view < view:
            self._send_newview(view, broadcast=newview == "broadcast")
        for sender, message in self._future.pop(view, []):
            self._inbox.append((sender, message, False))
        self._try_propose()

    def _send_newview(self, view: int, *, broadcast: bool) -> None:
        message = self._new_newview(view)
        leader = self.validators.leader(view)
        if broadcast:
            # Counted as announced even when the signer failed: the join rule re-enters
            # _leave_view until the view is announced, and the view timer retries anyway.
            self._announced_view = max(self._announced_view, view)
        if message is None:
            return
        if broadcast:
            self._out.append(Broadcast(message))
        elif leader != self.me:
            self._out.append(Send(leader, message))

    def _new_newview(self, view: int) -> NewView | None:
        """Sign NEW-VIEW for ``view`` (we are in it, or gave up every view below it) and record
        it as our latest; the promise it states is persisted before it leaves."""
        high = self.safety.prepare_qc
        high_block = (
            self._pending.get(high.block_hash) if high.height > self.committed_height else None
        )
        try:
            signature = sign_newview(self.key, self.config.chain_id, view, high)
        except SigningFailed:
            return None  # silent this time (see consensus/signing.py)
        message = NewView(view, high, high_block, self.me, signature)
        self._record_newview(message)
        self._ensure_persisted()
        return message

    def _on_peer_connected(self, peer: bytes) -> None:
        """A peer (re)connected: what we broadcast while it was away never reached it. Send it
        our latest NEW-VIEW (a fresh one for our view if the latest is older: we may have
        entered the view on a QC or a proposal, without announcing it), and our proposal if we
        lead this view and made one. Both are messages we already stand by: nothing new is
        promised, so this is safe at any time. The PersistSafety in front is redundant (what
        they promise is on disk already) but keeps "no speech without a persist in the same
        list" literally true, so the checkers stay simple: one safety write per reconnection."""
        if peer == self.me or not self._in_current_or_next_set(peer) or self.view == 0:
            return
        latest = self._latest_newview.get(self.me)
        if latest is None or latest.view < self.view:
            latest = self._new_newview(self.view)
        if latest is None:
            return
        self._ensure_persisted()
        self._out.append(Send(peer, latest))
        own = self._own_proposal
        if own is not None and own.view == self.view:
            self._out.append(Send(peer, own))

    def _prune_views(self, view: int) -> None:
        for v in [v for v in self._future if v < view]:
            del self._future[v]
        for ck in [ck for ck in self._collectors if ck[0] < view]:
            del self._collectors[ck]
        self._formed = {f for f in self._formed if f[0] >= view}
        oldest = view - EVIDENCE_WINDOW_VIEWS
        for sk in [sk for sk in self._seen_votes if sk[1] < oldest]:
            del self._seen_votes[sk]
        for pk in [pk for pk in self._seen_proposals if pk[0] < oldest]:
            del self._seen_proposals[pk]
        self._reported = {r for r in self._reported if r[0] >= oldest}

    def _on_timer(self, event: TimerFired) -> None:
        if event.view != self.view:
            return  # a timer of a view we already left
        if event.kind == TimerKind.VIEW:
            # A sync request lost while our view stood still (we are behind and cannot check
            # the QCs that would move it) may be sent again: at most one per view timeout.
            self._sync_requested = None
            self._timeouts_since_commit += 1
            self._out.append(SetTimer(TimerKind.VIEW, self.view, self._view_timeout()))
            self._leave_view(self.view)
        elif event.kind == TimerKind.PROPOSE:
            self._try_propose()

    def _leave_view(self, view: int) -> None:
        """Give up on every view up to ``view``: never vote in them any more (persisted), and
        broadcast NEW-VIEW for ``view + 1`` (again, if the timer fires while we wait)."""
        s = self.safety
        self._update_safety(
            voted_prepare_view=max(s.voted_prepare_view, view),
            voted_precommit_view=max(s.voted_precommit_view, view),
            voted_commit_view=max(s.voted_commit_view, view),
        )
        self._send_newview(view + 1, broadcast=True)
        self._synchronise()

    def _synchronise(self) -> None:
        """Apply the timeout-certificate and join rules to the latest NEW-VIEW per validator."""
        views = {sender: nv.view for sender, nv in self._latest_newview.items()}
        join = joined_view(views, self.validators)
        if join is not None and join > max(self._announced_view, self.view):
            self._leave_view(join - 1)
            return
        enter = quorum_view(views, self.validators)
        if enter is not None and enter > self.view:
            self._enter_view(enter, newview="broadcast")

    def _record_newview(self, nv: NewView) -> None:
        current = self._latest_newview.get(nv.sender)
        if (
            current is None
            or nv.view > current.view
            or (nv.view == current.view and nv.high_qc.view > current.high_qc.view)
        ):
            self._latest_newview[nv.sender] = nv

    def _catch_up_view(self, qc_view: int) -> None:
        """A valid QC of a later view shows a quorum got there: join that view."""
        if qc_view > self.view:
            self._enter_view(qc_view, newview="none")

    def _buffer(self, view: int, sender: bytes, message: Message) -> None:
        if view > self.view + self.config.max_future_views:
            return
        queue = self._future.setdefault(view, [])
        if len(queue) < MAX_BUFFERED_PER_VIEW:
            queue.append((sender, message))

    # ---- messages ---------------------------------------------------------------------------

    def _on_message(self, sender: bytes, message: Message, local: bool) -> None:
        # Whom a failed QC check is held against (see _qc_ok); our own messages: no one.
        self._message_sender = None if local or sender == self.me else sender
        if isinstance(message, Proposal):
            self._on_proposal(sender, message, local)
        elif isinstance(message, Vote):
            self._on_vote(message, local)
        elif isinstance(message, PreCommit):
            self._on_precommit(message.qc)
        elif isinstance(message, Commit):
            self._on_commit(message.qc)
        elif isinstance(message, Decide):
            self._on_decide(sender, message.qc)
        elif isinstance(message, NewView):
            self._on_newview(sender, message, local)
        elif isinstance(message, SyncRequest):
            self._on_sync_request(sender, message)
        elif isinstance(message, SyncResponse):
            self._on_sync_response(sender, message)

    # PREPARE ---------------------------------------------------------------------------------

    def _on_proposal(self, sender: bytes, p: Proposal, local: bool) -> None:
        if p.view == 0:
            return
        validators = self._set_at(p.block.height)
        if validators is None:
            # A height whose set we do not know yet: we are behind. Ask, without trusting it.
            self._hint_sync(sender, p.block.height - 1)
            return
        if p.proposer not in validators or validators.leader(p.view) != p.proposer:
            return
        block_hash = p.block.block_hash()
        if not local and not proposal_signature_valid(self.config.chain_id, p, block_hash):
            return
        if self._equivocating_proposal(p, block_hash):
            return
        if p.view < self.view:
            return
        if not proposal_well_formed(block_hash, p.block.header.view, p.view, p.justify):
            return
        if p.justify.phase != PREPARE or not self._qc_ok(p.justify):
            return
        if not p.block.payload_matches_header():
            return
        if p.view > self.view:
            # Join a later view on its proposal only with a certificate that a quorum got
            # there: a prepare QC of the view before, or a TC for the view (pacemaker.py).
            if joins_on_justify(p.view, p.justify.view, self.view) or self._tc_lets_join(
                p, validators
            ):
                self._enter_view(p.view, newview="none")
            else:
                self._buffer(p.view, sender, p)
                return
        self._consider_proposal(sender, p, block_hash)

    def _tc_lets_join(self, p: Proposal, validators: ValidatorSet) -> bool:
        """The proposal's TC (counted in the set its leader used) lets us join its view."""
        tc = p.timeout_cert
        return (
            tc is not None
            and joins_on_timeout_cert(tc.view, p.view, self.view)
            and tc_valid(tc, self.config.chain_id, validators)
        )

    def _within_evidence_window(self, view: int) -> bool:
        """Signed messages we remember for equivocation checks: recent views and a bounded
        stretch of future ones (memory stays bounded whatever peers send)."""
        return self.view - EVIDENCE_WINDOW_VIEWS <= view <= self.view + self.config.max_future_views

    def _equivocating_proposal(self, p: Proposal, block_hash: bytes) -> bool:
        key = (p.view, p.proposer)
        seen = self._seen_proposals.get(key)
        if seen is None:
            if self._within_evidence_window(p.view):
                self._seen_proposals[key] = (block_hash, p.signature)
            return False
        if seen[0] == block_hash:
            return False
        report = (p.view, p.proposer, 0, 0)
        if report not in self._reported:
            self._reported.add(report)
            evidence = ProposalEquivocation(
                p.proposer, p.view, seen[0], seen[1], block_hash, p.signature
            )
            self._out.append(ReportEvidence(evidence))
        return True

    def _consider_proposal(self, sender: bytes, p: Proposal, block_hash: bytes) -> None:
        if not self._may_vote(self.safety.voted_prepare_view, p.view):
            return
        block = p.block
        status = self._block_status(block, block_hash)
        if status in (_NEED_SYNC, _WAIT_EXECUTION):
            if all(w[1] is not p for w in self._waiting):
                self._waiting.append((sender, p))
            if status == _NEED_SYNC:
                self._request_sync(sender, block.height - 1)
            return
        if status == _INVALID:
            return
        fresh = block_hash != p.justify.block_hash
        if fresh and (
            block.header.proposer != p.proposer
            or not block_extends(
                block_hash,
                block.height,
                p.justify.block_hash,
                p.justify.height,
                self._committed_hash_at,
            )
        ):
            return
        self._remember_block(block, block_hash)
        lock = self.safety.locked_qc
        extends_lock = block_extends(
            block_hash, block.height, lock.block_hash, lock.height, self._committed_hash_at
        )
        if not self._safe_node(extends_lock, p.justify.view, lock.view):
            return
        if not self._hand_over_safe(extends_lock, p.justify.height, lock.height):
            return
        self._update_safety(voted_prepare_view=p.view)
        self._vote(PREPARE, p.view, block.height, block_hash)

    def _block_status(self, block: Block, block_hash: bytes) -> int:
        """Is ``block`` a valid next block on our committed chain (or an already committed one)?

        Rules: parent is our committed tip and height is its height + 1; the header's state
        root is our executed root after the parent; timestamp strictly after the parent's and
        at most the allowed drift ahead of our clock; proposer is a validator; payload within
        the size limits and accepted by the application's ``check_payload``.
        """
        height = block.height
        if height == 0:
            return _INVALID
        if height <= self.committed_height:
            return _VALID if self._committed_hash_at(height) == block_hash else _INVALID
        if height > self.committed_height + 1:
            return _NEED_SYNC
        if block_hash in self._valid_blocks:
            return _VALID
        header = block.header
        tip = self._tip()
        if header.parent_hash != self._hashes[self.committed_height]:
            return _INVALID
        root = self._roots.get(height - 1)
        if root is None:
            return _WAIT_EXECUTION
        cfg = self.config
        max_txs, max_bytes = self.block_limits.at(height)
        if (
            header.state_root != root
            or header.proposer not in self.validators  # the set of committed height + 1
            or not timestamp_acceptable(
                header.timestamp_ms, tip.header.timestamp_ms, self._now_ms, cfg.max_clock_drift_ms
            )
            or len(block.payload) > max_txs
            or block.payload_bytes() > max_bytes
        ):
            return _INVALID
        if self.check_payload is not None and not self.check_payload(block):
            return _INVALID
        self._valid_blocks.add(block_hash)
        return _VALID

    def _vote(self, phase: int, view: int, height: int, block_hash: bytes) -> None:
        """Sign and send a vote. The caller has already persisted the promise not to vote again
        in this view and phase (the PersistSafety action precedes this Send)."""
        check(self.safety.voted_view(phase) >= view, "vote before its safety data is persisted")
        validators = self._set_at(height)
        if validators is None or self.me not in validators:
            return  # not a member of this height's set: our vote would not count
        self._ensure_persisted()
        try:
            vote = sign_vote(self.key, self.config.chain_id, phase, view, height, block_hash)
        except SigningFailed:
            return  # not voting is safe (see consensus/signing.py)
        self._send(validators.leader(view), vote)

    def _retry_waiting(self) -> None:
        waiting, self._waiting = self._waiting, []
        for sender, p in waiting:
            if p.view == self.view:
                self._consider_proposal(sender, p, p.block.block_hash())

    # Votes and QC formation (leader) ---------------------------------------------------------

    def _on_vote(self, vote: Vote, local: bool) -> None:
        validators = self._set_at(vote.height)
        if validators is None or vote.voter not in validators or vote.view == 0:
            return
        if not local and not vote_signature_valid(self.config.chain_id, vote):
            return
        key = (vote.voter, vote.view, vote.phase)
        seen = self._seen_votes.get(key)
        if seen is None:
            if self._within_evidence_window(vote.view):
                self._seen_votes[key] = vote
        elif seen.block_hash != vote.block_hash:
            report = (vote.view, vote.voter, vote.phase, 1)
            if report not in self._reported:
                self._reported.add(report)
                self._out.append(ReportEvidence(VoteEquivocation(seen, vote)))
            return
        if vote.view != self.view or validators.leader(vote.view) != self.me:
            return
        if (vote.view, vote.phase) in self._formed:
            return
        ck = (vote.view, vote.phase, vote.block_hash)
        collector = self._collectors.get(ck)
        if collector is None:
            collector = VoteCollector(
                validators, vote.phase, vote.view, vote.height, vote.block_hash
            )
            self._collectors[ck] = collector
        if vote.height != collector.height:
            return
        qc = collector.add(vote)
        if qc is not None:
            self._formed.add((vote.view, vote.phase))
            self._qc_cache[qc] = True
            self._broadcast(_NEXT_MESSAGE[vote.phase](qc))

    # PRE-COMMIT, COMMIT, DECIDE --------------------------------------------------------------

    def _on_precommit(self, qc: QuorumCert) -> None:
        if qc.phase != PREPARE or qc.view == 0 or not self._qc_ok(qc):
            return
        self._catch_up_view(qc.view)
        if qc.view != self.view or not self._may_vote(self.safety.voted_precommit_view, qc.view):
            return
        high = updated_high_qc(self.safety.prepare_qc, qc)
        if high is self.safety.prepare_qc:
            self._update_safety(voted_precommit_view=qc.view)
        else:
            prepared = (
                self._pending.get(high.block_hash) if high.height > self.committed_height else None
            )
            self._update_safety(
                voted_precommit_view=qc.view, prepare_qc=high, prepare_block=prepared
            )
        self._vote(PRECOMMIT, qc.view, qc.height, qc.block_hash)

    def _on_commit(self, qc: QuorumCert) -> None:
        if qc.phase != PRECOMMIT or qc.view == 0 or not self._qc_ok(qc):
            return
        self._catch_up_view(qc.view)
        if qc.view != self.view or not self._may_vote(self.safety.voted_commit_view, qc.view):
            return
        self._update_safety(
            voted_commit_view=qc.view, locked_qc=self._new_lock(self.safety.locked_qc, qc)
        )
        self._vote(COMMIT, qc.view, qc.height, qc.block_hash)

    def _new_lock(self, locked_qc: QuorumCert, precommit_qc: QuorumCert) -> QuorumCert:
        return updated_lock(locked_qc, precommit_qc)

    def _on_decide(self, sender: bytes, qc: QuorumCert) -> None:
        if qc.phase != COMMIT or qc.view == 0:
            return
        if self._set_at(qc.height) is None:
            self._hint_sync(sender, qc.height)
            return
        if not self._qc_ok(qc):
            return
        self._accept_commit_qc(sender, qc)
        if qc.view >= self.view:
            self._enter_view(qc.view + 1, newview="leader")

    def _accept_commit_qc(self, sender: bytes, qc: QuorumCert) -> None:
        height = qc.height
        self._sync_target = max(self._sync_target, height)
        if height <= self.committed_height:
            known = self._committed_hash_at(height)
            check(
                known is None or known == qc.block_hash,
                f"two commit QCs for different blocks at height {height}",
            )
            return
        block = self._pending.get(qc.block_hash)
        if (
            block is not None
            and height == self.committed_height + 1
            and block.header.parent_hash == self._hashes[self.committed_height]
        ):
            self._commit_block(block, qc, qc.block_hash)
        else:
            self._request_sync(sender, height)

    def _commit_block(self, block: Block, qc: QuorumCert, block_hash: bytes) -> None:
        height = block.height
        check(height == self.committed_height + 1, "commits are contiguous")
        check(block.header.parent_hash == self._hashes[height - 1], "commit extends the tip")
        check(qc.block_hash == block_hash and qc.height == height, "commit QC matches block")
        self._committed[height] = CommittedBlock(block, qc)
        self._hashes[height] = block_hash
        self.committed_height = height
        self._pending = {k: b for k, b in self._pending.items() if b.height > height}
        self._valid_blocks.clear()
        self._timeouts_since_commit = 0
        prepared = self.safety.prepare_block
        if prepared is not None and prepared.height <= height:
            self._update_safety(prepare_block=None)  # committed blocks are stored by the driver
        self._out.append(Execute(block, qc))
        self._out.append(Committed(height, block_hash, qc.view, block.header.timestamp_ms))
        self._prune_committed()
        if self.sets.epoch_of(height + 1) != self.sets.epoch_of(height):
            self._forget_departed()

    def _forget_departed(self) -> None:
        """A new epoch: NEW-VIEWs of validators in neither this nor the next set count no more
        (and memory stays bounded by two sets, however many epochs pass)."""
        for key in [k for k in self._latest_newview if not self._in_current_or_next_set(k)]:
            del self._latest_newview[key]

    def _prune_committed(self) -> None:
        oldest = self.committed_height - self.config.retain_blocks
        if oldest > 0 and oldest in self._committed:
            for h in [h for h in self._committed if 0 < h <= oldest]:
                del self._committed[h]
                self._hashes.pop(h, None)
        for h in [h for h in self._roots if h < self.executed_height - self.config.retain_blocks]:
            del self._roots[h]

    def _on_executed(self, event: BlockExecuted) -> None:
        height = event.height
        check(
            height == self.executed_height + 1 and height <= self.committed_height,
            f"BlockExecuted({height}) out of order (executed {self.executed_height}, "
            f"committed {self.committed_height})",
        )
        check(self._hashes.get(height) == event.block_hash, "executed block is not committed")
        self._roots[height] = event.state_root
        self.executed_height = height
        self._learn_next_set(event)
        self.learn_block_limits(event.block_limits)
        child = self._committed.get(height + 1)
        check(
            child is None or child.block.header.state_root == event.state_root,
            f"state divergence: our root after block {height} differs from the certified one",
        )
        self._prune_committed()
        self._retry_waiting()
        self._try_propose()

    def learn_block_limits(self, changes: Sequence[tuple[int, int, int]]) -> None:
        """Block limits the chain scheduled, (from_height, max_txs, max_bytes): from each
        ``BlockExecuted``, and from the driver after a restart (the stored state's schedule)."""
        self.block_limits.learn(changes)
        self.block_limits.forget_before(self.committed_height + 1)

    def _learn_next_set(self, event: BlockExecuted) -> None:
        """The last block of epoch e fixed the set of epoch e + 2 (and, if governance changed
        it, the schedule from epoch e + 2 on). A catch-up that stopped at a height whose set we
        lacked resumes from where it stopped."""
        if not self.sets.is_epoch_end(event.height):
            check(
                event.next_set is None and event.schedule is None,
                f"a set or schedule reported for block {event.height}: no epoch end",
            )
            return
        if event.next_set is None:
            raise ConsensusInvariantError(f"block {event.height} ends an epoch: no next set")
        epoch = self.sets.epoch_of(event.height) + 2
        added = self.sets.add(epoch, event.next_set, event.schedule)
        if added and self._sync_peer is not None and self._sync_target > self.committed_height:
            self._sync_requested = None
            self._request_sync(self._sync_peer, self._sync_target)

    # NEW-VIEW and the leader's proposal ------------------------------------------------------

    def _on_newview(self, sender: bytes, nv: NewView, local: bool) -> None:
        if nv.view == 0:
            return
        if self._set_at(nv.high_qc.height) is None:
            # Its high QC is of an epoch we do not know: we are behind. After a restart, the
            # NEW-VIEWs a stalled quorum re-sends may be all we hear (no block is decided).
            self._hint_sync(sender, nv.high_qc.height)
            return
        # The next set's members too: they must be heard the moment the epoch turns.
        if not self._in_current_or_next_set(nv.sender):
            return
        if not local and not newview_signature_valid(self.config.chain_id, nv):
            return
        high = nv.high_qc
        if high.phase != PREPARE or not self._qc_ok(high):
            return
        if nv.high_block is not None:
            block_hash = nv.high_block.block_hash()
            if block_hash != high.block_hash or not nv.high_block.payload_matches_header():
                return
            self._remember_block(nv.high_block, block_hash)
        self._record_newview(nv)
        self._synchronise()
        self._try_propose()

    def _try_propose(self) -> None:
        view = self.view
        if (
            view == 0
            or self.validators.leader(view) != self.me
            or self.safety.proposed_view >= view
        ):
            return
        senders = [
            k for k, nv in self._latest_newview.items() if nv.view >= view and k in self.validators
        ]
        if not self.validators.is_quorum(self.validators.power_of_set(senders)):
            return
        high, high_from = self._choose_high_qc(senders)
        tip_hash = self._hashes[self.committed_height]
        if high.height <= self.committed_height:
            if self._committed_hash_at(high.height) != high.block_hash:
                return  # conflicts with our committed chain: impossible with <= 1/3 faulty
            block = self._new_block(view)
            if block is None:
                return
        elif high.height == self.committed_height + 1:
            pending = self._pending.get(high.block_hash)
            if pending is None or pending.header.parent_hash != tip_hash:
                # Up to the QC's own height: its block may be committed at the peer (we missed
                # the DECIDE, e.g. while down), and then only a sync brings it.
                self._request_sync(high_from, high.height)
                return
            block = pending  # re-propose the prepared but uncommitted block
        else:
            self._request_sync(high_from, high.height)
            return
        block_hash = block.block_hash()
        self._update_safety(proposed_view=view)
        self._ensure_persisted()
        try:
            signature = sign_proposal(self.key, self.config.chain_id, view, block_hash)
        except SigningFailed:
            return  # not proposing is safe: the view times out (see consensus/signing.py)
        tc = None
        if high.view + 1 < view:
            # The view before ended without a prepare QC: replicas that missed the NEW-VIEWs
            # which brought us here can only join with the certificate itself.
            tc = timeout_cert(view, [self._latest_newview[k] for k in senders], self.validators)
            check(tc_valid(tc, self.config.chain_id, self.validators), "built an invalid TC")
        self._own_proposal = Proposal(view, block, high, self.me, signature, tc)
        self._broadcast(self._own_proposal)

    def _choose_high_qc(self, senders: list[bytes]) -> tuple[QuorumCert, bytes]:
        """The highest prepare QC among ours and the NEW-VIEWs of ``senders``, and who sent it:
        a peer rather than ourselves when both hold it, since that is who we ask for the blocks
        we lack (after a restart we may hold the QC but not its block, which they committed)."""
        high = self.safety.prepare_qc
        high_from = self.me
        for sender in sorted(senders, key=self.validators.index_of):
            qc = self._latest_newview[sender].high_qc
            key, best = (qc.view, qc.block_hash), (high.view, high.block_hash)
            if key > best or (key == best and high_from == self.me):
                high, high_from = qc, sender
        return high, high_from

    def _new_block(self, view: int) -> Block | None:
        """A new block on the executed tip, once the block interval passed and the payload came."""
        if self.executed_height < self.committed_height:
            return None  # the header needs the state root after the tip
        cfg = self.config
        tip = self._tip()
        height = self.committed_height + 1
        ready_at = proposal_ready_at_ms(tip.header.timestamp_ms, cfg.block_interval_ms)
        if self._now_ms < ready_at:
            if self._propose_timer_view != view:
                self._propose_timer_view = view
                self._out.append(SetTimer(TimerKind.PROPOSE, view, ready_at - self._now_ms))
            return None
        if self._payload_requested != (view, height):
            self._payload_requested = (view, height)
            self._payload = None
            max_txs, max_bytes = self.block_limits.at(height)
            self._out.append(RequestPayload(view, height, max_txs, max_bytes))
            return None
        if self._payload is None:
            return None
        payload = self._payload
        header = BlockHeader(
            height=height,
            view=view,
            parent_hash=self._hashes[self.committed_height],
            timestamp_ms=next_block_timestamp_ms(self._now_ms, tip.header.timestamp_ms),
            proposer=self.me,
            payload_root=payload_root(payload),
            state_root=self._roots[self.committed_height],
        )
        return Block(header, payload)

    def _on_payload(self, event: PayloadAvailable) -> None:
        if self._payload_requested != (event.view, event.height) or event.view != self.view:
            return
        payload: list[bytes] = []
        size = 0
        max_txs, max_bytes = self.block_limits.at(event.height)
        for tx in event.payload[:max_txs]:
            if size + len(tx) > max_bytes:
                break
            payload.append(tx)
            size += len(tx)
        self._payload = tuple(payload)
        self._try_propose()

    # Catch-up --------------------------------------------------------------------------------

    def _request_sync(self, peer: bytes, height: int) -> None:
        """Ask ``peer`` for committed blocks after our tip, up to ``height`` at least."""
        self._sync_target = max(self._sync_target, height)
        if peer == self.me or self._sync_target <= self.committed_height:
            return
        self._sync_peer = peer
        start = self.committed_height + 1
        if self._sync_requested == (start, self.view):
            return  # one request per view and starting height; lost ones are retried later
        self._sync_requested = (start, self.view)
        self._send(peer, SyncRequest(start, self.config.sync_batch_blocks))

    def _hint_sync(self, sender: bytes, height: int) -> None:
        """A message about ``height`` whose set we do not know: we are behind by at least an
        epoch. Its claims cannot be checked, so ask for one batch only (a lying sender wastes
        one bounded request per view); the batch's QCs are checked as we learn the sets."""
        if height > self.committed_height:
            batch_end = self.committed_height + self.config.sync_batch_blocks
            self._request_sync(sender, min(height, batch_end))

    def _on_sync_request(self, sender: bytes, request: SyncRequest) -> None:
        if sender == self.me:
            return
        entries: list[CommittedBlock] = []
        size = 0
        count = min(request.max_blocks, self.config.sync_batch_blocks)
        for height in range(max(request.from_height, 1), self.committed_height + 1):
            entry = self._committed.get(height)
            if entry is None or len(entries) >= count:
                break
            size += entry.block.payload_bytes()
            if entries and size > self.config.sync_response_max_bytes:
                break
            entries.append(entry)
        if entries:
            self._send(sender, SyncResponse(tuple(entries)))

    def _on_sync_response(self, sender: bytes, response: SyncResponse) -> None:
        last_view = -1
        for entry in response.blocks:
            block, qc = entry.block, entry.commit_qc
            height = block.height
            if height <= self.committed_height:
                continue
            block_hash = block.block_hash()
            if (
                height != self.committed_height + 1
                or qc.phase != COMMIT
                or qc.block_hash != block_hash
                or qc.height != height
                or block.header.parent_hash != self._hashes[self.committed_height]
                or not block.payload_matches_header()
                or not self._qc_ok(qc)
            ):
                break
            self._commit_block(block, qc, block_hash)
            last_view = qc.view
        if last_view < 0:
            return
        if self._sync_target > self.committed_height and self._set_at(self.committed_height + 1):
            self._request_sync(sender, self._sync_target)
        if last_view >= self.view:
            self._enter_view(last_view + 1, newview="leader")
        self._retry_waiting()
        self._try_propose()
