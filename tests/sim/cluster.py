"""A seeded discrete-event simulation of a cluster of consensus replicas.

Plain heap of timed events and one ``random.Random(seed)``: the same scenario and seed replay
exactly, event for event (not trio, whose scheduler is randomised on purpose). Every message is
encoded to bytes at the sender and strictly decoded for the receivers, as on the real network.

Two memos make a seed cheap enough to run thousands in CI, and change no outcome: the bytes of
a message sent to several nodes are decoded once (the decoded messages are frozen, so every
receiver gets an equal, immutable object), and an Ed25519 check is made once per (key, message,
signature) for the whole cluster (:func:`shared_signature_checks`), where a real cluster makes
it once per node. Both are caches of pure functions: a trace with them is the trace without
them, event for event (``tests/consensus/test_simulation.py`` compares the two).

The simulated driver follows the replica's contract: PersistSafety is written at once, before
the next action of the list; Execute runs the block on the node's application after a short
delay and stores block, QC and state together, then feeds BlockExecuted. A crash loses
everything else: the replica object, queued executions, timers and messages in flight. Half of
the crashes strike part-way through a list of actions (only a prefix is carried out), which is
where persisting before speaking matters. A restart reconnects: the restarted node and every
node that is up each get ``PeerConnected`` for the other, one network delay later, as the p2p
layer reports a new connection.

Checkers run as the simulation goes: no two honest nodes commit different blocks at a height,
every honest node computes the same state root at each height, the core's own invariant checks
never fire on an honest node, evidence never names an honest validator, no honest node sends a
vote before the safety record that promises it is persisted; and, after the last
fault healed, every honest node commits new blocks within ``liveness_window_ms``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import math
import random
from collections.abc import Callable, Iterator
from typing import Any

import consensus.quorum
import consensus.verify
from consensus import (
    Block,
    BlockExecuted,
    Broadcast,
    ClockTick,
    Committed,
    CommittedBlock,
    ConsensusConfig,
    ConsensusInvariantError,
    Execute,
    MessageReceived,
    PayloadAvailable,
    PeerConnected,
    PeerFault,
    PersistSafety,
    Proposal,
    QuorumCert,
    Replica,
    ReportEvidence,
    RequestPayload,
    SafetyData,
    Send,
    SetTimer,
    TimerFired,
    TimerKind,
    ValidatorSet,
    Vote,
    decode_message,
    encode_message,
)
from consensus.epochs import EpochSchedule, EpochSets
from consensus.types import ProposalEquivocation, VoteEquivocation, payload_root
from consensus.verify import sign_proposal
from state_machine.crypto import Keypair
from tests.sim.app import GENESIS_ROOT, KVApp, check_payload

CHAIN_ID = "perpbft-sim"
GENESIS_TIME_MS = 1_700_000_000_000


TRACE_LINES_IN_FAILURE = 400


VERIFY_NAME = "verify"
DECODED_MEMO_MAX = 4096  # distinct message encodings kept decoded; a run sends far more


@contextlib.contextmanager
def shared_signature_checks() -> Iterator[None]:
    """Within the block, the consensus core's signature checks share one memo keyed by
    (public key, message, signature): the verdict of a pure function, computed once for all
    the simulated nodes instead of once for each. The real verifier decides every entry."""
    callers = (consensus.quorum, consensus.verify)  # each imported ``verify`` by name
    originals = [getattr(module, VERIFY_NAME) for module in callers]
    real_verify: Callable[[bytes, bytes, bytes], bool] = originals[0]
    verdicts: dict[tuple[bytes, bytes, bytes], bool] = {}

    def memo_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
        key = (public_key, message, signature)
        verdict = verdicts.get(key)
        if verdict is None:
            verdict = real_verify(public_key, message, signature)
            verdicts[key] = verdict
        return verdict

    for module in callers:
        setattr(module, VERIFY_NAME, memo_verify)
    try:
        yield
    finally:
        for module, original in zip(callers, originals, strict=True):
            setattr(module, VERIFY_NAME, original)


class SimulationFailure(AssertionError):
    """A checker failed. ``str()`` holds the reason, the seed, the replay command and the last
    events of the trace (``python -m tests.sim ... --trace`` prints all of it)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass
