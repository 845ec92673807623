"""Unauthenticated clients cannot keep validators from reconnecting.

A flood of idle TCP sockets, each reopened as soon as the node closes it, runs against two
validators of a real four-validator cluster for the whole test, from the validators' own host
(127.0.0.1: on a localnet every validator shares it, so this is the hard case for per-host
limits) and from another loopback host (127.0.0.2). One flooded validator is killed and
restarted while the flood goes on: it must reconnect to all three peers and the chain must
commit on all four nodes. Before the fix one global pool of pending handshakes, held by the
idle sockets, kept the restarted validator at 0 peers for as long as the flood lasted.
"""

from __future__ import annotations

import dataclasses
import selectors
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from node.config import Config
from tests.cluster import Cluster

pytestmark = pytest.mark.slow

SOCKETS_PER_TARGET = 60  # from each source host: together above every cap of a node
FLOOD_MAX_S = 240.0  # the flood stops by itself even if the test is stuck
FLOOD_SOURCES = ("127.0.0.1", "127.0.0.2")


class IdleFlood:
    """Keeps ``count`` idle TCP connections from each source host to each port open,
    reopening each one as soon as the node closes it. Runs in a thread until ``stop`` (or
    FLOOD_MAX_S). Counts the connections it opened and the ones the node closed."""

    def __init__(self, ports: list[int], count: int) -> None:
        self.targets = [(port, source) for port in ports for source in FLOOD_SOURCES]
        self.count = count
        self.opened = 0
        self.closed_by_node = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> IdleFlood:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _open(self, port: int, source: str) -> socket.socket | None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((source, 0))
            s.settimeout(0.5)
            s.connect(("127.0.0.1", port))
        except OSError:  # the node is down, or its backlog is full: try again later
            s.close()
            return None
        s.setblocking(False)
        self.opened += 1
        return s

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        live: dict[tuple[int, str], int] = dict.fromkeys(self.targets, 0)
        deadline = time.monotonic() + FLOOD_MAX_S
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                for target, n in live.items():
                    for _ in range(self.count - n):
                        s = self._open(*target)
                        if s is None:
                            break
                        selector.register(s, selectors.EVENT_READ, target)
                        live[target] += 1
                for key, _ in selector.select(timeout=0.05):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    try:
                        data = sock.recv(4096)
                    except OSError:
                        data = b""
                    if not data:  # the node hung up: reopen
                        selector.unregister(sock)
                        sock.close()
                        live[key.data] -= 1
                        self.closed_by_node += 1
        finally:
            for key in list(selector.get_map().values()):
                key.fileobj.close()  # type: ignore[union-attr]
            selector.close()


def fast_rejoin(config: Config) -> Config:
    return dataclasses.replace(
        config,
        consensus=dataclasses.replace(config.consensus, view_timeout_cap_ms=4_000),
    )


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("flood"), block_ms=200, configure=fast_rejoin) as c:
        c.start_all()
        c.wait_height(2)
        yield c


def peer_count(cluster: Cluster, i: int) -> int:
    status = cluster.status(i)
    return -1 if status is None else len(status["peers"])


def test_a_restarted_validator_reconnects_and_the_chain_commits_under_a_flood(
    cluster: Cluster,
) -> None:
    victims = [1, 2]
    ports = [cluster.layout.ports[i].p2p for i in victims]
    with IdleFlood(ports, SOCKETS_PER_TARGET) as flood:
        cluster.wait_for(
            lambda: flood.closed_by_node >= 4 * SOCKETS_PER_TARGET,
            "the flood to be on (sockets opened and closed by the nodes)",
        )
        cluster.kill(1)
        height = max(cluster.height(i) for i in (0, 2, 3))
        cluster.start(1)
        cluster.wait_ready(1)
        cluster.wait_for(lambda: peer_count(cluster, 1) == 3, "validator 1 to reach 3 peers", 60)
        cluster.wait_height(height + 5, timeout_s=60)
        assert all(peer_count(cluster, i) == 3 for i in range(4))
        # The flood ran all along: the nodes kept closing its sockets, and it kept reopening.
        opened_before = flood.opened
        cluster.wait_for(lambda: flood.opened > opened_before + 50, "the flood to go on")
        for i in victims:
            evicted = cluster.metric(i, "perpbft_p2p_handshakes_evicted_total")
            silent = cluster.metric(i, "perpbft_p2p_handshakes_failed_total", reason="silent")
            assert evicted + silent > 0, (i, evicted, silent)
    heights = [cluster.height(i) for i in range(4)]
    assert min(heights) >= height + 5, heights
