"""State sync and the light client across validator-set changes, on real processes, with no
archive node: every node proves only its last 20 heights (``proof_history_heights``, 300 by
default: the same situation, sooner).

A fifth validator joins by staking; once it votes, a genesis validator stops, so every commit
QC from then on holds the joiner's signature and none is valid for the genesis set. A fresh full
node then state-syncs: the snapshots it is offered are certified only by the new set, so it
must fetch the hand-over certificates from its peers and verify them from genesis before it
trusts one (``node/handover.py``); then it follows the chain and serves those certificates in
turn. ``perpbft proof`` walks the hand-overs against a validator and against the synced node,
long after the state of every hand-over height was pruned.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from cli.main import main
from node.config import Config, init_home, load_config
from tests.cluster import Cluster
from tests.integration.test_staking_cluster import (
    STAKING,
    first_height_of_epoch,
    qc_signers,
    set_keys,
    stake_to_join,
)

pytestmark = pytest.mark.slow

VALIDATORS = 4
SYNCER = VALIDATORS  # the full node that state-syncs (full nodes come before joiners)
JOINER = VALIDATORS + 1
SNAPSHOT_EVERY = 10
HISTORY_HEIGHTS = 20
EPOCH_BLOCKS = STAKING.epoch_length_blocks


def short_history(config: Config) -> Config:
    storage = dataclasses.replace(config.storage, proof_history_heights=HISTORY_HEIGHTS)
    return dataclasses.replace(config, storage=storage)


def configure_statesync(cluster: Cluster) -> None:
    for i, home in enumerate(cluster.layout.homes):
        config = load_config(home)
        if i == SYNCER:
            statesync = dataclasses.replace(
                config.statesync, enabled=True, discovery_ms=1_000, chunk_timeout_ms=2_000
            )
        else:
            statesync = dataclasses.replace(
                config.statesync, snapshot_interval=SNAPSHOT_EVERY, snapshot_keep_recent=2
            )
        init_home(home, force=True, config=dataclasses.replace(config, statesync=statesync))


def proof_verifies(cluster: Cluster, i: int, capsys: pytest.CaptureFixture[str]) -> str:
    """``perpbft proof account`` of a demo account against node ``i``: its output."""
    genesis = cluster.layout.out / "genesis.json"
    who = cluster.demo_key(0).public_key.hex()
    argv = ["proof", "account", who, "--genesis", str(genesis), "--node", cluster.api(i)]
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    return captured.out


def test_a_node_state_syncs_a_snapshot_certified_by_a_set_genesis_does_not_know(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = Cluster(
        tmp_path,
        validators=VALIDATORS,
        block_ms=200,
        staking=STAKING,
        full_nodes=1,
        joiners=1,
        configure=short_history,
    )
    with cluster:
        configure_statesync(cluster)
        running = [0, 1, 2, 3, JOINER]
        for i in running:
            cluster.start(i)
        cluster.wait_height(3, nodes=running)
        joiner = cluster.validator_key(JOINER).public_key.hex()
        height = stake_to_join(cluster, JOINER)
        active_from = first_height_of_epoch((height - 1) // EPOCH_BLOCKS + 2)
        cluster.wait_height(active_from + 2, nodes=running, timeout_s=90)
        assert joiner in set_keys(cluster, 1)
        # Without a genesis validator, every quorum (4 of 5 equal stakes) needs the joiner.
        cluster.kill(0)
        voters = [1, 2, 3, JOINER]
        stopped_at = max(cluster.height(i) for i in voters)
        cluster.wait_height(stopped_at + 2 * SNAPSHOT_EVERY + 3, nodes=voters, timeout_s=120)
        assert joiner in qc_signers(cluster, 1, stopped_at + 2)

        cluster.start(SYNCER)
        cluster.wait_height(cluster.height(1) + 2, nodes=[SYNCER], timeout_s=120)
        restored = int(cluster.metric(SYNCER, "perpbft_statesync_restored_height"))
        assert restored > stopped_at  # a snapshot the genesis set cannot certify
        anchor_epoch = restored // EPOCH_BLOCKS  # of block restored + 1
        fetched = cluster.metric(SYNCER, "perpbft_handover_stored_total", source="peer")
        assert fetched >= anchor_epoch - 1  # epochs 2 .. the anchor's, verified from genesis
        refused = cluster.metric(SYNCER, "perpbft_statesync_refused_total")
        assert refused == 0, "an honest peer's offer or certificate was refused"
        missing = cluster.http.get(cluster.api(SYNCER) + "/v1/blocks/1")
        assert missing.status_code == 404  # it never replayed from genesis
        # It follows the new set: the blocks it stores carry the joiner's votes.
        tip = cluster.height(1)
        cluster.wait_height(tip + 3, nodes=[SYNCER], timeout_s=60)
        assert cluster.block(SYNCER, tip + 1) == cluster.block(1, tip + 1)
        assert joiner in set_keys(cluster, SYNCER)

        # The light client, from genesis over every hand-over, against ordinary nodes whose
        # state at the first hand-over height (10) is long pruned.
        first = cluster.http.get(
            cluster.api(1) + "/v1/proofs/records/epoch_set", params={"epoch": 2, "height": 10}
        )
        assert first.status_code == 404 and first.json()["code"] == "height_not_provable"
        for node in (1, SYNCER):
            out = proof_verifies(cluster, node, capsys)
            assert out.startswith("VERIFIED"), out
            assert "hand-overs" in out, out
