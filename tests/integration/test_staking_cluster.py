"""Staking on real ``perpbft start`` processes: validators join by stake and leave by jailing.

* A fifth node stakes, becomes a member at the epoch after next, and its votes count: with
  five equal stakes a quorum needs four, so after one of the original four stops the chain
  commits only because the fifth votes (its signature is in the commit QCs). A full node
  follows throughout, checking each QC against the set of its height. A validator is down
  across that set change and restarts from its stored state (the epoch sets are read back
  from it), catches up and votes in the new set: the same stop needs it too.
* Twins: a validator run as two processes with one key equivocates (two proposals in a view
  it leads, or two votes); the others prove it, submit the evidence on chain, the offender is jailed
  and slashed, leaves the set at the epoch after next, and the chain keeps committing.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from client.staking_tx import create_validator_tx
from node.config import init_home, load_config
from node.testnet import ports_for
from state_machine.staking.genesis import StakingGenesis
from tests.cluster import Cluster, free_base_port

pytestmark = pytest.mark.slow

USDC = 1_000_000
EPOCH_BLOCKS = 10
STAKING = StakingGenesis(
    epoch_length_blocks=EPOCH_BLOCKS,
    min_self_stake_atoms=1_000 * USDC,
    unbonding_blocks=20 * EPOCH_BLOCKS,
    jail_blocks=4 * EPOCH_BLOCKS,
)


def set_keys(cluster: Cluster, i: int) -> list[str]:
    status = cluster.status(i)
    return [] if status is None else [v["pubkey"] for v in status["validators"]]


def first_height_of_epoch(epoch: int) -> int:
    return epoch * EPOCH_BLOCKS + 1


def qc_signers(cluster: Cluster, i: int, height: int) -> list[str]:
    """The keys whose votes the commit QC of ``height`` holds."""
    block = cluster.block(i, height)
    return [sig["signer"] for sig in block["commit_qc"]["signatures"]]


def stake_to_join(cluster: Cluster, i: int) -> int:
    """Node ``i`` sends its create-validator; returns the height it was committed at."""
    key = cluster.validator_key(i)
    tx = create_validator_tx(
        key,
        cluster.chain_id,
        int(time.time() * 1000),
        p2p_address=f"127.0.0.1:{cluster.layout.ports[i].p2p}",
        self_stake_atoms=1_000 * USDC,
    )
    r = cluster.submit(i, tx.to_wire())
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert [a["code"] for a in body["results"]] == ["ok"], body
    return int(body["height"])


def test_a_staked_fifth_validator_joins_and_a_restarted_one_votes_in_the_new_set(
    tmp_path: Path,
) -> None:
    cluster = Cluster(
        tmp_path, validators=4, block_ms=200, staking=STAKING, full_nodes=1, joiners=1
    )
    with cluster:
        full, new = 4, 5  # a full node following throughout, and the joining validator
        cluster.start_all()
        cluster.wait_height(3)
        joiner = cluster.validator_key(new).public_key.hex()
        assert joiner not in set_keys(cluster, 0)
        height = stake_to_join(cluster, new)
        # Fixed at the end of the staking block's epoch, active one epoch later.
        active_from = first_height_of_epoch((height - 1) // EPOCH_BLOCKS + 2)
        cluster.kill(1)  # down across the set change
        cluster.wait_height(active_from + 3, nodes=[0, 2, 3, new], timeout_s=90)
        assert joiner in set_keys(cluster, 0) and len(set_keys(cluster, 0)) == 5
        cluster.start(1)
        tip = max(cluster.height(i) for i in (0, 2, 3, new))
        cluster.wait_height(tip, nodes=[1], timeout_s=90)
        assert joiner in set_keys(cluster, 1)
        # Five equal stakes: a quorum is four. Without node 0, nodes 1..4 must all vote.
        cluster.kill(0)
        voters = [1, 2, 3, new]
        before = max(cluster.height(i) for i in voters)
        cluster.wait_height(before + 8, nodes=voters, timeout_s=120)
        epochs = [r for r in cluster.log_lines(new, "epoch_started") if r.get("member")]
        assert epochs, "the joiner never saw itself in the set"
        assert joiner in qc_signers(cluster, 1, before + 4)  # its vote is in the certificate
        # The full node checked every QC against its height's set, across the change.
        cluster.wait_height(before + 8, nodes=[full], timeout_s=60)
        assert joiner in set_keys(cluster, full)


def start_twin(cluster: Cluster, of: int) -> int:
    """A second process with node ``of``'s home copied (its key, config and genesis; its own
    ports and empty data): both sign as one validator. Returns its index in
    ``cluster.procs`` (killed with the cluster)."""
    index = len(cluster.layout.homes)
    home = cluster.root / "twin"
    shutil.copytree(cluster.layout.homes[of], home, ignore=shutil.ignore_patterns("data"))
    (home / "data").mkdir()
    config = load_config(home)
    ports = ports_for(free_base_port(1), 0)
    config = dataclasses.replace(
        config,
        home=home,
        p2p=dataclasses.replace(config.p2p, listen=f"127.0.0.1:{ports.p2p}"),
        api=dataclasses.replace(config.api, listen=f"127.0.0.1:{ports.api}"),
        metrics=dataclasses.replace(config.metrics, listen=f"127.0.0.1:{ports.metrics}"),
    )
    init_home(home, force=True, config=config)
    log = open(cluster.log_path(index), "ab")  # noqa: SIM115 - owned by the process
    command = [sys.executable, "-m", "cli.main", "start", "--home", str(home)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cluster.procs[index] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    log.close()
    return index


def slashed_by_evidence(cluster: Cluster, nodes: list[int]) -> dict[str, Any] | None:
    """The committed result of an evidence transaction one of ``nodes`` submitted that was
    applied (its action ``ok``), if any yet."""
    for i in nodes:
        for line in cluster.log_lines(i, "evidence_submitted"):
            r = cluster.http.get(cluster.api(i) + f"/v1/txs/{line['tx_id']}")
            if r.status_code != 200:
                continue
            body: dict[str, Any] = r.json()
            if [a.get("code") for a in body.get("results", [])] == ["ok"]:
                return body
    return None


def test_twins_are_jailed_on_chain_by_the_others_evidence(tmp_path: Path) -> None:
    with Cluster(tmp_path, validators=4, block_ms=200, staking=STAKING) as cluster:
        # Two connections with one key: a node keeps the one dialed by the lower key, the
        # newer if both were. The validator with the lowest key wins every dial it makes, so
        # its twins (redialing fast) keep replacing each other at every peer, and a twin that
        # reconnects re-sends its proposal of the view: the peers hear both twins' proposals.
        keys = [cluster.validator_key(i).public_key for i in range(4)]
        twin_of = keys.index(min(keys))
        offender = keys[twin_of].hex()
        home = cluster.layout.homes[twin_of]
        config = load_config(home)
        p2p = dataclasses.replace(config.p2p, dial_backoff_base_ms=20, dial_backoff_max_ms=100)
        init_home(home, force=True, config=dataclasses.replace(config, p2p=p2p))
        cluster.start_all()
        cluster.wait_height(3)
        twin = start_twin(cluster, twin_of)
        honest = [i for i in range(4) if i != twin_of]
        found: list[dict[str, Any]] = []

        def evidence_applied() -> bool:
            body = slashed_by_evidence(cluster, honest)
            if body is not None:
                found.append(body)
            return body is not None

        cluster.wait_for(evidence_applied, "evidence applied on chain", timeout_s=120)
        applied_at = int(found[0]["height"])  # "ok": verified, jailed and slashed
        # Jailed at once; out of the set fixed at the next epoch end, which votes one later.
        out_from = first_height_of_epoch((applied_at - 1) // EPOCH_BLOCKS + 2)
        cluster.wait_height(out_from + 5, nodes=honest, timeout_s=120)
        for i in honest:
            assert offender not in set_keys(cluster, i) and len(set_keys(cluster, i)) == 3
        assert offender not in qc_signers(cluster, honest[0], out_from + 1)
        # Both twins still run, and the chain keeps committing without them.
        assert cluster.running(twin_of) and cluster.running(twin)
        before = max(cluster.height(i) for i in honest)
        cluster.wait_height(before + 10, nodes=honest, timeout_s=60)
