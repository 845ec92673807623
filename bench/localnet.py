"""End to end: a fresh localnet under load; committed throughput and submit-to-commit latency.

Starts a fresh N-validator localnet (no oracle feeders, no demo bots) whose genesis funds
``--accounts`` load accounts, pre-signs every transaction (single orders, or ``--batch K``
orders per transaction) so the generator spends its CPU on sending, then offers them at
``--rate`` transactions per second (``max``: as fast as the nodes admit them, keeping at most
``--inflight-max`` uncommitted) for ``--duration`` seconds, spread round robin over every
validator's API on keep-alive connections.

Latency is submit-to-committed: a transaction's clock starts when its request is written and
stops when node0's WebSocket announces the block that holds it (the block's transaction ids
come from ``GET /v1/blocks/{h}``). Committed throughput counts our transactions in blocks from
the first submission to the last commit (the drain after the offer ends is included, so an
overloaded run cannot look faster than it is). The last line is one JSON object.

The generator is a trio program with a minimal HTTP/1.1 client (request bytes prepared once,
keep-alive, ``Content-Length`` replies only: enough for our own node's API, and much cheaper
than a general client on a machine where the nodes need the CPU). Connections are spread over
several loopback source addresses, as many real clients would be, so the API's per-address
rate limit does not cap the offered load.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgpack
import trio
from trio_websocket import open_websocket_url

from client.errors import CliError
from localnet.net import Localnet, LocalnetError, UpOptions
from state_machine.crypto import Keypair, sha256
from state_machine.tx import KIND_LIMIT, TIF_GTC, Action, PlaceOrder, sign_transaction

MARKETS = (2, 3)  # BTC-PERP, ETH-PERP
MID_TICKS = {2: 6_000_000, 3: 300_000}
ORDER_LOTS = {2: 10, 3: 10}  # 0.001 BTC, 0.01 ETH: above the minimum notional
SPREAD_PPM = 5_000  # prices uniform in mid +- 0.5 %: about half the orders cross
CONNECTIONS_PER_NODE = 24
SOURCE_ADDRESSES = 16
DRAIN_S = 15.0
MAX_PRESIGN = 400_000
BLOCK_FETCH_ATTEMPTS = 30


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument("--rate", default="1000", help="offered tx/s, or 'max'")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of offered load")
    parser.add_argument("--batch", type=int, default=1, help="orders per transaction (1..64)")
    parser.add_argument("--block-ms", type=int, default=500)
    parser.add_argument("--accounts", type=int, default=256, help="signing load accounts")
    parser.add_argument(
        "--submit-batch",
        type=int,
        default=1,
        help="transactions per HTTP request (>1: POST /v1/txs/batch, as a gateway would)",
    )
    parser.add_argument(
        "--inflight-max",
        type=int,
        default=None,
        help="with --rate max: most uncommitted transactions (default 20,000 orders' worth)",
    )
    parser.add_argument(
        "--full-nodes",
        type=int,
        default=0,
        help="add N full nodes and send the load to them instead of the validators; the "
        "result adds the first full node's lag behind node0",
    )
    parser.add_argument("--home", type=Path, default=None, help="localnet home (default: temp)")
    parser.add_argument("--keep", action="store_true", help="leave the localnet running")
    parser.add_argument("--base-port", type=int, default=None)
    parser.add_argument(
        "--attach",
        type=Path,
        default=None,
        help="load a running localnet left by an earlier --keep run (for profiling a node)",
    )


def load_keys(count: int) -> list[Keypair]:
    return [Keypair(sha256(f"perpbft-bench/{i}".encode())) for i in range(count)]


def presign(
    keys: list[Keypair], chain_id: str, count: int, batch: int, seed: int = 7
) -> list[tuple[bytes, bytes]]:
    """``count`` signed transactions as (tx id, wire bytes), accounts round robin."""
    rng = random.Random(seed)
    nonce_base = int(time.time() * 1000)
    out = []
    for i in range(count):
        key = keys[i % len(keys)]
        nonce = nonce_base + i // len(keys)
        orders: list[Action] = []
        for _ in range(batch):
            market = rng.choice(MARKETS)
            mid = MID_TICKS[market]
            offset = rng.randint(-SPREAD_PPM, SPREAD_PPM) * mid // 1_000_000
            is_buy = rng.random() < 0.5
            orders.append(
                PlaceOrder(market, is_buy, KIND_LIMIT, TIF_GTC, mid + offset, ORDER_LOTS[market])
            )
        tx = sign_transaction(key, chain_id, nonce, orders)
        out.append((tx.tx_id(), tx.to_wire()))
    return out


class Stats:
    def __init__(self) -> None:
        self.submit_time: dict[bytes, float] = {}
        self.latencies: list[float] = []
        self.committed = 0
        self.admitted = 0
        self.refused: dict[str, int] = {}
        self.sent = 0
        self.first_submit = math.inf
        self.last_commit = 0.0
        self.send_done = False
        self.node_cpu_s: list[float | None] = []  # per node, in layout order
        self.node_roles: list[str] = []
        self.block_seen_s: dict[str, dict[int, float]] = {}  # api -> height -> first seen

    @property
    def inflight(self) -> int:
        return self.admitted - self.committed


def request_bytes(host: str, raw: bytes, path: str = "/v1/txs") -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/msgpack\r\n"
        f"Content-Length: {len(raw)}\r\n\r\n"
    )
    return head.encode("ascii") + raw


def batch_request_bytes(host: str, raws: list[bytes]) -> bytes:
    return request_bytes(host, msgpack.packb(raws, use_bin_type=True), "/v1/txs/batch")


class Conn:
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = bytearray()
        self.closing = False  # the node said "Connection: close" (e.g. shedding load)

    async def request(self, data: bytes) -> tuple[int, bytes]:
        await self.stream.send_all(data)
        while b"\r\n\r\n" not in self.buf:
            await self._fill()
        head_end = self.buf.index(b"\r\n\r\n") + 4
        head = bytes(self.buf[:head_end]).decode("latin-1")
        status = int(head.split(" ", 2)[1])
        length = 0
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
            elif name.strip().lower() == "connection" and value.strip().lower() == "close":
                self.closing = True
        while len(self.buf) < head_end + length:
            await self._fill()
        body = bytes(self.buf[head_end : head_end + length])
        del self.buf[: head_end + length]
        return status, body

    async def _fill(self) -> None:
        chunk = await self.stream.receive_some(65536)
        if not chunk:
            raise ConnectionError("the node closed the connection")
        self.buf += chunk


async def open_conn(port: int, source_index: int) -> Conn:
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    await sock.bind((f"127.0.0.{2 + source_index % SOURCE_ADDRESSES}", 0))
    await sock.connect(("127.0.0.1", port))
    sock.setsockopt(trio.socket.IPPROTO_TCP, trio.socket.TCP_NODELAY, 1)
    return Conn(trio.SocketStream(sock))


class LoadGenerator:
    def __init__(
        self, ports: list[int], txs: list[tuple[bytes, bytes]], rate: float | None, args: Any
    ) -> None:
        self.ports = ports
        self.txs = txs
        self.rate = rate  # None: as fast as admitted
        self.args = args
        self.stats = Stats()
        self.next_index = 0
        self.start = 0.0

    def take(self, count: int) -> range | None:
        if self.next_index >= len(self.txs):
            return None
        start = self.next_index
        self.next_index = min(len(self.txs), start + count)
        return range(start, self.next_index)

    async def pace(self, i: int) -> None:
        if self.rate is not None:
            due = self.start + i / self.rate
            now = trio.current_time()
            if due > now:
                await trio.sleep(due - now)
        else:
            while self.stats.inflight >= self.args.inflight_max:
                await trio.sleep(0.005)

    async def sender(self, port: int, source_index: int) -> None:
        conn = await open_conn(port, source_index)
        host = f"127.0.0.1:{port}"
        stats = self.stats
        deadline = self.start + self.args.duration
        per_request = self.args.submit_batch
        while True:
            indices = self.take(per_request)
            if indices is None:
                return
            await self.pace(indices[-1])
            if trio.current_time() > deadline:
                return
            batch = [self.txs[i] for i in indices]
            t0 = time.monotonic()
            stats.first_submit = min(stats.first_submit, t0)
            for tx_id, _ in batch:
                stats.submit_time[tx_id] = t0
            stats.sent += len(batch)
            if conn.closing:
                await conn.stream.aclose()
                conn = await open_conn(port, source_index)
            try:
                if per_request == 1:
                    status, body = await conn.request(request_bytes(host, batch[0][1]))
                    codes = ["ok" if status in (200, 202) else _error_code(body, status)]
                else:
                    data = batch_request_bytes(host, [r for _, r in batch])
                    status, body = await conn.request(data)
                    codes = _batch_codes(body, status, len(batch))
            except (ConnectionError, trio.BrokenResourceError, OSError):
                # The node closed the connection (an overloaded node answers 503 and closes
                # it before reading the body): counted as refused; a new connection goes on.
                codes = ["connection_closed"] * len(batch)
                conn.closing = True
            for (tx_id, _), code in zip(batch, codes, strict=True):
                if code == "ok":
                    stats.admitted += 1
                else:
                    stats.submit_time.pop(tx_id, None)
                    stats.refused[code] = stats.refused.get(code, 0) + 1

    async def watch_blocks(self, api: str, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        ws_url = api.replace("http://", "ws://") + "/v1/ws"
        async with (
            httpx.AsyncClient(base_url=api, timeout=30.0) as http,
            open_websocket_url(ws_url, max_message_size=16 * 1024 * 1024) as ws,
            trio.open_nursery() as nursery,
        ):
            await ws.send_message(json.dumps({"op": "subscribe", "id": 1, "channel": "blocks"}))
            task_status.started()
            while True:
                message = json.loads(await ws.get_message())
                if message.get("type") != "update":
                    continue
                data = message["data"]
                if data.get("txs"):
                    seen_at = time.monotonic()
                    nursery.start_soon(self.account_block, http, int(data["height"]), seen_at)

    async def watch_heights(self, api: str, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """When each block was first announced by ``api``'s WebSocket (follower lag)."""
        seen = self.stats.block_seen_s.setdefault(api, {})
        ws_url = api.replace("http://", "ws://") + "/v1/ws"
        async with open_websocket_url(ws_url, max_message_size=16 * 1024 * 1024) as ws:
            await ws.send_message(json.dumps({"op": "subscribe", "id": 1, "channel": "blocks"}))
            task_status.started()
            while True:
                message = json.loads(await ws.get_message())
                if message.get("type") == "update":
                    seen.setdefault(int(message["data"]["height"]), time.monotonic())

    async def account_block(self, http: httpx.AsyncClient, height: int, seen_at: float) -> None:
        body = await self.block_json(http, height)
        stats = self.stats
        for tx_id in body.get("tx_ids", []):
            t0 = stats.submit_time.pop(bytes.fromhex(tx_id), None)
            if t0 is None:
                continue
            stats.latencies.append(seen_at - t0)
            stats.committed += 1
            stats.last_commit = max(stats.last_commit, seen_at)

    async def block_json(self, http: httpx.AsyncClient, height: int) -> dict[str, Any]:
        """``GET /v1/blocks/{height}``, asked again while the node sheds load (503) or the
        request fails: a block read once and refused was never counted, and with ``--rate
        max`` its transactions stayed "in flight" for ever, so the generator stopped."""
        for attempt in range(BLOCK_FETCH_ATTEMPTS):
            try:
                response = await http.get(f"/v1/blocks/{height}")
            except httpx.HTTPError:
                response = None
            if response is not None and response.status_code == 200:
                body: dict[str, Any] = response.json()
                return body
            await trio.sleep(min(2.0, 0.1 * 2**attempt))
        raise RuntimeError(f"block {height} could not be read from the node")

    async def progress(self) -> None:
        last = 0
        while True:
            await trio.sleep(1.0)
            s = self.stats
            print(
                f"  t={trio.current_time() - self.start:5.1f}s sent {s.sent} "
                f"(+{s.sent - last}/s) admitted {s.admitted} committed {s.committed} "
                f"refused {sum(s.refused.values())}",
                file=sys.stderr,
                flush=True,
            )
            last = s.sent

    async def run(self, apis: list[str], lag_apis: list[str]) -> Stats:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.watch_blocks, apis[0])
            for api in lag_apis:
                await nursery.start(self.watch_heights, api)
            nursery.start_soon(self.progress)
            self.start = trio.current_time()
            async with trio.open_nursery() as senders:
                for c in range(CONNECTIONS_PER_NODE):
                    for n, port in enumerate(self.ports):
                        senders.start_soon(self.sender, port, c * len(self.ports) + n)
            self.stats.send_done = True
            with trio.move_on_after(DRAIN_S):
                while self.stats.inflight > 0:
                    await trio.sleep(0.1)
            await trio.sleep(0.3)  # let the last block's lookup finish
            nursery.cancel_scope.cancel()
        return self.stats


