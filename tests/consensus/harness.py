"""An in-memory cluster driver for unit tests: messages are delivered in FIFO order at once,
payloads and executions happen immediately, timers fire only when a test fires them."""

from __future__ import annotations

from collections import deque
from typing import Any

from consensus import (
    Action,
    Block,
    BlockExecuted,
    Broadcast,
    ClockTick,
    ConsensusConfig,
    Execute,
    Message,
    MessageReceived,
    PayloadAvailable,
    PersistSafety,
    Replica,
    RequestPayload,
    SafetyData,
    Send,
    SetTimer,
    TimerFired,
    ValidatorSet,
)
from state_machine.crypto import Keypair, sha256
from tests.sim.app import GENESIS_ROOT, KVApp

CHAIN_ID = "perpbft-unit"
T0 = 1_700_000_000_000


def keys(n: int) -> list[Keypair]:
    return [Keypair(sha256(b"unit-validator-%d" % i)) for i in range(n)]


def config(**overrides: Any) -> ConsensusConfig:
    base: dict[str, Any] = dict(
        chain_id=CHAIN_ID,
        genesis_time_ms=T0,
        genesis_state_root=GENESIS_ROOT,
        block_interval_ms=500,
        view_timeout_base_ms=1_000,
        view_timeout_cap_ms=8_000,
        max_clock_drift_ms=1_000,
    )
    base.update(overrides)
    return ConsensusConfig(**base)


class Cluster:
    def __init__(self, n: int = 4, **cfg: Any) -> None:
        self.keys = keys(n)
        self.validators = ValidatorSet([(k.public_key, 1) for k in self.keys])
        self.config = config(**cfg)
        self.replicas = [Replica(self.config, k, self.validators) for k in self.keys]
        self.apps = [KVApp() for _ in range(n)]
        self.safety: list[SafetyData | None] = [None] * n
        self.chains: list[list[Any]] = [[] for _ in range(n)]
        self.now = T0
        self.queue: deque[tuple[int, bytes, Message]] = deque()
        self.timers: list[tuple[int, SetTimer]] = []
        self.log: list[tuple[int, Any, list[Action]]] = []
        self.down: set[int] = set()
        self.payload = (b"a=1", b"b=2")

    def index(self, key: bytes) -> list[int]:
        return [i for i, k in enumerate(self.keys) if k.public_key == key]

    def start(self) -> None:
        for i, r in enumerate(self.replicas):
            self.carry_out(i, "start", r.start(self.now))

    def handle(self, i: int, event: Any) -> list[Action]:
        replica = self.replicas[i]
        self.carry_out(i, "tick", replica.handle(ClockTick(self.now)))
        actions = replica.handle(event)
        self.carry_out(i, event, actions)
        return actions

    def carry_out(self, i: int, event: Any, actions: list[Action]) -> None:
        self.log.append((i, event, actions))
        me = self.keys[i].public_key
        for a in actions:
            if isinstance(a, PersistSafety):
                self.safety[i] = a.safety
            elif isinstance(a, Send):
                for j in self.index(a.to):
                    self.queue.append((j, me, a.message))
            elif isinstance(a, Broadcast):
                for j, k in enumerate(self.keys):
                    if k.public_key != me:
                        self.queue.append((j, me, a.message))
            elif isinstance(a, SetTimer):
                self.timers.append((i, a))
            elif isinstance(a, RequestPayload):
                self.handle(i, PayloadAvailable(a.view, a.height, self.payload))
            elif isinstance(a, Execute):
                self.execute(i, a.block, a)

    def execute(self, i: int, block: Block, action: Execute) -> None:
        root = self.apps[i].apply(block)
        self.chains[i].append(action)
        self.handle(i, BlockExecuted(block.height, block.block_hash(), root))

    def deliver_all(self, limit: int = 100_000) -> None:
        while self.queue and limit:
            limit -= 1
            j, sender, message = self.queue.popleft()
            if j in self.down:
                continue
            self.handle(j, MessageReceived(sender, message))

    def fire_propose_timers(self) -> None:
        """Advance the clock past every pending PROPOSE timer and fire them."""
        pending = [(i, t) for i, t in self.timers if t.kind.name == "PROPOSE"]
        self.timers = [(i, t) for i, t in self.timers if t.kind.name != "PROPOSE"]
        for i, t in pending:
            self.now += t.delay_ms
            if i not in self.down:
                self.handle(i, TimerFired(t.kind, t.view))

    def fire_view_timers(self) -> None:
        """Advance the clock by the longest pending view timeout and fire the timers of the
        views the replicas are still in."""
        pending = [(i, t) for i, t in self.timers if t.kind.name == "VIEW"]
        self.timers = [(i, t) for i, t in self.timers if t.kind.name != "VIEW"]
        if pending:
            self.now += max(t.delay_ms for _, t in pending)
        for i, t in pending:
            if i not in self.down and t.view == self.replicas[i].view:
                self.handle(i, TimerFired(t.kind, t.view))

    def run_until_height(self, height: int, rounds: int = 200) -> None:
        for _ in range(rounds):
            self.deliver_all()
            up = [r for i, r in enumerate(self.replicas) if i not in self.down]
            if all(r.committed_height >= height for r in up):
                return
            before = [r.committed_height for r in self.replicas]
            self.fire_propose_timers()
            self.deliver_all()
            if [r.committed_height for r in self.replicas] == before and not self.queue:
                self.fire_view_timers()
        raise AssertionError(f"cluster did not reach height {height}")

    def actions_of(self, i: int) -> list[Action]:
        return [a for j, _, acts in self.log if j == i for a in acts]
