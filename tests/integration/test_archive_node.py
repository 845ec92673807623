"""An archive full node beside a real 4-validator cluster (``[storage] archive = true`` and no
proof history of its own): an order, the trader's position and the market are proven at the
height the order committed and later, and the chain's first height stays provable, each
checked by the light client and by ``perpbft proof KIND`` against the genesis validators."""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Iterator

import pytest

from cli.lightclient import verify_account_proof, verify_record_proof
from cli.main import main
from node.api.recordkeys import record_key, record_kind
from node.config import Config
from state_machine.genesis import genesis_from_json
from state_machine.tx import KIND_LIMIT, TIF_GTC, PlaceOrder, sign_transaction
from tests.cluster import Cluster

pytestmark = pytest.mark.slow

VALIDATORS = 4
ARCHIVE = VALIDATORS  # index of the full node
BTC_PERP = 2


def archive_storage(config: Config) -> Config:
    storage = dataclasses.replace(config.storage, archive=True, proof_history_heights=0)
    return dataclasses.replace(config, storage=storage)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(
        tmp_path_factory.mktemp("archive"),
        validators=VALIDATORS,
        full_nodes=1,
        configure=archive_storage,
    )
    try:
        cluster.start_all()
        cluster.wait_height(3)
        yield cluster
    finally:
        cluster.close()


def test_records_are_provable_at_every_height_on_the_archive(
    net: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    genesis_file = net.layout.out / "genesis.json"
    genesis = genesis_from_json(genesis_file.read_text())
    maker = net.demo_key(0)
    action = PlaceOrder(BTC_PERP, True, KIND_LIMIT, TIF_GTC, 5_999_000, 10)
    tx = sign_transaction(maker, net.chain_id, int(time.time() * 1000), [action])
    answer = net.submit(ARCHIVE, tx.to_wire(), wait=True)
    assert answer.status_code == 200, answer.text
    placed_at = answer.json()["height"]
    order_id = str(answer.json()["results"][0]["order_id"])
    net.wait_height(placed_at + 6, nodes=[ARCHIVE])
    records = {
        "order": {"market": str(BTC_PERP), "order": order_id},
        "position": {"account": maker.public_key.hex(), "market": str(BTC_PERP)},
        "market": {"market": str(BTC_PERP)},
        "balance": {"account": maker.public_key.hex(), "asset": "0"},
    }
    for kind, ids in records.items():
        key = record_key(record_kind(kind), ids)
        for height in (placed_at - 1, placed_at, placed_at + 4):
            body = net.get(ARCHIVE, f"/v1/proofs/records/{kind}", height=height, **ids)
            check = verify_record_proof(body, genesis, key, kind, height)
            assert check.ok, (kind, height, check.failures)
            if kind == "order":  # absent before its block, resting after
                assert (check.values[key.hex()] is None) == (height < placed_at)
        tampered = copy.deepcopy(body)
        tampered["state_root"] = "00" * 32
        assert not verify_record_proof(tampered, genesis, key, kind, placed_at + 4).ok
    # Height 1, far beyond a proof history of 0, on an account proof.
    who = maker.public_key
    early = net.get(ARCHIVE, f"/v1/proofs/accounts/{who.hex()}", height=1)
    assert verify_account_proof(early, genesis, who, 1).ok
    argv = ["proof", "order", str(BTC_PERP), order_id, "--height", str(placed_at)]
    argv += ["--genesis", str(genesis_file), "--node", net.api(ARCHIVE)]
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("VERIFIED order")
