"""Prometheus metrics of one node, in a private registry served on its own port.

Naming follows Prometheus conventions: ``perpbft_`` prefix, base units (seconds, bytes),
``_total`` for counters. docs/OPERATIONS.md explains each metric and suggests alerts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from node.version import build_info
from p2p.manager import PeerManagerStatistics

PeerStatsSource = Callable[[], PeerManagerStatistics | None]

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
INTERVAL_BUCKETS_S = (0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 1.0, 1.5, 2.0, 5.0, 10.0)


def register_process_metrics(r: CollectorRegistry) -> None:
    """The process and its platform beside the node's own metrics: ``process_*`` (CPU
    seconds, resident memory, open and maximum file descriptors, start time), ``python_gc_*``
    (collections per generation) and ``python_info``, plus ``perpbft_build_info`` (always 1,
    labelled with the version and the Python it runs on)."""
    ProcessCollector(registry=r)
    PlatformCollector(registry=r)
    GCCollector(registry=r)
    Info("perpbft_build", "The running perpbft release and its Python", registry=r).info(
        build_info()
    )


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
        self.signer_failures = Counter(
            "perpbft_signer_failures",
            "Consensus signatures the remote signer refused or could not give, by reason",
            ["reason"],
            registry=r,
        )
        for reason in ("unavailable", "refused"):
            self.signer_failures.labels(reason=reason)
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
        self.gossip_frames_sent = Counter(
            "perpbft_gossip_frames_sent",
            "Transaction gossip frames broadcast (each carries many transactions)",
            registry=r,
        )
        self.gossip_txs_received = Counter(
            "perpbft_gossip_transactions_received",
            "Transactions received in gossip frames, before the duplicate check",
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
        self.indexer_height = Gauge(
            "perpbft_indexer_height", "Last height the history indexer wrote", registry=r
        )
        self.indexer_events = Counter(
            "perpbft_indexer_events", "Events the history indexer wrote", registry=r
        )
        self.indexer_blocks = Counter(
            "perpbft_indexer_blocks", "Blocks the history indexer wrote", registry=r
        )
        self.indexer_busy_seconds = Counter(
            "perpbft_indexer_busy_seconds",
            "Wall time the history indexer spent writing blocks (events / this = its capacity)",
            registry=r,
        )
        self.indexer_cpu_seconds = Counter(
            "perpbft_indexer_cpu_seconds",
            "CPU time of the indexer's thread while writing blocks (in-process: what it adds to "
            "the node)",
            registry=r,
        )
        self.indexer_failures = Counter(
            "perpbft_indexer_failures",
            "History indexer steps that failed (database unreachable, ...); retried",
            registry=r,
        )
        self.consensus_old_messages = Counter(
            "perpbft_consensus_old_messages",
            "Consensus messages from views well behind ours (dropped), by kind",
            ["kind"],
            registry=r,
        )
        self.evidence = Counter(
            "perpbft_equivocation_evidence",
            "Equivocations proven (both signatures verified), once per validator and view",
            registry=r,
        )
        self.evidence_ignored = Counter(
            "perpbft_evidence_ignored",
            "Equivocation evidence not counted, by reason (duplicate, forged)",
            ["reason"],
            registry=r,
        )
        self.sync_requests = Counter(
            "perpbft_sync_requests",
            "Block sync requests from peers, by peer type and outcome (served, empty, refused)",
            ["peer_type", "outcome"],
            registry=r,
        )
        self.sync_served_bytes = Counter(
            "perpbft_sync_served_bytes",
            "Bytes of block sync answers sent, by peer type",
            ["peer_type"],
            registry=r,
        )
        self.sync_served_blocks = Counter(
            "perpbft_sync_served_blocks",
            "Blocks sent in block sync answers, by peer type",
            ["peer_type"],
            registry=r,
        )
        self._init_vault_metrics(r)
        register_process_metrics(r)
        self._init_follow_metrics(r)
        self._init_statesync_metrics(r)
        self._init_handover_metrics(r)
        self.disk_free_bytes = Gauge(
            "perpbft_disk_free_bytes",
            "Free bytes on the data dir's file system (sampled every few seconds)",
            registry=r,
        )
        self.state_audits = Counter(
            "perpbft_state_audits",
            "Whole-state conservation audits run, by result (ok, failed)",
            ["result"],
            registry=r,
        )
        self.state_audit_seconds = Histogram(
            "perpbft_state_audit_seconds",
            "Time of one whole-state audit",
            buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=r,
        )
        for result in ("ok", "failed"):  # exported as 0 before the first audit
            self.state_audits.labels(result=result)
        self._init_bridge_metrics(r)

    def _init_bridge_metrics(self, r: CollectorRegistry) -> None:
        """A validator's bridge duties (node/bridge/service.py)."""
        self.bridge_actions = Counter(
            "perpbft_bridge_actions",
            "Bridge actions sent, by kind (AttestDeposit, SignWithdrawal, ...)",
            ["kind"],
            registry=r,
        )
        self.bridge_rpc_errors = Counter(
            "perpbft_bridge_rpc_errors",
            "Polls of the EVM chain that failed (node unreachable, wrong chain, bad answer)",
            registry=r,
        )
        self.bridge_freezes = Counter(
            "perpbft_bridge_freezes",
            "Times this validator froze the bridge over a withdrawal the chain never made",
            registry=r,
        )
        self.bridge_confirmed_block = Gauge(
            "perpbft_bridge_confirmed_block",
            "The EVM block the bridge treats as confirmed (head minus confirmations)",
            registry=r,
        )

    def _init_follow_metrics(self, r: CollectorRegistry) -> None:
        """A full node following the chain (node/follower.py)."""
        self.follow_blocks = Counter(
            "perpbft_follow_blocks",
            "Committed blocks a full node verified and stored, by source (proposal, sync)",
            ["source"],
            registry=r,
        )
        self.follow_refused = Counter(
            "perpbft_follow_refused_blocks",
            "Committed blocks from peers refused by a full node, by reason",
            ["reason"],
            registry=r,
        )
        self.follow_requests = Counter(
            "perpbft_follow_sync_requests",
            "Block sync requests a full node sent, by peer type",
            ["peer_type"],
            registry=r,
        )
        self.follow_target_height = Gauge(
            "perpbft_follow_target_height",
            "Highest committed height a full node has heard of (its lag: this minus height)",
            registry=r,
        )

    def _init_statesync_metrics(self, r: CollectorRegistry) -> None:
        """State sync, restoring and serving (node/statesync.py)."""
        self.statesync_refused = Counter(
            "perpbft_statesync_refused",
            "Snapshot offers, chunks and snapshots refused while state-syncing, by reason",
            ["reason"],
            registry=r,
        )
        self.statesync_chunks = Counter(
            "perpbft_statesync_chunks",
            "Snapshot chunks verified while state-syncing, by source (peer, resumed)",
            ["source"],
            registry=r,
        )
        self.statesync_restored_height = Gauge(
            "perpbft_statesync_restored_height",
            "Height of the snapshot this node was state-synced from (0: none)",
            registry=r,
        )
        self.snapshots_taken = Counter(
            "perpbft_snapshots_taken", "Snapshots this node took for state sync", registry=r
        )
        self.snapshot_chunks_served = Counter(
            "perpbft_snapshot_chunks_served",
            "Snapshot chunks served to peers, by outcome (served, missing, refused)",
            ["outcome"],
            registry=r,
        )

    def _init_handover_metrics(self, r: CollectorRegistry) -> None:
        """Hand-over certificates kept and served (node/handover_run.py)."""
        self.handover_certificates = Gauge(
            "perpbft_handover_certificates",
            "Hand-over certificates (one per epoch) in the node's handovers.lmdb",
            registry=r,
        )
        self.handover_stored = Counter(
            "perpbft_handover_stored",
            "Hand-over certificates stored, by source (commit, backfill, peer)",
            ["source"],
            registry=r,
        )
        self.handover_unbuilt = Counter(
            "perpbft_handover_unbuilt",
            "Epochs whose hand-over certificate could not be built (the state was gone)",
            registry=r,
        )
        self.handover_served = Counter(
            "perpbft_handover_served",
            "Hand-over certificate requests from peers, by outcome (served, empty, refused)",
            ["outcome"],
            registry=r,
        )

    def _init_vault_metrics(self, r: CollectorRegistry) -> None:
        """The liquidation vault after each executed block (state_machine.queries.vault_summary)."""
        self.vault_equity = Gauge(
            "perpbft_vault_equity_usdc",
            "Liquidation vault equity: insurance fund + unrealised PnL - pending funding",
            registry=r,
        )
        self.vault_maintenance = Gauge(
            "perpbft_vault_maintenance_margin_usdc",
            "Maintenance margin of the vault's positions",
            registry=r,
        )
        self.vault_under_water = Gauge(
            "perpbft_vault_under_water",
            "1 if vault equity is below its maintenance margin",
            registry=r,
        )
        self.vault_loss_limit_equity = Gauge(
            "perpbft_vault_loss_limit_equity_usdc",
            "Equity below which the vault de-risks (its high-water mark less the loss limit)",
            registry=r,
        )
        self.vault_exposure = Gauge(
            "perpbft_vault_exposure_notional_usdc",
            "Signed notional at the mark of the vault's position, by market",
            ["market"],
            registry=r,
        )
        self._vault_markets: set[str] = set()
        self.market_state = Gauge(
            "perpbft_market_state",
            "Trading state by market: 0 active, 1 close-only, 2 halted, 3 delisted",
            ["market"],
            registry=r,
        )
        self.gov_open_proposals = Gauge(
            "perpbft_gov_open_proposals",
            "Governance proposals voting or waiting for their execution height",
            registry=r,
        )

    def watch_peers(self, source: PeerStatsSource) -> None:
        """Export the transport's own counters, read from ``source`` at each scrape."""
        self.registry.register(PeerStatsCollector(source))

    def observe_vault(self, summary: dict[str, Any], symbols: dict[int, str]) -> None:
        """Set the vault gauges from ``vault_summary`` (atoms); a market the vault left reads 0."""
        usdc = 1e6
        self.vault_equity.set(summary["equity_atoms"] / usdc)
        self.vault_maintenance.set(summary["maintenance_atoms"] / usdc)
        self.vault_under_water.set(1 if summary["under_water"] else 0)
        self.vault_loss_limit_equity.set(summary["loss_limit_equity_atoms"] / usdc)
        held: set[str] = set()
        for m in summary["markets"]:
            symbol = symbols.get(m["market_id"], str(m["market_id"]))
            sign = 1 if m["size_lots"] > 0 else -1
            self.vault_exposure.labels(symbol).set(sign * m["notional_atoms"] / usdc)
            held.add(symbol)
        for symbol in self._vault_markets - held:
            self.vault_exposure.labels(symbol).set(0)
        self._vault_markets |= held

    def observe_governance(self, summary: dict[str, Any]) -> None:
        """Set the market-state and proposal gauges from ``governance_summary``."""
        for symbol, state in summary["market_states"]:
            self.market_state.labels(symbol).set(state)
        self.gov_open_proposals.set(summary["open_proposals"])

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
            {
                "tls": stats.handshake_failures,
                "timeout": stats.handshake_timeouts,
                "silent": stats.handshake_silent_timeouts,
            },
        )
        yield _labelled(
            "perpbft_p2p_handshakes_refused",
            "Inbound connections closed at accept for lack of a pending-handshake slot, by cap",
            {
                "per_host": stats.handshakes_refused_per_host,
                "public_full": stats.handshakes_refused_public_full,
                "reserved_full": stats.handshakes_refused_reserved_full,
            },
        )
        yield CounterMetricFamily(
            "perpbft_p2p_handshakes_evicted",
            "Silent inbound connections closed to give their slot to a newer one",
            value=stats.handshakes_evicted,
        )
        pending = GaugeMetricFamily(
            "perpbft_p2p_handshakes_pending",
            "Inbound connections waiting for their handshake, by slot pool",
            labels=["pool"],
        )
        reserved = stats.handshakes_pending_reserved
        pending.add_metric(["public"], stats.handshakes_pending - reserved)
        pending.add_metric(["reserved"], reserved)
        yield pending
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
        yield from _connection_metrics(stats)