class Partition:
    """Between ``start_ms`` and ``end_ms`` only nodes in the same group can talk."""

    start_ms: float
    end_ms: float
    groups: list[frozenset[int]]

    def separates(self, a: int, b: int, now: float) -> bool:
        if not self.start_ms <= now < self.end_ms:
            return False
        return not any(a in g and b in g for g in self.groups)


@dataclasses.dataclass
class Scenario:
    """Everything that defines one run besides the seed."""

    name: str
    validators: int = 4
    # Node ids 0..validators-1 hold validator keys; twins[i] = j adds node i with j's key.
    twins: dict[int, int] = dataclasses.field(default_factory=dict)
    byzantine: frozenset[int] = frozenset()  # validator indices not held to the checkers
    delay_ms: tuple[float, float] = (1.0, 10.0)
    drop: float = 0.0
    duplicate: float = 0.0
    partitions: list[Partition] = dataclasses.field(default_factory=list)
    crashes: list[tuple[int, float, float]] = dataclasses.field(default_factory=list)
    skew_ms: dict[int, int] = dataclasses.field(default_factory=dict)
    silent: dict[int, tuple[float, float]] = dataclasses.field(default_factory=dict)
    equivocators: frozenset[int] = frozenset()  # nodes that split their proposals
    # Nodes running a different replica class (Byzantine behaviour); others use replica_cls.
    node_classes: dict[int, type[Replica]] = dataclasses.field(default_factory=dict)
    fault_end_ms: float = 10_000.0
    liveness_window_ms: float = 60_000.0
    min_new_blocks: int = 2
    exec_delay_ms: tuple[float, float] = (0.1, 2.0)
    block_interval_ms: int = 500
    view_timeout_base_ms: int = 1_500
    view_timeout_cap_ms: int = 12_000
    max_clock_drift_ms: int = 1_000
    replica_cls: type[Replica] = Replica
    app_factory: Callable[[], Any] | None = None
    genesis_root: bytes = GENESIS_ROOT
    payload_factory: Callable[[random.Random, int], tuple[bytes, ...]] | None = None
    check_payload: Callable[[Block], bool] | None = check_payload
    check_liveness: bool = True
    # If set: the first commit after the last fault healed (for crashes: the last restart,
    # when the quorum is back) must come within this many ms (``Simulation.recovery_ms``).
    recovery_window_ms: float | None = None
    # Validator-set changes. Keys 0..validators+candidates-1 exist and each runs a node; with
    # epoch_length_blocks > 0, set_schedule(epoch) is the set [(key index, power)] of each
    # epoch (genesis: epochs 0 and 1; without a schedule, keys 0..validators-1 with power 1).
    # It stands for the staking state machine: a deterministic function of the chain, here of
    # the epoch number alone.
    candidates: int = 0
    epoch_length_blocks: int = 0
    set_schedule: Callable[[int], list[tuple[int, int]]] | None = None
    # Epoch-length changes (governance SetEpochLength) as (first epoch, length): each is in
    # the state from the hand-over of its first epoch's set on (the end of epoch first - 2),
    # and reaches the replicas with that set, as on a real chain.
    length_changes: tuple[tuple[int, int], ...] = ()


def validator_key(i: int) -> Keypair:
    return Keypair(sha256_seed(i))


def sha256_seed(i: int) -> bytes:
    from state_machine.crypto import sha256

    return sha256(b"perpbft-sim-validator-%d" % i)


@dataclasses.dataclass
class SimNode:
    node_id: int
    key: Keypair
    validator_index: int
    honest: bool
    skew_ms: int
    replica: Replica | None = None
    up: bool = True
    epoch: int = 0
    last_tick: int = -1
    safety: SafetyData | None = None
    chain: list[CommittedBlock] = dataclasses.field(default_factory=list)
    app: Any = None
    exec_queue: list[tuple[Block, QuorumCert]] = dataclasses.field(default_factory=list)
    executing: bool = False
    committed_height: int = 0
    crash_midway: bool = False  # crash part-way through the next list of actions
    prepare_qcs: dict[bytes, QuorumCert] = dataclasses.field(default_factory=dict)


