"""Consensus core throughput: a simulated validator cluster, no faults, fixed message delay.

Runs ``--validators`` real :class:`consensus.Replica` instances (real Ed25519 signatures and
QC checks, every message encoded and strictly decoded) in a small discrete-event loop with a
fixed ``--delay-ms`` per message, until ``--blocks`` blocks are committed. Reports the events
handled per second of CPU spent inside ``Replica.handle`` (and for the whole loop, with message
encoding, decoding and the toy application) and the mean commit latency in simulated ms: from
the block's timestamp (when its leader proposed it) to its commit at each replica.

Every event fed to a replica counts: each message delivery, timer or payload event is preceded
by the ``ClockTick`` carrying the replica's local time, as the node does, so about half of the
counted events are clock ticks (``handled_events_per_s`` in the JSON counts only the others).

The loop is deliberately separate from the test simulator (``tests/sim``), which is test
tooling and is not installed with the package; this one has no faults and no randomness.
"""

from __future__ import annotations

import argparse
import heapq
import sys
import time
from typing import Any

from client.errors import CliError
from consensus import (
    BlockExecuted,
    Broadcast,
    ClockTick,
    Committed,
    ConsensusConfig,
    Execute,
    MessageReceived,
    PayloadAvailable,
    Replica,
    RequestPayload,
    Send,
    SetTimer,
    TimerFired,
    ValidatorSet,
    decode_message,
    encode_message,
)
from state_machine.crypto import Keypair, sha256

GENESIS_TIME_MS = 1_700_000_000_000
DELIVER, TIMER, PAYLOAD, EXECUTED = range(4)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--validators", type=int, default=4, help="cluster size")
    parser.add_argument("--blocks", type=int, default=300, help="blocks to commit")
    parser.add_argument("--delay-ms", type=float, default=0.5, help="one-way message delay")
    parser.add_argument("--block-interval-ms", type=int, default=500, help="proposal pacing")
    parser.add_argument("--txs", type=int, default=10, help="transactions per block")


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.validators < 1 or args.blocks < 1 or args.delay_ms < 0 or args.txs < 0:
        raise CliError("--validators and --blocks must be positive, --delay-ms and --txs >= 0")
    print(
        f"simulating {args.validators} validators, {args.blocks} blocks, "
        f"{args.delay_ms} ms message delay...",
        file=sys.stderr,
    )
    result = Bench(args.validators, args.delay_ms, args.block_interval_ms, args.txs).run(
        args.blocks
    )
    print(
        f"{result['events']} events (half clock ticks), {result['events_per_s']:,} events/s in "
        f"Replica.handle ({result['handled_events_per_s']:,}/s without ticks; "
        f"{result['loop_events_per_s']:,}/s for the whole loop); "
        f"commit latency mean {result['commit_latency_ms_mean']} ms simulated",
        file=sys.stderr,
    )
    return {"bench": "consensus", **result}


class Bench:
    def __init__(self, n: int, delay_ms: float, interval_ms: int, txs: int) -> None:
        self.keys = [Keypair(sha256(b"bench-validator-%d" % i)) for i in range(n)]
        self.validators = ValidatorSet([(k.public_key, 1) for k in self.keys])
        self.config = ConsensusConfig(
            chain_id="perpbft-bench",
            genesis_time_ms=GENESIS_TIME_MS,
            genesis_state_root=sha256(b"bench-genesis"),
            block_interval_ms=interval_ms,
        )
        self.replicas = [Replica(self.config, k, self.validators) for k in self.keys]
        self.index = {k.public_key: i for i, k in enumerate(self.keys)}
        self.roots = [self.config.genesis_state_root] * n
        self.delay_ms = delay_ms
        self.payload = tuple(b"tx-%d" % i for i in range(txs))
        self.now = 0.0
        self.heap: list[tuple[float, int, int, int, Any]] = []
        self.seq = 0
        self.events = 0
        self.handle_s = 0.0
        self.latencies: list[float] = []
        self.committed = [0] * n

    def push(self, delay: float, kind: int, node: int, payload: Any) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (self.now + delay, self.seq, kind, node, payload))

    def handle(self, i: int, event: Any) -> None:
        replica = self.replicas[i]
        now_ms = GENESIS_TIME_MS + int(self.now)
        t0 = time.process_time()
        actions = replica.handle(ClockTick(now_ms))
        actions += replica.handle(event)
        self.handle_s += time.process_time() - t0
        self.events += 2
        self.carry_out(i, actions)

    def carry_out(self, i: int, actions: list[Any]) -> None:
        me = self.keys[i].public_key
        for a in actions:
            if isinstance(a, Send):
                self.push(self.delay_ms, DELIVER, self.index[a.to], (me, encode_message(a.message)))
            elif isinstance(a, Broadcast):
                data = encode_message(a.message)
                for j in range(len(self.keys)):
                    if j != i:
                        self.push(self.delay_ms, DELIVER, j, (me, data))
            elif isinstance(a, SetTimer):
                self.push(a.delay_ms, TIMER, i, (a.kind, a.view))
            elif isinstance(a, RequestPayload):
                self.push(0.0, PAYLOAD, i, (a.view, a.height))
            elif isinstance(a, Execute):
                self.push(0.0, EXECUTED, i, a.block)
            elif isinstance(a, Committed):
                self.committed[i] = a.height
                commit_ms = GENESIS_TIME_MS + self.now
                self.latencies.append(commit_ms - a.timestamp_ms)

    def run(self, blocks: int) -> dict[str, Any]:
        wall0 = time.process_time()
        for i, r in enumerate(self.replicas):
            self.carry_out(i, r.start(GENESIS_TIME_MS))
        while self.heap and min(self.committed) < blocks:
            self.now, _, kind, i, payload = heapq.heappop(self.heap)
            if kind == DELIVER:
                sender, data = payload
                self.handle(i, MessageReceived(sender, decode_message(data)))
            elif kind == TIMER:
                self.handle(i, TimerFired(*payload))
            elif kind == PAYLOAD:
                self.handle(i, PayloadAvailable(payload[0], payload[1], self.payload))
            else:
                block = payload
                self.roots[i] = sha256(self.roots[i] + block.block_hash())
                self.handle(i, BlockExecuted(block.height, block.block_hash(), self.roots[i]))
        loop_s = time.process_time() - wall0
        if min(self.committed) < blocks:
            raise CliError("the cluster stopped committing (a bug: there are no faults here)")
        return {
            "events_per_s": round(self.events / self.handle_s),
            "handled_events_per_s": round(self.events / 2 / self.handle_s),
            "commit_latency_ms_mean": round(sum(self.latencies) / len(self.latencies), 3),
            "loop_events_per_s": round(self.events / loop_s),
            "events": self.events,
            "blocks": blocks,
            "validators": len(self.keys),
            "delay_ms": self.delay_ms,
            "simulated_s": round(self.now / 1000, 3),
        }
