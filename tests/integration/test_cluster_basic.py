"""Four real validator processes commit blocks with transactions and agree on every root."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from state_machine.tx import KIND_LIMIT, TIF_GTC, PlaceOrder, sign_transaction
from tests.cluster import Cluster

pytestmark = pytest.mark.slow


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