def _batch_codes(body: bytes, status: int, count: int) -> list[str]:
    if status != 200:
        return [_error_code(body, status)] * count
    results = json.loads(body)["results"]
    return ["ok" if r["status"] == "pending" else str(r.get("code")) for r in results]


def _error_code(body: bytes, status: int) -> str:
    try:
        return str(json.loads(body).get("code", status))
    except (ValueError, AttributeError):
        return str(status)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return round(ordered[k], 4)


# Called once the localnet is up, before the load: another benchmark (bench indexer) starts
# what it measures beside the load there.
OnUp = Callable[[Localnet], None] | None


def checked_load(args: argparse.Namespace) -> tuple[float | None, int]:
    """The offered rate (None: max) and how many transactions to pre-sign, from checked
    arguments."""
    rate = None if args.rate == "max" else _positive_float(args.rate, "--rate")
    if not 1 <= args.batch <= 64:
        raise CliError("--batch must be 1..64")
    if not 1 <= args.submit_batch <= 1000:
        raise CliError("--submit-batch must be 1..1000")
    if args.inflight_max is None:
        # A few blocks' worth of orders: enough to saturate, without queueing so much that
        # admitting the backlog starves consensus.
        args.inflight_max = max(100, 20_000 // args.batch)
    if args.duration <= 0 or args.accounts < 1:
        raise CliError("--duration and --accounts must be positive")
    max_tx_per_s = 8_000 if args.batch == 1 else 2_000  # what --rate max may use up
    count = int((rate or max_tx_per_s) * args.duration * 1.05) + 1
    if count > MAX_PRESIGN:
        raise CliError(f"that is over {MAX_PRESIGN} transactions; lower --rate or --duration")
    return rate, count


def run(args: argparse.Namespace, on_up: OnUp = None) -> dict[str, Any]:
    rate, count = checked_load(args)
    temp = args.home is None and args.attach is None
    if args.attach is not None:
        home = args.attach
    else:
        home = Path(tempfile.mkdtemp(prefix="perpbft-bench-")) if temp else args.home
    net = Localnet(home)
    keys = load_keys(args.accounts)
    base_port = args.base_port or _free_base_port(args.validators + args.full_nodes)
    opts = UpOptions(
        validators=args.validators,
        block_ms=args.block_ms,
        base_port=base_port,
        demo_accounts=1,
        fresh=True,
        oracle=False,
        traffic=False,
        extra_funded=[k.public_key for k in keys],
        full_nodes=args.full_nodes,
        bridge=False,  # no EVM chain taking CPU from the nodes being measured
    )
    if args.attach is not None:
        args.keep = True  # never stop a localnet this run did not start
    try:
        if args.attach is None:
            print(
                f"starting a fresh {args.validators}-validator localnet in {home}", file=sys.stderr
            )
            net.up(opts, lambda what, _: print(f"  {what}", file=sys.stderr, flush=True))
        chain_id = net.layout()["chain_id"]
        if on_up is not None:
            on_up(net)
        print(f"pre-signing {count} transactions of {args.batch} orders", file=sys.stderr)
        txs = presign(keys, chain_id, count, args.batch)
        urls = net.api_urls()
        # The load goes to the full nodes if there are any, else to the validators.
        targets = urls[args.validators :] or urls
        ports = [int(url.rsplit(":", 1)[1]) for url in targets]
        lag_apis = [urls[0], urls[args.validators]] if args.full_nodes else []
        offered = "max" if rate is None else f"{rate:g} tx/s"
        print(f"offering {offered} for {args.duration:g} s", file=sys.stderr, flush=True)
        gen = LoadGenerator(ports, txs, rate, args)
        names = net.node_names()
        cpu_before = node_cpu_s(net, names)
        stats = trio.run(gen.run, urls, lag_apis)
        stats.node_cpu_s = cpu_used_s(cpu_before, node_cpu_s(net, names))
        stats.node_roles = [
            "validator" if i < args.validators else "full" for i in range(len(names))
        ]
        rss = [net.procs.peak_rss_mb(name) for name in net.node_names()]
    except LocalnetError as exc:
        raise CliError(str(exc)) from None
    finally:
        if not args.keep:
            net.down()
            if temp:
                shutil.rmtree(home, ignore_errors=True)
    return result(args, rate, stats, rss)


def result(
    args: argparse.Namespace, rate: float | None, s: Stats, rss: list[Any]
) -> dict[str, Any]:
    span_s = max(1e-9, s.last_commit - s.first_submit) if s.committed else math.inf
    committed_tx_per_s = s.committed / span_s if s.committed else 0.0
    if s.refused:
        print(f"refused at admission: {s.refused}", file=sys.stderr)
    cpu = cpu_per_tx(s)
    print(
        f"validator CPU per committed tx (us): {cpu['validator_cpu_us_per_committed_tx']}",
        file=sys.stderr,
    )
    return {
        "bench": "localnet",
        "validators": args.validators,
        "batch": args.batch,
        "txs_per_request": args.submit_batch,
        "offered_tx_per_s": "max" if rate is None else rate,
        "sent_tx_per_s": round(s.sent / args.duration, 1),
        "committed_tx_per_s": round(committed_tx_per_s, 1),
        "committed_orders_per_s": round(committed_tx_per_s * args.batch, 1),
        "committed_txs": s.committed,
        "not_committed_txs": s.admitted - s.committed,
        "refused_txs": sum(s.refused.values()),
        "latency_s": {
            "p50": percentile(s.latencies, 0.50),
            "p90": percentile(s.latencies, 0.90),
            "p99": percentile(s.latencies, 0.99),
        },
        "block_ms": args.block_ms,
        "node_peak_rss_mb": [None if r is None else round(r, 1) for r in rss],
        **cpu,
        "load_average_1m": round(os.getloadavg()[0], 1),
        "full_nodes": args.full_nodes,
        "follower_lag_s": follower_lag(s),
    }


def follower_lag(s: Stats) -> dict[str, Any] | None:
    """How long after node0 the first full node announced each block (both seen)."""
    if len(s.block_seen_s) != 2:
        return None
    leader, follower = s.block_seen_s.values()
    lags = [follower[h] - t for h, t in leader.items() if h in follower]
    return {
        "blocks": len(lags),
        "p50": percentile(lags, 0.50),
        "p99": percentile(lags, 0.99),
        "max": max(lags) if lags else None,
    }


def node_cpu_s(net: Localnet, names: list[str]) -> list[float | None]:
    """CPU seconds (user + system, all threads) each node process has used so far, from its
    own /proc/<pid>/stat: a figure that, unlike wall-clock rates, does not depend on what else
    the machine is running. None for a node that is not running."""
    return [net.procs.cpu_seconds(name) for name in names]


def cpu_used_s(before: list[float | None], after: list[float | None]) -> list[float | None]:
    """Per node, the CPU seconds used between the two readings (None if either is missing:
    a node that stopped or restarted during the run has no meaningful difference)."""
    return [
        None if b is None or a is None or a < b else a - b
        for b, a in zip(before, after, strict=True)
    ]


def cpu_per_tx(s: Stats) -> dict[str, Any]:
    """CPU per committed transaction of each validator separately and of all validators
    together (full nodes, when there are any, are listed beside them, not in the total)."""
    by_role: dict[str, list[float | None]] = {"validator": [], "full": []}
    for cpu, role in zip(s.node_cpu_s, s.node_roles, strict=True):
        by_role[role].append(cpu)
    validators = by_role["validator"]
    total = None if None in validators else sum(c or 0.0 for c in validators)
    total_us = _us_per_tx(total, s.committed)
    return {
        "node_cpu_ms_per_committed_tx": None if total_us is None else round(total_us / 1000, 3),
        "validator_cpu_us_per_committed_tx": [_us_per_tx(c, s.committed) for c in validators],
        "full_node_cpu_us_per_committed_tx": [_us_per_tx(c, s.committed) for c in by_role["full"]],
    }


def _us_per_tx(cpu_s: float | None, committed: int) -> float | None:
    if cpu_s is None or not committed:
        return None
    return round(1_000_000 * cpu_s / committed, 1)


def _positive_float(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CliError(f"{what} must be a number or 'max'") from None
    if not value > 0:
        raise CliError(f"{what} must be positive")
    return value


def _free_base_port(validators: int) -> int:
    import socket

    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20_000, 60_000, 10)
        ok = True
        for port in range(base, base + 10 * validators):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise CliError("no free block of ports found")
