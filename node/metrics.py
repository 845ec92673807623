"""Prometheus metrics of one node, in a private registry served on its own port.

Naming follows Prometheus conventions: ``perpbft_`` prefix, base units (seconds, bytes),
``_total`` for counters. docs/OPERATIONS.md explains each metric and suggests alerts.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
INTERVAL_BUCKETS_S = (0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 1.0, 1.5, 2.0, 5.0, 10.0)


class Metrics:
    """Every metric the node exports; one instance per node process."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.height = Gauge("perpbft_height", "Last committed block height", registry=r)
        self.view = Gauge("perpbft_view", "Current consensus view", registry=r)
        self.commits = Counter("perpbft_commits", "Blocks committed and executed", registry=r)
        self.view_changes = Counter(
            "perpbft_view_changes",
            "Views left without a commit, by reason",
            ["reason"],
            registry=r,
        )
        self.votes_sent = Counter("perpbft_votes_sent", "Votes signed and sent", registry=r)
        self.votes_received = Counter(
            "perpbft_votes_received", "Votes received from peers", registry=r
        )
        self.qc_formation_seconds = Histogram(
            "perpbft_qc_formation_seconds",
            "Time from proposal to quorum certificate",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.block_interval_seconds = Histogram(
            "perpbft_block_interval_seconds",
            "Time between consecutive commits",
            buckets=INTERVAL_BUCKETS_S,
            registry=r,
        )
        self.block_execution_seconds = Histogram(
            "perpbft_block_execution_seconds",
            "Time to apply a committed block",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.block_persist_seconds = Histogram(
            "perpbft_block_persist_seconds",
            "Time of the LMDB commit of a block",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.block_transactions = Histogram(
            "perpbft_block_transactions",
            "Transactions per committed block",
            buckets=(0, 1, 10, 100, 500, 1000, 2000, 5000, 10000),
            registry=r,
        )
        self.mempool_transactions = Gauge(
            "perpbft_mempool_transactions", "Transactions in the mempool", registry=r
        )
        self.mempool_bytes = Gauge("perpbft_mempool_bytes", "Bytes in the mempool", registry=r)
        self.tx_admitted = Counter(
            "perpbft_transactions_admitted", "Transactions admitted to the mempool", registry=r
        )
        self.tx_rejected = Counter(
            "perpbft_transactions_rejected",
            "Transactions rejected at admission, by reason",
            ["reason"],
            registry=r,
        )
        self.p2p_peers = Gauge("perpbft_p2p_peers", "Connected validator peers", registry=r)
        self.p2p_sent_bytes = Counter("perpbft_p2p_sent_bytes", "Bytes sent to peers", registry=r)
        self.p2p_received_bytes = Counter(
            "perpbft_p2p_received_bytes", "Bytes received from peers", registry=r
        )
        self.p2p_invalid_messages = Counter(
            "perpbft_p2p_invalid_messages",
            "Invalid messages from peers, by reason",
            ["reason"],
            registry=r,
        )
        self.api_requests = Counter(
            "perpbft_api_requests",
            "HTTP API requests, by route and status",
            ["route", "status"],
            registry=r,
        )
        self.websocket_subscribers = Gauge(
            "perpbft_websocket_subscribers", "Active WebSocket subscriptions", registry=r
        )
        self.evidence = Counter(
            "perpbft_equivocation_evidence", "Equivocation evidence observed", registry=r
        )

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format."""
        data: bytes = generate_latest(self.registry)
        return data
