"""Four real validator processes commit blocks with transactions and agree on every root, and
a transaction submitted to one node reaches the others by gossip."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from state_machine.tx import KIND_LIMIT, TIF_GTC, PlaceOrder, sign_transaction
from tests.cluster import Cluster
from tests.integration.load import ioc_order_tx

pytestmark = pytest.mark.slow

# Gossip test: submissions until one is committed in a block another node proposed. With gossip
# working each attempt ends in the submitting node's own block only when it leads the next view
# (about 1 in 4), so all attempts doing so has odds of about 4**-12.
GOSSIP_ATTEMPTS = 12


def test_four_validators_commit_transactions_from_every_node(tmp_path: Path) -> None:
    with Cluster(tmp_path) as cluster:
        cluster.start_all()
        cluster.wait_height(3)
        tx_heights = []
        for i in range(4):
            key = cluster.demo_key(i)
            order = PlaceOrder(2, i % 2 == 0, KIND_LIMIT, TIF_GTC, 6_000_000 + i, 10)
            tx = sign_transaction(key, cluster.chain_id, int(time.time() * 1000), [order])
            r = cluster.submit(i, tx.to_wire())
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["status"] == "committed" and body["results"][0]["code"] == "ok"
            tx_heights.append(body["height"])
        top = max(tx_heights) + 2
        cluster.wait_height(top)
        for h in range(1, top + 1):
            blocks = [cluster.block(i, h) for i in range(4)]
            assert len({b["block_hash"] for b in blocks}) == 1, f"fork at height {h}"
            assert len({b["header"]["state_root"] for b in blocks}) == 1
        # every node holds every transaction's result, and the books agree
        books = [cluster.get(i, "/v1/markets/BTC-PERP/book") for i in range(4)]
        assert all(b["bids"] == books[0]["bids"] and b["asks"] == books[0]["asks"] for b in books)

        assert_gossip_reaches_other_proposers(cluster)


def assert_gossip_reaches_other_proposers(cluster: Cluster) -> None:
    """A node's mempool holds only what its clients submitted and what peers gossiped to it,
    and a leader proposes from its own mempool. So a transaction submitted only to node i and
    committed in a block proposed by node j != i went from i to j by gossip. Without gossip
    every transaction waits for its own node's turn to lead, and this fails every time."""
    node_ids = [node_id.hex() for node_id in cluster.layout.node_ids]
    outcomes = []
    for attempt in range(GOSSIP_ATTEMPTS):
        i = attempt % 4
        raw = ioc_order_tx(cluster.demo_key(i), cluster.chain_id, int(time.time() * 1000), True)
        r = cluster.submit(i, raw)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "committed", body
        proposer = cluster.block(i, body["height"])["header"]["proposer"]
        outcomes.append((i, node_ids.index(proposer)))
        if proposer != node_ids[i]:
            return
    raise AssertionError(f"each tx was proposed by its own node (node, proposer): {outcomes}")
