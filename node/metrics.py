"""Prometheus metrics of one node, in a private registry served on its own port.

Naming follows Prometheus conventions: ``perpbft_`` prefix, base units (seconds, bytes),
``_total`` for counters. docs/OPERATIONS.md explains each metric and suggests alerts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from p2p.manager import PeerManagerStatistics

PeerStatsSource = Callable[[], PeerManagerStatistics | None]

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
            "Time from seeing a view's proposal to seeing its QC, by phase",
            ["phase"],
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
        self.api_connections = Gauge(
            "perpbft_api_connections", "Open HTTP API connections (WebSocket included)", registry=r
        )
        self.api_connections_refused = Counter(
            "perpbft_api_connections_refused",
            "HTTP API connections refused at accept, by reason",
            ["reason"],
            registry=r,
        )
        self.api_event_loop_lag = Gauge(
            "perpbft_api_event_loop_lag_seconds",
            "How late the event loop runs a periodic timer (smoothed over about a second)",
            registry=r,
        )
        self.websocket_subscribers = Gauge(
            "perpbft_websocket_subscribers", "Active WebSocket subscriptions", registry=r
        )
        self.websocket_connections = Gauge(
            "perpbft_websocket_connections", "Open WebSocket connections", registry=r
        )
        self.websocket_disconnects = Counter(
            "perpbft_websocket_disconnects",
            "WebSocket connections closed by the node, by reason",
            ["reason"],
            registry=r,
        )
        self.consensus_old_messages = Counter(
            "perpbft_consensus_old_messages",
            "Consensus messages from views well behind ours (dropped), by kind",
            ["kind"],
            registry=r,
        )
        self.evidence = Counter(
            "perpbft_equivocation_evidence", "Equivocation evidence observed", registry=r
        )

    def watch_peers(self, source: PeerStatsSource) -> None:
        """Export the transport's own counters, read from ``source`` at each scrape."""
        self.registry.register(PeerStatsCollector(source))

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format."""
        data: bytes = generate_latest(self.registry)
        return data


class PeerStatsCollector(Collector):
    """The p2p transport's counters (``PeerManager.statistics()``) as Prometheus counters.

    The transport counts what it refuses before the node ever sees a frame (garbage instead of
    TLS, unknown keys, oversize frames), so these are the only record of such abuse.
    """

    def __init__(self, source: PeerStatsSource) -> None:
        self._source = source

    def describe(self) -> list[Metric]:
        return []  # names are only known per scrape; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        stats = self._source()
        if stats is None:
            return
        yield _labelled(
            "perpbft_p2p_handshakes_failed",
            "Inbound or outbound connections that failed the TLS handshake, by reason",
            {"tls": stats.handshake_failures, "timeout": stats.handshake_timeouts},
        )
        yield _labelled(
            "perpbft_p2p_connections_rejected",
            "Handshaken connections refused, by reason",
            {
                "unknown_key": stats.rejected_unknown_key,
                "identity_mismatch": stats.rejected_identity_mismatch,
                "self": stats.rejected_self,
                "banned": stats.rejected_banned,
                "over_limit": stats.rejected_over_limit,
            },
        )
        yield _labelled(
            "perpbft_p2p_penalties",
            "Penalties counted against peers (node and transport), by reason",
            stats.penalties_by_reason,
        )
        yield CounterMetricFamily(
            "perpbft_p2p_oversize_frames", "Frames over the size limit", value=stats.oversize_frames
        )
        yield CounterMetricFamily("perpbft_p2p_bans", "Peers banned for abuse", value=stats.bans)
        yield CounterMetricFamily(
            "perpbft_p2p_frames_dropped",
            "Outbound frames dropped because a peer's queue was full",
            value=stats.frames_dropped,
        )
        yield CounterMetricFamily(
            "perpbft_p2p_tcp_accepted", "TCP connections accepted", value=stats.tcp_accepted
        )


def _labelled(name: str, doc: str, counts: dict[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=["reason"])
    for reason, count in sorted(counts.items()):
        family.add_metric([reason], count)
    return family
