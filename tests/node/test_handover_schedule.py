"""Hand-over certificates across a governance change of the epoch length, on a real node store
(``tests/node/test_epoch_length_proofs.py``'s chain: 3-block epochs 0 and 1, then 5-block
epochs from epoch 2 on, the set changing at epoch 3). The certificates are built at the
schedule's epoch ends (heights 3, 6, 11, 16, not the constant length's 3, 6, 9, 12), each
carries the schedule record proven from the set's state, the one verification function takes
the new schedule from them, and a forged or moved schedule is refused."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from cli.handover import TrustedSets, follow_hand_overs
from cli.lightclient import genesis_validator_set
from consensus.epochs import EpochSchedule
from consensus.types import genesis_block
from node.api.app import build_app
from node.config import StorageSettings
from node.handover import HandoverCertificate, HandoverChain, handover_failures
from node.node import Node
from state_machine.codec import encode
from tests.node.staking_chain import EPOCH_BLOCKS, staking_node, staking_of, stored_handovers
from tests.node.test_api_served import served
from tests.node.test_epoch_length_proofs import GOV_GENESIS, NEW_LENGTH, build_length_change

GENESIS_HASH = genesis_block(GOV_GENESIS.genesis_time_ms).block_hash()
PRUNED = StorageSettings(proof_history_heights=2)


@contextmanager
def certificates_kept(home: Path, storage: StorageSettings = PRUNED) -> Iterator[Node]:
    with staking_node(home, storage=storage, genesis=GOV_GENESIS) as n:
        n.handovers.open()
        try:
            yield n
        finally:
            n.handovers.close()


def genesis_chain() -> HandoverChain:
    validators = genesis_validator_set(GOV_GENESIS)
    return HandoverChain(validators, EPOCH_BLOCKS, GOV_GENESIS.chain_id, GENESIS_HASH)


def failures_with(cert: HandoverCertificate, epoch: int, schedule: EpochSchedule) -> list[str]:
    """The check of ``cert`` for ``epoch`` by the genesis set (it signs epochs 0..2)."""
    return handover_failures(
        cert,
        epoch=epoch,
        schedule=schedule,
        signers=genesis_validator_set(GOV_GENESIS),
        chain_id=GOV_GENESIS.chain_id,
        genesis_hash=GENESIS_HASH,
    )


async def test_a_certificate_chain_crosses_an_epoch_length_change(tmp_path: Path) -> None:
    with certificates_kept(tmp_path) as n:
        await build_length_change(n)  # to height 19
        certs = stored_handovers(n)
        schedule = staking_of(n).schedule
    # Built at the schedule's epoch ends: the state after 3, 6, 11 and 16.
    assert {e: c.height for e, c in certs.items()} == {2: 3, 3: 6, 4: 11, 5: 16}
    assert all(c.schedule_value is not None for c in certs.values())  # changed in block 3
    chain = genesis_chain()
    for epoch in (2, 3, 4, 5):
        assert chain.extend(certs[epoch]) == [], epoch
    assert chain.schedule == schedule and chain.schedule.length_of(4) == NEW_LENGTH
    assert chain.hand_over_height(6) == 21 and chain.epoch_of(12) == 3
    assert chain.for_height(12) != chain.for_height(11)  # Alice joined at epoch 3
    # The same certificates with one constant length: epoch 4's is at the wrong height.
    constant = failures_with(certs[4], 4, EpochSchedule.constant(EPOCH_BLOCKS))
    assert any("certifying header is at height 12, not 10" in f for f in constant), constant


async def test_a_forged_or_moved_schedule_in_a_certificate_is_refused(tmp_path: Path) -> None:
    with certificates_kept(tmp_path) as n:
        await build_length_change(n)
        certs = stored_handovers(n)
    good = certs[2]
    four_blocks = encode(EpochSchedule.constant(EPOCH_BLOCKS).changed_from(2, 4).to_obj())
    forgeries = {
        # Another schedule (4-block epochs) written in: its Merkle proof fails.
        "forged value": (
            dataclasses.replace(good, schedule_value=four_blocks),
            "Merkle proof of the value of key 2f2f",
        ),
        # The record claimed absent (the genesis length for ever): the absence is not proven.
        "claimed absent": (
            dataclasses.replace(good, schedule_value=None),
            "Merkle proof of the absence of key 2f2f",
        ),
        # Epoch 3's schedule proof with epoch 2's certificate: another state's.
        "other state's proof": (
            dataclasses.replace(good, schedule_proof=certs[4].schedule_proof),
            "Merkle proof of the value of key 2f2f",
        ),
    }
    for name, (forged, why) in forgeries.items():
        chain = genesis_chain()
        failures = chain.extend(forged)
        assert failures and any(why in f for f in failures), (name, failures)
        assert chain.latest_epoch() == 1 and chain.schedule == EpochSchedule.constant(3), name
    # A validly proven schedule that cuts an already trusted epoch differently is refused:
    # trusting 3-block epochs through epoch 2, epoch 3's certificate moves epoch 2.
    moved = failures_with(certs[3], 3, EpochSchedule.constant(EPOCH_BLOCKS))
    assert moved == ["the epoch schedule at height 6 moves an epoch before 3"], moved


async def test_the_light_client_walks_a_length_change_from_stored_certificates(
    tmp_path: Path,
) -> None:
    """The node pruned the hand-over heights' state; its answers, from the certificates,
    prove the schedule with each set, and the walk takes the hand-overs at 3, 6, 11, 16."""
    with certificates_kept(tmp_path) as n:
        await build_length_change(n)
        async with served(build_app(n)) as (base, _), httpx.AsyncClient(base_url=base) as http:
            gone = await http.get("/v1/proofs/records/epoch_set", params={"epoch": 4, "height": 11})
            assert gone.status_code == 404 and gone.json()["code"] == "height_not_provable"
            answers = {}
            for epoch in range(2, 6):
                r = await http.get(f"/v1/proofs/epoch_sets/{epoch}")
                assert r.status_code == 200, (epoch, r.text)
                answers[epoch] = r.json()
    assert [a["height"] for a in answers.values()] == [3, 6, 11, 16]
    assert all([e["key"] for e in a["entries"]][1] == "2f2f" for a in answers.values())
    trusted = TrustedSets(GOV_GENESIS, EPOCH_BLOCKS)
    assert follow_hand_overs(trusted, 21, answers.__getitem__) == []  # block 22: epoch 5
    assert trusted.latest_epoch() == 5 and trusted.schedule.length_of(5) == NEW_LENGTH
