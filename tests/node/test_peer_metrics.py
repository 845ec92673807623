"""The transport's connection counters reach /metrics: two processes running one validator
key (a misconfigured failover) make a peer's connection for that key flap, and
``perpbft_p2p_duplicate_connections_closed_total`` is what shows it (docs/OPERATIONS.md).

Real peer managers over TLS on 127.0.0.1; the twins are two managers with one seed, as two
processes with one key file would be.
"""

from __future__ import annotations

import trio
from prometheus_client.parser import text_string_to_metric_families

from node.metrics import Metrics
from p2p import PeerManager
from tests.p2p.test_peer_manager import TEST_TIMEOUT_S, address, make_nodes, manager

DUPLICATES = "perpbft_p2p_duplicate_connections_closed_total"


def sample(metrics: Metrics, name: str) -> float:
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            if s.name == name:
                return float(s.value)
    raise AssertionError(f"{name} is not exported")


async def test_every_connection_counter_is_exported_before_any_traffic() -> None:
    a, b = make_nodes(2)
    metrics = Metrics()
    m = manager(a, [a, b])
    metrics.watch_peers(m.statistics)
    assert sample(metrics, DUPLICATES) == 0
    for name in (
        "perpbft_p2p_dial_attempts_total",
        "perpbft_p2p_dial_failures_total",
        "perpbft_p2p_accept_errors_total",
        "perpbft_p2p_handshakes_pending",
        "perpbft_p2p_inbound_queue_frames",
        "perpbft_p2p_inbound_queue_bytes",
    ):
        assert sample(metrics, name) == 0


async def test_two_processes_with_one_key_show_as_duplicate_connections() -> None:
    a, twin = make_nodes(2)
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            ma = manager(a, [a, twin])
            metrics = Metrics()
            metrics.watch_peers(ma.statistics)
            port_a = await nursery.start(ma.run)
            first = manager(twin, [a, twin])
            await nursery.start(first.run)
            first.add_peer(address(a, port_a))
            await ma.wait_connected(twin.key)
            assert sample(metrics, DUPLICATES) == 0  # one process per key: no churn

            second: PeerManager = manager(twin, [a, twin])
            await nursery.start(second.run)
            second.add_peer(address(a, port_a))
            await ma.wait_statistics(lambda s: s.duplicates_closed >= 1)
            seen = sample(metrics, DUPLICATES)
            assert seen >= 1
            # Each twin redials when the other replaces it: the counter keeps climbing, which
            # is what the alert on its rate catches.
            await ma.wait_statistics(lambda s: s.duplicates_closed >= seen + 2)
            assert sample(metrics, DUPLICATES) >= seen + 2
            nursery.cancel_scope.cancel()
