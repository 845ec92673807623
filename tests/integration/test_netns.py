"""Nodes on separate hosts: 4 validators and 2 full nodes, each in its own Linux network
namespace with its own address, joined by veth links to one bridge (a LAN). Nothing runs on
127.0.0.1: every node listens on its own address and dials the others' addresses.

The chain commits, the full node follows and serves the API, a trader's order sent to the full
node commits, and a sixth node state-syncs from the validators' snapshots and catches up.

Needs root (``ip netns``, veth, bridge). It runs in CI (``CI`` set: a missing capability
fails the test); elsewhere it skips and says why. The test creates and removes its own
namespaces and links, and every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from node.config import init_home, load_config
from state_machine.tx import KIND_LIMIT, TIF_GTC, PlaceOrder, sign_transaction
from tests.cluster import Cluster

pytestmark = pytest.mark.slow

VALIDATORS = 4
FULL = VALIDATORS
SYNCER = VALIDATORS + 1
NODES = VALIDATORS + 2
SNAPSHOT_EVERY = 10
BTC_PERP = 2


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def why_not_available() -> str:
    """ "" if this process can build network namespaces, else the reason."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces and veth links"
    if shutil.which("ip") is None:
        return "needs the ip command (iproute2)"
    probe = f"pbprobe{os.getpid() % 100_000}"
    try:
        ip("netns", "add", probe)
    except (subprocess.SubprocessError, OSError) as exc:
        return f"cannot create a network namespace: {exc}"
    ip("netns", "del", probe)
    return ""


@pytest.fixture(scope="module")
def lan() -> Iterator[tuple[tuple[str, ...], tuple[str, ...]]]:
    """``NODES`` namespaces on one bridge: (namespace names, their addresses)."""
    reason = why_not_available()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"multi-host test cannot run in CI: {reason}")
        pytest.skip(reason)
    tag = f"pb{random.randrange(16**5):05x}"  # link names must stay under 16 characters
    subnet = f"10.{random.randrange(64, 250)}.{random.randrange(1, 250)}"
    bridge = f"{tag}br"
    names = tuple(f"{tag}n{i}" for i in range(NODES))
    addresses = tuple(f"{subnet}.{i + 2}" for i in range(NODES))
    try:
        ip("link", "add", bridge, "type", "bridge")
        ip("addr", "add", f"{subnet}.1/24", "dev", bridge)
        ip("link", "set", bridge, "up")
        for i, (name, address) in enumerate(zip(names, addresses, strict=True)):
            outer, inner = f"{tag}v{i}", f"{tag}p{i}"
            ip("netns", "add", name)
            ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            ip("link", "set", outer, "master", bridge)
            ip("link", "set", outer, "up")
            ip("link", "set", inner, "netns", name)
            ip("-n", name, "addr", "add", f"{address}/24", "dev", inner)
            ip("-n", name, "link", "set", inner, "up")
            ip("-n", name, "link", "set", "lo", "up")
        yield names, addresses
    finally:
        for i, name in enumerate(names):
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                ip("link", "del", f"{tag}v{i}")
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                ip("netns", "del", name)
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            ip("link", "del", bridge)


def configure(cluster: Cluster) -> None:
    for i, home in enumerate(cluster.layout.homes):
        config = load_config(home)
        statesync = config.statesync
        if i < VALIDATORS:
            statesync = dataclasses.replace(statesync, snapshot_interval=SNAPSHOT_EVERY)
        elif i == SYNCER:
            statesync = dataclasses.replace(statesync, enabled=True, discovery_ms=1_000)
        init_home(home, force=True, config=dataclasses.replace(config, statesync=statesync))


@pytest.fixture(scope="module")
def net(
    lan: tuple[tuple[str, ...], tuple[str, ...]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    names, addresses = lan
    cluster = Cluster(
        tmp_path_factory.mktemp("netns"),
        validators=VALIDATORS,
        full_nodes=NODES - VALIDATORS,
        hosts=addresses,
        netns=names,
    )
    try:
        configure(cluster)
        for i in range(SYNCER):
            cluster.start(i)
        cluster.wait_height(2 * SNAPSHOT_EVERY + 2, nodes=list(range(SYNCER)), timeout_s=120)
        yield cluster
    finally:
        cluster.close()


def test_every_node_listens_and_dials_on_its_own_address(net: Cluster) -> None:
    for i in range(SYNCER):
        config = load_config(net.layout.homes[i])
        assert config.p2p.listen.startswith(net.layout.hosts[i] + ":")
        assert all("127.0.0.1" not in peer for peer in config.p2p.peers)
        status = net.status(i)
        assert status is not None
        connected = [v["connected"] for v in status["validators"]]
        assert connected == [True] * VALIDATORS, (i, status["validators"])


def test_the_full_node_follows_and_an_order_sent_to_it_commits(net: Cluster) -> None:
    height = net.height(0)
    net.wait_height(height, nodes=[FULL])
    assert net.block(FULL, height) == net.block(0, height)
    maker = net.demo_key(0)
    action = PlaceOrder(BTC_PERP, True, KIND_LIMIT, TIF_GTC, 5_999_000, 10)
    tx = sign_transaction(maker, net.chain_id, int(time.time() * 1000), [action])
    answer = net.submit(FULL, tx.to_wire(), wait=True)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "committed" and body["results"][0]["code"] == "ok"
    net.wait_height(body["height"], nodes=[0])
    assert net.get(0, f"/v1/txs/{tx.tx_id().hex()}")["height"] == body["height"]


def test_a_new_node_state_syncs_over_the_lan_and_catches_up(net: Cluster) -> None:
    net.start(SYNCER)
    net.wait_height(3 * SNAPSHOT_EVERY + 2, nodes=[0])
    net.wait_height(net.height(0), nodes=[SYNCER], timeout_s=120)
    restored = net.metric(SYNCER, "perpbft_statesync_restored_height")
    assert restored >= SNAPSHOT_EVERY
    assert net.http.get(net.api(SYNCER) + "/v1/blocks/1").status_code == 404
    first = int(restored) + 1
    assert net.block(SYNCER, first) == net.block(0, first)
