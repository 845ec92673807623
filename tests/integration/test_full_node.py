"""A full node beside a real 4-validator cluster: it follows the chain (every block verified
against its commit QC), serves the public API with the validators' answers and proofs, takes a
trader's order, forwards it to the validators and answers ``wait=commit`` when it commits; it
never votes, and a restarted full node catches up by block sync.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from cli.lightclient import verify_account_proof
from consensus.follow import SENDER_FAULTS
from state_machine.genesis import genesis_from_json
from state_machine.tx import KIND_LIMIT, TIF_GTC, PlaceOrder, sign_transaction
from tests.cluster import Cluster

pytestmark = pytest.mark.slow

VALIDATORS = 4
FULL = VALIDATORS  # index of the full node
BTC_PERP = 2


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("full"), validators=VALIDATORS, full_nodes=1)
    try:
        cluster.start_all()
        cluster.wait_height(3)
        yield cluster
    finally:
        cluster.close()


def test_the_full_node_follows_with_the_validators_blocks(net: Cluster) -> None:
    status = net.status(FULL)
    assert status is not None and status["validator"] is False
    height = net.height(0)
    net.wait_height(height, nodes=[FULL])
    for h in (1, height):
        assert net.block(FULL, h) == net.block(0, h)
    assert net.metric(FULL, "perpbft_follow_blocks_total") >= height
    for reason in SENDER_FAULTS:  # (a late answer to an old request is not one)
        assert net.metric(FULL, "perpbft_follow_refused_blocks_total", reason=reason) == 0
    # Most blocks come from the leader's proposal and DECIDE, not from a sync round trip.
    assert net.metric(FULL, "perpbft_follow_blocks_total", source="proposal") > 0
    # It never voted: no validator counted a consensus message from it as anything but a fault.
    assert net.metric(FULL, "perpbft_votes_sent_total") == 0
    net.wait_for(lambda: (net.status(FULL) or {}).get("ready") is True, "full node ready")


def test_an_order_sent_to_the_full_node_commits_and_wait_commit_answers(net: Cluster) -> None:
    maker = net.demo_key(0)
    nonce = int(time.time() * 1000)
    action = PlaceOrder(BTC_PERP, True, KIND_LIMIT, TIF_GTC, 5_999_000, 10)
    tx = sign_transaction(maker, net.chain_id, nonce, [action])
    answer = net.submit(FULL, tx.to_wire(), wait=True)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "committed" and body["tx_id"] == tx.tx_id().hex()
    [placed] = body["results"]
    assert (placed["code"], placed["status"]) == ("ok", "resting")
    # The validators executed it in the same block.
    net.wait_height(body["height"], nodes=[0])
    on_validator = net.get(0, f"/v1/txs/{tx.tx_id().hex()}")
    assert on_validator["height"] == body["height"]
    orders = net.get(FULL, f"/v1/accounts/{maker.public_key.hex()}/orders")["orders"]
    assert [o["order_id"] for o in orders] == [placed["order_id"]]


def test_the_full_node_serves_proofs_checked_against_the_genesis_validators(net: Cluster) -> None:
    genesis = genesis_from_json((net.layout.out / "genesis.json").read_text())
    who = net.demo_key(1).public_key
    answer = net.get(FULL, f"/v1/proofs/accounts/{who.hex()}")
    check = verify_account_proof(answer, genesis, who)
    assert check.ok, check.failures


def test_a_restarted_full_node_catches_up_by_block_sync(net: Cluster) -> None:
    net.stop(FULL)
    stopped_at = net.height(0)
    net.wait_height(stopped_at + 10, nodes=[0])
    net.start(FULL)
    net.wait_height(net.height(0), nodes=[FULL], timeout_s=60)
    assert net.metric(FULL, "perpbft_follow_sync_requests_total", peer_type="validator") > 0
    assert net.metric(FULL, "perpbft_follow_blocks_total", source="sync") > 0