# Event kinds in the heap.
DELIVER, TIMER, PAYLOAD, EXECUTED, CRASH, RESTART, CONNECT = range(7)
KIND_NAMES = ["deliver", "timer", "payload", "executed", "crash", "restart", "connect"]


class Simulation:
    def __init__(self, scenario: Scenario, seed: int, memos: bool = True) -> None:
        self.scenario = scenario
        self.seed = seed
        self.memos = memos  # False: decode and verify for each receiver, as a real cluster does
        self.rng = random.Random(seed)
        self.now = 0.0
        self._seq = 0
        self._heap: list[tuple[float, int, int, int, int, Any]] = []
        self.trace: list[tuple[float, int, str, Any, list[Any]]] = []
        self.events_handled = 0
        self._decoded: dict[bytes, Any] = {}
        self.commits: dict[int, tuple[bytes, int]] = {}  # height -> (hash, node)
        self.roots: dict[int, tuple[bytes, int]] = {}  # height -> (root, node)
        self.commit_latencies_ms: list[float] = []
        self.evidence: list[Any] = []
        self.resume_ms: float | None = None
        self.recovery_ms: float | None = None  # last fault healed -> first commit after it
        self.healed_at_ms: float | None = None
        keys = [validator_key(i) for i in range(scenario.validators + scenario.candidates)]
        self.key_index = {k.public_key: i for i, k in enumerate(keys)}
        self._keys = keys
        self._sets: dict[int, ValidatorSet] = {}
        self.validators = self.set_of_epoch(0)
        self.config = ConsensusConfig(
            chain_id=CHAIN_ID,
            genesis_time_ms=GENESIS_TIME_MS,
            genesis_state_root=scenario.genesis_root,
            block_interval_ms=scenario.block_interval_ms,
            view_timeout_base_ms=scenario.view_timeout_base_ms,
            view_timeout_cap_ms=scenario.view_timeout_cap_ms,
            max_clock_drift_ms=scenario.max_clock_drift_ms,
        )
        self.nodes: list[SimNode] = []
        for i in range(len(keys) + len(scenario.twins)):
            vi = scenario.twins.get(i, i)
            honest = vi not in scenario.byzantine
            self.nodes.append(SimNode(i, keys[vi], vi, honest, scenario.skew_ms.get(i, 0)))
        self.by_key: dict[bytes, list[SimNode]] = {}
        for node in self.nodes:
            self.by_key.setdefault(node.key.public_key, []).append(node)
        for node_id, at, back in scenario.crashes:
            self._push(at, CRASH, node_id, 0, None)
            self._push(back, RESTART, node_id, 0, None)

    # ---- validator sets (what the staking state machine would compute) -----------------------

    def set_of_epoch(self, epoch: int) -> ValidatorSet:
        known = self._sets.get(epoch)
        if known is None:
            schedule = self.scenario.set_schedule
            if schedule is None:
                members = [(i, 1) for i in range(self.scenario.validators)]
            else:
                members = schedule(epoch)
            known = ValidatorSet([(self._keys[i].public_key, p) for i, p in members])
            self._sets[epoch] = known
        return known

    def schedule_fixed_through(self, epoch: int) -> EpochSchedule:
        """The schedule in the state once the set of ``epoch`` is handed over: the length
        changes of epochs up to ``epoch``."""
        schedule = EpochSchedule.constant(self.scenario.epoch_length_blocks)
        for first_epoch, length in self.scenario.length_changes:
            if first_epoch <= epoch:
                schedule = schedule.changed_from(first_epoch, length)
        return schedule

    @property
    def schedule(self) -> EpochSchedule:
        """The chain's whole schedule (what its heights are cut into, in the end)."""
        return self.schedule_fixed_through(1 << 62)

    def epoch_sets(self, tip: int) -> EpochSets:
        """The sets a node knows once it executed up to ``tip``: genesis' two, then one more
        per completed epoch (with the schedule handed over with it)."""
        length = self.scenario.epoch_length_blocks
        sets = EpochSets.from_genesis(length, self.set_of_epoch(0))
        if length:
            schedule = self.schedule
            for end in range(1, tip + 1):
                if schedule.is_epoch_end(end):
                    epoch = schedule.epoch_of(end) + 2
                    sets.add(epoch, self.set_of_epoch(epoch), self.schedule_fixed_through(epoch))
        return sets

    def hand_over(self, height: int) -> tuple[ValidatorSet | None, EpochSchedule | None]:
        """What executing ``height`` hands to consensus: on an epoch's last block the set of
        the epoch after next and the schedule then in the state."""
        schedule = self.schedule
        if not self.scenario.epoch_length_blocks or not schedule.is_epoch_end(height):
            return None, None
        epoch = schedule.epoch_of(height) + 2
        return self.set_of_epoch(epoch), self.schedule_fixed_through(epoch)

    # ---- plumbing ---------------------------------------------------------------------------

    def _push(self, at: float, kind: int, node_id: int, epoch: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, kind, node_id, epoch, payload))

    def local_ms(self, node: SimNode) -> int:
        return GENESIS_TIME_MS + int(self.now) + node.skew_ms

    def fail(self, reason: str) -> None:
        raise SimulationFailure(self.report(reason, last=TRACE_LINES_IN_FAILURE), reason)

    def report(self, reason: str, last: int | None = None) -> str:
        lines = self.format_trace()
        if last is not None and len(lines) > last:
            lines = [f"... {len(lines) - last} earlier events ...", *lines[-last:]]
        head = (
            f"simulation failed: {reason}\n"
            f"seed={self.seed} scenario={self.scenario.name}\n"
            f"replay: python -m tests.sim --scenario {self.scenario.name} --seed {self.seed} "
            "--trace"
        )
        return head + "\n" + "\n".join(lines)

    def format_trace(self) -> list[str]:
        return [
            f"{t:11.3f} n{node:<2} {what:<8} {describe(obj)} -> "
            + ", ".join(describe(a) for a in actions)
            for t, node, what, obj, actions in self.trace
        ]

    # ---- running ----------------------------------------------------------------------------

    def start(self) -> None:
        for node in self.nodes:
            node.app = self._new_app()
            node.replica = self._replica_cls(node)(
                self.config, node.key, self.epoch_sets(0), self.scenario.check_payload
            )
            node.last_tick = self.local_ms(node)
            self._apply(node, "start", None, node.replica.start(node.last_tick))

    def _replica_cls(self, node: SimNode) -> type[Replica]:
        return self.scenario.node_classes.get(node.node_id, self.scenario.replica_cls)

    def _new_app(self) -> Any:
        factory = self.scenario.app_factory
        return factory() if factory is not None else KVApp()

    def run(self) -> Simulation:
        """Run the scenario; raise SimulationFailure on any checker failure."""
        with shared_signature_checks() if self.memos else contextlib.nullcontext():
            return self._run()

    def _run(self) -> Simulation:
        self.start()
        sc = self.scenario
        self.run_until(sc.fault_end_ms)
        healed_at = max(
            [sc.fault_end_ms]
            + [p.end_ms for p in sc.partitions]
            + [back for _, _, back in sc.crashes]
            + [end for _, end in sc.silent.values() if end != math.inf]
        )
        self.run_until(healed_at)
        self.healed_at_ms = healed_at
        if not sc.check_liveness:
            return self
        honest = [n for n in self.nodes if n.honest]
        target = max(n.committed_height for n in honest) + sc.min_new_blocks
        deadline = healed_at + sc.liveness_window_ms
        while not all(n.committed_height >= target for n in honest):
            if not self._heap or self._heap[0][0] > deadline:
                lagging = {
                    n.node_id: n.committed_height for n in honest if n.committed_height < target
                }
                self.fail(
                    f"liveness: {sc.liveness_window_ms:.0f} ms after the faults healed "
                    f"(t={healed_at:.0f}) honest nodes {lagging} have not reached height {target}"
                )
            self.step()
        self.resume_ms = self.now - healed_at
        self._check_recovery()
        return self

    def _check_recovery(self) -> None:
        window = self.scenario.recovery_window_ms
        if window is not None and (self.recovery_ms is None or self.recovery_ms > window):
            self.fail(
                f"recovery: the first commit after the faults healed (t={self.healed_at_ms:.0f})"
                f" came {self.recovery_ms} ms later, more than {window:.0f} ms"
            )

    def run_until(self, until: float) -> None:
        while self._heap and self._heap[0][0] <= until:
            self.step()
        self.now = max(self.now, until)

    def step(self) -> None:
        at, _, kind, node_id, epoch, payload = heapq.heappop(self._heap)
        self.now = at
        node = self.nodes[node_id]
        if kind == CRASH:
            if node.up and self.rng.random() < 0.5:
                node.crash_midway = True
            else:
                self._crash(node)
            return
        if kind == RESTART:
            if node.up and node.crash_midway:
                self._crash(node)
            self._restart(node)
            return
        if not node.up or epoch != node.epoch or node.replica is None:
            return
        if kind == EXECUTED:
            self._finish_execution(node)
            return
        if kind == DELIVER:
            sender_key, data = payload
            message = self._decode(data)
            event: Any = MessageReceived(sender_key, message)
        elif kind == TIMER:
            event = TimerFired(payload[0], payload[1])
        elif kind == CONNECT:
            event = PeerConnected(payload)
        else:
            event = PayloadAvailable(payload[0], payload[1], payload[2])
        self._handle(node, KIND_NAMES[kind], event)

    def _decode(self, data: bytes) -> Any:
        message = self._decoded.get(data) if self.memos else None
        if message is None:
            if len(self._decoded) >= DECODED_MEMO_MAX:
                self._decoded.clear()
            message = decode_message(data)
            self._decoded[data] = message
        return message

    def _handle(self, node: SimNode, what: str, event: Any) -> None:
        replica = node.replica
        assert replica is not None
        local = self.local_ms(node)
        if local != node.last_tick:
            node.last_tick = local
            self._guarded(node, "tick", ClockTick(local), replica.handle)
            if not node.up or node.replica is not replica:
                return
        self._guarded(node, what, event, replica.handle)

    def _guarded(
        self, node: SimNode, what: str, event: Any, fn: Callable[[Any], list[Any]]
    ) -> None:
        self.events_handled += 1
        try:
            actions = fn(event)
        except ConsensusInvariantError as exc:
            self.trace.append((self.now, node.node_id, what, event, []))
            if node.honest:
                self.fail(f"invariant check failed on honest node n{node.node_id}: {exc}")
            node.up = False  # a Byzantine node that broke itself just stops
            return
        self._apply(node, what, event, actions)

    # ---- carrying out actions ---------------------------------------------------------------

    def _apply(self, node: SimNode, what: str, event: Any, actions: list[Any]) -> None:
        crash_after: int | None = None
        if node.crash_midway and actions:
            # The process dies after carrying out only some of the actions: whatever was not
            # persisted by then is lost, whatever was sent is out.
            crash_after = self.rng.randrange(len(actions))
            actions = actions[:crash_after]
        self.trace.append((self.now, node.node_id, what, event, actions))
        sc = self.scenario
        for action in actions:
            if isinstance(action, PersistSafety):
                node.safety = action.safety
            elif isinstance(action, Send):
                self._check_vote_persisted(node, action.message)
                self._send(node, [action.to], action.message)
            elif isinstance(action, Broadcast):
                message = action.message
                if self._silenced(node, message):
                    continue
                if isinstance(message, Proposal) and node.node_id in sc.equivocators:
                    self._byzantine_proposal(node, message)
                    continue
                others = [k for k in self.by_key if k != node.key.public_key]
                self._send(node, others, message)
            elif isinstance(action, SetTimer):
                self._push(
                    self.now + action.delay_ms,
                    TIMER,
                    node.node_id,
                    node.epoch,
                    (action.kind, action.view),
                )
            elif isinstance(action, RequestPayload):
                payload = self._make_payload(action.height)
                self._push(
                    self.now + 0.05,
                    PAYLOAD,
                    node.node_id,
                    node.epoch,
                    (action.view, action.height, payload),
                )
            elif isinstance(action, Execute):
                node.exec_queue.append((action.block, action.commit_qc))
                if not node.executing:
                    self._schedule_execution(node)
            elif isinstance(action, Committed):
                self._on_committed(node, action)
            elif isinstance(action, ReportEvidence):
                self._on_evidence(node, action.evidence)
            elif isinstance(action, PeerFault):
                self._on_peer_fault(node, action)
        if crash_after is not None:
            self._crash(node)

    def _check_vote_persisted(self, node: SimNode, message: Any) -> None:
        """The replica's contract: a vote leaves only after the PersistSafety that promises not
        to vote again in its view and phase was carried out (else a crash between the two lets
        the restarted node vote twice)."""
        if not node.honest or not isinstance(message, Vote):
            return
        if node.safety is None or node.safety.voted_view(message.phase) < message.view:
            self.fail(
                f"persistence: n{node.node_id} sent a vote (phase {message.phase}, view "
                f"{message.view}) before persisting the promise not to vote again"
            )

    def _silenced(self, node: SimNode, message: Any) -> bool:
        window = self.scenario.silent.get(node.node_id)
        return (
            window is not None
            and isinstance(message, Proposal)
            and window[0] <= self.now < window[1]
        )

    def _send(self, node: SimNode, keys: list[bytes], message: Any) -> None:
        sc = self.scenario
        data = encode_message(message)
        lo, hi = sc.delay_ms
        faulty = self.now < sc.fault_end_ms  # loss and duplication stop when the faults heal
        for key in keys:
            for target in self.by_key.get(key, []):
                if target is node:
                    continue
                if any(p.separates(node.node_id, target.node_id, self.now) for p in sc.partitions):
                    continue
                if faulty and sc.drop and self.rng.random() < sc.drop:
                    continue
                payload = (node.key.public_key, data)
                self._push(
                    self.now + self.rng.uniform(lo, hi),
                    DELIVER,
                    target.node_id,
                    target.epoch,
                    payload,
                )
                if faulty and sc.duplicate and self.rng.random() < sc.duplicate:
                    self._push(
                        self.now + self.rng.uniform(lo, 3 * hi),
                        DELIVER,
                        target.node_id,
                        target.epoch,
                        payload,
                    )

    def _make_payload(self, height: int) -> tuple[bytes, ...]:
        factory = self.scenario.payload_factory
        if factory is not None:
            return factory(self.rng, height)
        count = self.rng.randrange(0, 4)
        return tuple(
            b"k%d=%d" % (self.rng.randrange(16), self.rng.randrange(1_000_000))
            for _ in range(count)
        )

    # ---- execution and storage ----------------------------------------------------------------

    def _schedule_execution(self, node: SimNode) -> None:
        node.executing = True
        lo, hi = self.scenario.exec_delay_ms
        self._push(self.now + self.rng.uniform(lo, hi), EXECUTED, node.node_id, node.epoch, None)

    def _finish_execution(self, node: SimNode) -> None:
        block, qc = node.exec_queue.pop(0)
        root = node.app.apply(block)
        # One atomic write: block, commit QC and the state after it.
        node.chain.append(CommittedBlock(block, qc))
        height = block.height
        if node.honest:
            seen = self.roots.get(height)
            if seen is None:
                self.roots[height] = (root, node.node_id)
            elif seen[0] != root:
                self.fail(
                    f"state roots differ at height {height}: n{seen[1]} {seen[0].hex()[:16]} "
                    f"vs n{node.node_id} {root.hex()[:16]}"
                )
        node.executing = False
        next_set, schedule = self.hand_over(height)
        executed = BlockExecuted(height, block.block_hash(), root, next_set, schedule)
        self._handle(node, "executed", executed)
        if node.up and node.exec_queue and not node.executing:
            self._schedule_execution(node)

    def _on_committed(self, node: SimNode, action: Committed) -> None:
        node.committed_height = max(node.committed_height, action.height)
        if not node.honest:
            return
        seen = self.commits.get(action.height)
        if seen is None:
            self.commits[action.height] = (action.block_hash, node.node_id)
            if self.healed_at_ms is not None and self.recovery_ms is None:
                self.recovery_ms = self.now - self.healed_at_ms
        elif seen[0] != action.block_hash:
            self.fail(
                f"safety: height {action.height} committed as {seen[0].hex()[:16]} by "
                f"n{seen[1]} and as {action.block_hash.hex()[:16]} by n{node.node_id}"
            )
        latency = self.local_ms(node) - action.timestamp_ms
        self.commit_latencies_ms.append(float(latency))

    def _on_evidence(self, node: SimNode, evidence: Any) -> None:
        self.evidence.append(evidence)
        if isinstance(evidence, VoteEquivocation):
            culprit = evidence.vote_a.voter
        else:
            assert isinstance(evidence, ProposalEquivocation)
            culprit = evidence.proposer
        index = self.key_index[culprit]
        if index not in self.scenario.byzantine:
            self.fail(f"n{node.node_id} reported evidence against honest validator {index}")

    def _on_peer_fault(self, node: SimNode, fault: PeerFault) -> None:
        """A node blamed a peer (the node would penalise and in the end ban it): never an
        honest one, whatever the network did to its messages."""
        index = self.key_index[fault.peer]
        if index not in self.scenario.byzantine:
            self.fail(f"n{node.node_id} reported {fault.reason} against honest validator {index}")

    # ---- crash and restart -------------------------------------------------------------------

    def _crash(self, node: SimNode) -> None:
        self.trace.append((self.now, node.node_id, "crash", None, []))
        node.crash_midway = False
        node.up = False
        node.epoch += 1
        node.replica = None
        node.exec_queue.clear()
        node.executing = False

    def _restart(self, node: SimNode) -> None:
        if node.up:
            return
        node.up = True
        node.epoch += 1
        tip_root = self.config.genesis_state_root if not node.chain else node.app.root
        sets = self.epoch_sets(node.chain[-1].block.height if node.chain else 0)
        if node.safety is None:
            node.replica = self._replica_cls(node)(
                self.config, node.key, sets, self.scenario.check_payload
            )
        else:
            node.replica = self._replica_cls(node).restore(
                self.config,
                node.key,
                sets,
                self.scenario.check_payload,
                node.safety,
                node.chain[-64:],
                tip_root,
            )
        node.committed_height = node.replica.committed_height
        node.last_tick = self.local_ms(node)
        self.trace.append((self.now, node.node_id, "restart", None, []))
        self._apply(node, "start", None, node.replica.start(node.last_tick))
        self._reconnect(node)

    def _reconnect(self, node: SimNode) -> None:
        """The restarted node's connections come up: both ends are told, after a delay."""
        lo, hi = self.scenario.delay_ms
        for other in self.nodes:
            if other is node or not other.up or other.key.public_key == node.key.public_key:
                continue
            at = self.now + self.rng.uniform(lo, hi)
            self._push(at, CONNECT, other.node_id, other.epoch, node.key.public_key)
            self._push(at, CONNECT, node.node_id, node.epoch, other.key.public_key)

    # ---- Byzantine proposers -------------------------------------------------------------------

    def _byzantine_proposal(self, node: SimNode, proposal: Proposal) -> None:
        """Send one proposal to half of the other validators and a conflicting block of the same
        view (another payload) to the other half and to one of the first half."""
        replica = node.replica
        assert replica is not None
        others = [k for k in self.by_key if k != node.key.public_key]
        self.rng.shuffle(others)
        half = len(others) // 2
        block = proposal.block
        if block.block_hash() == proposal.justify.block_hash:
            self._send(node, others, proposal)  # a re-proposal: nothing to vary
            return
        payload = (*block.payload, b"evil=%d" % proposal.view)
        header = dataclasses.replace(block.header, payload_root=payload_root(payload))
        variant = Block(header, payload)
        signature = sign_proposal(node.key, CHAIN_ID, proposal.view, variant.block_hash())
        alternative = Proposal(
            proposal.view, variant, proposal.justify, node.key.public_key, signature
        )
        self._send(node, others[:half], proposal)
        self._send(node, others[half:], alternative)
        # One peer of the first half gets both: without that overlap no honest node ever holds
        # two signed proposals of the view, and the evidence path would go untested.
        self._send(node, others[:1], alternative)