def _connection_metrics(stats: PeerManagerStatistics) -> Iterator[Metric]:
    """Connection churn and queue depth: the counters an operator alerts on when links flap."""
    # Two processes running one validator key (a failover left on) each keep reconnecting
    # and replacing the other's connection: this counter climbs steadily on every peer.
    yield CounterMetricFamily(
        "perpbft_p2p_duplicate_connections_closed",
        "Connections closed because another connection of the same peer key was kept",
        value=stats.duplicates_closed,
    )
    yield _labelled(
        "perpbft_p2p_disconnects",
        "Peer connections closed by this node for a timeout, by reason",
        {"idle_timeout": stats.idle_timeouts, "write_timeout": stats.write_timeouts},
    )
    yield CounterMetricFamily(
        "perpbft_p2p_dial_attempts", "Outbound connection attempts", value=stats.dial_attempts
    )
    yield CounterMetricFamily(
        "perpbft_p2p_dial_failures",
        "Outbound connection attempts that failed before the handshake",
        value=stats.dial_failures,
    )
    yield CounterMetricFamily(
        "perpbft_p2p_accept_errors",
        "Errors accepting inbound TCP connections (e.g. out of file descriptors)",
        value=stats.accept_errors,
    )
    yield GaugeMetricFamily(
        "perpbft_p2p_inbound_queue_frames",
        "Frames from peers waiting for the node",
        value=stats.inbound_queue_frames,
    )
    yield GaugeMetricFamily(
        "perpbft_p2p_inbound_queue_bytes",
        "Bytes from peers waiting for the node",
        value=stats.inbound_queue_bytes,
    )


def _labelled(name: str, doc: str, counts: dict[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=["reason"])
    for reason, count in sorted(counts.items()):
        family.add_metric([reason], count)
    return family
