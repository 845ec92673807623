"""Block limits set by governance on a real four-validator localnet: the validators pass a
``block_limits`` proposal with ``perpbft gov`` (max_block_txs 2), every node reports the
scheduled height in ``/v1/status``, and once it is reached, a burst of transactions is
committed at most two per block on every node."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.signing import sign_actions
from client.trader import Trader
from state_machine.governance.chainparams import BLOCK_LIMITS_DELAY_BLOCKS
from state_machine.governance.params import GovernanceParams
from state_machine.tx import CancelAll
from tests.cluster import Cluster
from tests.integration.test_gov_cluster import pass_proposal

pytestmark = pytest.mark.slow

# Long enough for four CLI runs (propose, three votes) on a loaded machine.
GOVERNANCE = GovernanceParams(voting_period_blocks=80, execution_delay_blocks=2)
BURST = 16


def test_blocks_after_the_effective_height_respect_the_governed_max_txs(tmp_path: Path) -> None:
    with Cluster(tmp_path, governance=GOVERNANCE) as cluster:
        cluster.start_all()
        cluster.wait_height(2)
        content = {"kind": "block_limits", "max_block_txs": 2}
        pid = pass_proposal(cluster, tmp_path, "two txs per block", content)
        executed_at = cluster.get(0, f"/v1/gov/proposals/{pid}")["execute_height"]
        from_height = executed_at + BLOCK_LIMITS_DELAY_BLOCKS
        for i in range(4):
            limits = cluster.get(i, "/v1/status")["block_limits"]
            scheduled = [*limits["scheduled"]]
            if limits["governed"]:  # the node is past the height already
                assert limits["max_block_txs"] == 2
            else:
                assert [s["from_height"] for s in scheduled] == [from_height]
        cluster.wait_height(from_height)

        # The burst in one batch request: all in the mempool at once, so without the limit one
        # block would take them all.
        with Trader(cluster.api(1), cluster.layout.demo_keys[0]) as trader:
            txs = [
                sign_actions(trader.key_path, trader.chain_id(), [CancelAll(None)], key=trader.key)
                for _ in range(BURST)
            ]
            answer = trader.client.submit_batch(txs)
        assert all(r["status"] == "pending" for r in answer["results"]), answer
        tx_ids = [r["tx_id"] for r in answer["results"]]

        def committed(tx_id: str) -> bool:
            r = cluster.http.get(cluster.api(0) + f"/v1/txs/{tx_id}")
            return r.status_code == 200 and r.json().get("status") == "committed"

        def all_committed() -> bool:
            return all(committed(t) for t in tx_ids)

        cluster.wait_for(all_committed, "the burst committed", timeout_s=120)
        top = cluster.get(0, "/v1/status")["height"]
        cluster.wait_height(top, timeout_s=60)
        counts = {
            h: len(cluster.get(i, f"/v1/blocks/{h}")["tx_ids"])
            for i in (0, 3)
            for h in range(from_height, top + 1)
        }
        assert max(counts.values()) == 2, counts  # the limit bound, under a burst
        heights = {cluster.get(0, f"/v1/txs/{t}")["height"] for t in tx_ids}
        assert min(heights) >= from_height
        assert len(heights) >= BURST // 2  # 16 transactions took 8 blocks at least
        for i in range(4):
            limits = cluster.get(i, "/v1/status")["block_limits"]
            assert limits["governed"] and limits["max_block_txs"] == 2