def describe(obj: Any) -> str:
    """One short line for an event, message or action in the trace."""
    if obj is None:
        return "-"
    name = type(obj).__name__
    if isinstance(obj, MessageReceived):
        return f"recv[{obj.sender.hex()[:6]}] {describe(obj.message)}"
    if isinstance(obj, Send):
        return f"send[{obj.to.hex()[:6]}] {describe(obj.message)}"
    if isinstance(obj, Broadcast):
        return f"bcast {describe(obj.message)}"
    if isinstance(obj, Proposal):
        b = obj.block.header
        tc = "" if obj.timeout_cert is None else f" tc=v{obj.timeout_cert.view}"
        return (
            f"Proposal(v={obj.view} h={b.height} {obj.block.block_hash().hex()[:8]} "
            f"justify=v{obj.justify.view}{tc})"
        )
    if isinstance(obj, QuorumCert):
        return f"QC(p{obj.phase} v={obj.view} h={obj.height} {obj.block_hash.hex()[:8]})"
    if hasattr(obj, "qc") and isinstance(obj.qc, QuorumCert):
        return f"{name}({describe(obj.qc)})"
    if name == "Vote":
        return (
            f"Vote(p{obj.phase} v={obj.view} h={obj.height} {obj.block_hash.hex()[:8]} "
            f"by {obj.voter.hex()[:6]})"
        )
    if name == "NewView":
        return f"NewView(v={obj.view} high={describe(obj.high_qc)} from {obj.sender.hex()[:6]})"
    if isinstance(obj, PersistSafety):
        s = obj.safety
        return (
            f"persist(v={s.view} voted={s.voted_prepare_view}/{s.voted_precommit_view}/"
            f"{s.voted_commit_view} lock=v{s.locked_qc.view})"
        )
    if isinstance(obj, Execute):
        return f"execute(h={obj.block.height})"
    if isinstance(obj, Committed):
        return f"committed(h={obj.height} {obj.block_hash.hex()[:8]} v={obj.view})"
    if isinstance(obj, SetTimer):
        return f"timer({TimerKind(obj.kind).name} v={obj.view} +{obj.delay_ms})"
    if isinstance(obj, TimerFired):
        return f"fired({TimerKind(obj.kind).name} v={obj.view})"
    if isinstance(obj, BlockExecuted):
        return f"executed(h={obj.height} root={obj.state_root.hex()[:8]})"
    if isinstance(obj, PayloadAvailable):
        return f"payload(v={obj.view} h={obj.height} txs={len(obj.payload)})"
    if isinstance(obj, RequestPayload):
        return f"request_payload(v={obj.view} h={obj.height})"
    if isinstance(obj, PeerConnected):
        return f"connected({obj.peer.hex()[:6]})"
    if isinstance(obj, ClockTick):
        return f"tick({obj.now_ms - GENESIS_TIME_MS})"
    if isinstance(obj, ReportEvidence):
        return f"EVIDENCE({type(obj.evidence).__name__})"
    if name == "SyncRequest":
        return f"SyncRequest(from={obj.from_height} n={obj.max_blocks})"
    if name == "SyncResponse":
        heights = [e.block.height for e in obj.blocks]
        return f"SyncResponse(h={heights[0]}..{heights[-1]})" if heights else "SyncResponse()"
    return name
