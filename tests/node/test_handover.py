"""Hand-over certificates on a real staking store (``tests/node/staking_chain.py``: the set
changes at epochs 2, 3 and 4 of three blocks): built at the commits that complete them, kept
in ``handovers.lmdb`` across restarts, checked from genesis by the one verification function
(forgeries refused), served to the light client after the node pruned the hand-over heights'
state, and fetched and verified by a state-syncing node before it trusts a snapshot that no
genesis signature certifies.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from cli.handover import TrustedSets, follow_hand_overs
from cli.lightclient import genesis_validator_set, verify_account_proof
from consensus.epochs import EpochSchedule
from consensus.types import genesis_block
from consensus.validators import ValidatorSet
from node.api.app import build_app
from node.config import StorageSettings
from node.handover import HandoverCertificate, HandoverChain, handover_failures
from node.handover_store import HANDOVERS_DIRNAME
from node.node import Node
from node.snapshot import export_snapshot
from node.statesync import (
    HANDOVER_FORGED,
    OFFER_BAD_ANCHOR,
    OFFER_SET_UNKNOWN,
    HandoverCertificates,
    HandoverRequest,
    SnapshotOffer,
    Trust,
    index_snapshot,
    offer_refusal,
)
from node.storage import ProofHeightError
from p2p.manager import PeerManager
from state_machine.crypto import Keypair
from state_machine.staking.records import SCHEDULE_KEY
from tests.node.staking_chain import (
    ALICE_CONSENSUS,
    BOB_CONSENSUS,
    EPOCH_BLOCKS,
    build_set_changes,
    commit_qc_by,
    execute_epoch_signed,
    run_to,
    staking_node,
    staking_of,
    stored_handovers,
)
from tests.node.test_api_pieces import ALICE, GENESIS, VALIDATOR
from tests.node.test_api_served import served

GENESIS_HASH = genesis_block(GENESIS.genesis_time_ms).block_hash()
PRUNED = StorageSettings(proof_history_heights=2)  # an ordinary node: 2 past heights provable
NO_HISTORY = StorageSettings(proof_history_heights=0)
PEER_A = Keypair(b"\x31" * 32).public_key
PEER_B = Keypair(b"\x32" * 32).public_key
LAST_EPOCH = 6  # block 16 = (6 - 1) * 3 + 1 completes the certificate of epoch 6


@asynccontextmanager
async def chain_with_certificates(
    home: Path, storage: StorageSettings = PRUNED
) -> AsyncIterator[Node]:
    """The set-change chain of ``staking_chain.py`` (heights 1..16), its certificates kept."""
    with staking_node(home, storage=storage) as n:
        n.handovers.open()
        try:
            await build_set_changes(n)
            yield n
        finally:
            n.handovers.close()


def stored(n: Node) -> dict[int, HandoverCertificate]:
    return stored_handovers(n, LAST_EPOCH + 3)


def genesis_chain() -> HandoverChain:
    return HandoverChain(
        genesis_validator_set(GENESIS), EPOCH_BLOCKS, GENESIS.chain_id, GENESIS_HASH
    )


def with_peers(n: Node) -> None:
    """A real peer manager, not running: frames to peers go nowhere (answers are put in the
    inbox by the test)."""
    n.peers = PeerManager(n.key.seed, n.config.transport_config(), allowed_keys=[])


def sample(n: Node, name: str, **labels: str) -> float:
    return n.metrics.registry.get_sample_value(name, labels) or 0.0


# ---- building and verifying ----------------------------------------------------------------


async def test_each_epochs_certificate_is_built_at_commit_and_verifies_from_genesis(
    tmp_path: Path,
) -> None:
    async with chain_with_certificates(tmp_path) as n:
        certs = stored(n)
        assert sorted(certs) == list(range(2, LAST_EPOCH + 1))
        for epoch, cert in certs.items():
            assert cert.header.height == (epoch - 1) * EPOCH_BLOCKS + 1
        assert sample(n, "perpbft_handover_stored_total", source="commit") == len(certs)
        assert sample(n, "perpbft_handover_certificates") == len(certs)
        trusted = genesis_chain()
        for epoch in sorted(certs):
            assert trusted.extend(certs[epoch]) == [], epoch
        st = staking_of(n)
        for epoch in range(2, LAST_EPOCH + 1):
            if epoch in st.epoch_sets:
                assert trusted.sets[epoch] == ValidatorSet(st.epoch_sets[epoch].members)
        assert trusted.sets[4].keys == (BOB_CONSENSUS.public_key,)
        # An ordinary node: the state the early certificates prove is long gone.
        assert n.chain is not None
        with pytest.raises(ProofHeightError):
            n.chain.store.prove_many([b"\x23" + (2).to_bytes(8, "big")], 3)


def resigned(cert: HandoverCertificate, signers: list[Keypair]) -> HandoverCertificate:
    """``cert`` with a commit QC of ``signers``' real signatures over its header."""
    return dataclasses.replace(cert, commit_qc=commit_qc_by(cert.header, signers))


async def test_forged_certificates_are_refused_and_nothing_after_them_is_trusted(
    tmp_path: Path,
) -> None:
    async with chain_with_certificates(tmp_path, StorageSettings(archive=True)) as n:
        certs = stored(n)
        assert n.chain is not None
        # The real set of epoch 3, proven one height late (state at 7, header of block 8):
        # a valid QC and a valid Merkle proof, at the wrong height.
        late = n.chain.committed_block(8)
        assert late is not None
        proof, sched = n.chain.store.prove_many([b"\x23" + (3).to_bytes(8, "big"), SCHEDULE_KEY], 7)
        assert proof.value is not None
        wrong_height = HandoverCertificate(
            3, late.block.header, late.commit_qc, proof.value, proof.proof, None, sched.proof
        )
    good = certs[3]
    forgeries = {
        # Epoch 4's set (Bob alone) written in as epoch 3's: the Merkle proof fails.
        "forged set": (dataclasses.replace(good, value=certs[4].value), "Merkle proof"),
        # The genesis validator, out since epoch 2, signs epoch 3's hand-over.
        "old set signs": (resigned(good, [VALIDATOR]), "not signed by more than 2/3"),
        # Alice alone: 10,000 of epoch 2's 15,000, not more than 2/3.
        "too few signers": (resigned(good, [ALICE_CONSENSUS]), "not signed by more than 2/3"),
        # A gap: epoch 4's real certificate where epoch 3's is due.
        "gap": (certs[4], "certificate is for epoch 4, not 3"),
        "wrong height": (wrong_height, "certifying header is at height 8, not 7"),
        "other block's QC": (
            dataclasses.replace(good, commit_qc=certs[4].commit_qc),
            "commit QC certifies a different block",
        ),
    }
    # Resigning by the real set of epoch 2 passes: the forgeries, not the resigning, fail.
    honest = genesis_chain()
    assert honest.extend(certs[2]) == []
    assert honest.extend(resigned(good, [ALICE_CONSENSUS, BOB_CONSENSUS])) == []
    for name, (forged, why) in forgeries.items():
        trusted = genesis_chain()
        assert trusted.extend(certs[2]) == []
        failures = trusted.extend(forged)
        assert failures and any(why in f for f in failures), (name, failures)
        assert trusted.latest_epoch() == 2, name  # nothing after the forgery is trusted
        assert trusted.for_height(10) is None  # the first height of epoch 3
    # Epochs 0 and 1 are the genesis set: there is no hand-over to check.
    assert handover_failures(
        good,
        epoch=1,
        schedule=EpochSchedule.constant(EPOCH_BLOCKS),
        signers=genesis_validator_set(GENESIS),
        chain_id=GENESIS.chain_id,
        genesis_hash=GENESIS_HASH,
    )


# ---- kept across restarts --------------------------------------------------------------------


async def test_certificates_survive_a_restart_and_backfill_rebuilds_what_is_provable(
    tmp_path: Path,
) -> None:
    async with chain_with_certificates(tmp_path, StorageSettings(archive=True)) as n:
        before = {e: c.to_wire() for e, c in stored(n).items()}
        n.handovers.close()
        n.handovers.open()  # a restart: read back from disk
        assert {e: c.to_wire() for e, c in stored(n).items()} == before
        # The file lost (or a node that ran before certificates existed): an archive node
        # rebuilds every one from its blocks and past states, byte for byte.
        n.handovers.close()
        shutil.rmtree(n.config.data_path / HANDOVERS_DIRNAME)
        n.handovers.open()
        assert stored(n) == {}
        assert n.chain is not None
        assert n.handovers.backfill(n.chain) == len(before)
        assert {e: c.to_wire() for e, c in stored(n).items()} == before
        assert sample(n, "perpbft_handover_stored_total", source="backfill") == len(before)


async def test_a_node_stopped_at_an_epoch_end_still_builds_that_certificate(
    tmp_path: Path,
) -> None:
    """No past height provable at all (proof_history_heights = 0): the proof is taken at the
    epoch end itself; stopped right after it, the node proves it again at start."""
    with staking_node(tmp_path, storage=NO_HISTORY) as n:
        n.handovers.open()
        await run_to(n, 2 * EPOCH_BLOCKS)  # ends epoch 1: the set of epoch 3
        n.handovers.close()
        n.handovers.pending.clear()  # what a stop loses
        n.handovers.open()
        assert n.chain is not None
        n.handovers.backfill(n.chain)
        await execute_epoch_signed(n, [])  # block 7 completes epoch 3's certificate
        certs = stored(n)
        assert 3 in certs and 2 in certs
        trusted = genesis_chain()
        assert trusted.extend(certs[2]) == [] and trusted.extend(certs[3]) == []
        assert sample(n, "perpbft_handover_unbuilt_total") == 0
        n.handovers.close()


# ---- served ----------------------------------------------------------------------------------


async def test_the_light_client_walks_the_hand_overs_of_a_node_that_pruned_them(
    tmp_path: Path,
) -> None:
    async with chain_with_certificates(tmp_path) as n:
        app = build_app(n)
        async with served(app) as (base, _), httpx.AsyncClient(base_url=base) as http:
            # The state at the first hand-over height (3) is no longer provable here...
            gone = await http.get("/v1/proofs/records/epoch_set", params={"epoch": 2, "height": 3})
            assert gone.status_code == 404 and gone.json()["code"] == "height_not_provable"
            # ... yet every hand-over is answered, from the stored certificates.
            answers = {}
            for epoch in range(2, LAST_EPOCH + 1):
                r = await http.get(f"/v1/proofs/epoch_sets/{epoch}")
                assert r.status_code == 200, (epoch, r.text)
                answers[epoch] = r.json()
            latest = await http.get(  # 15: the latest state with its certifying block
                f"/v1/proofs/accounts/{ALICE.public_key.hex()}", params={"height": 15}
            )
            assert latest.status_code == 200, latest.text
            body = latest.json()
        trusted = TrustedSets(GENESIS, EPOCH_BLOCKS)
        assert follow_hand_overs(trusted, body["height"], answers.__getitem__) == []
        signers = trusted.for_height(body["height"] + 1)
        check = verify_account_proof(body, GENESIS, ALICE.public_key, body["height"], signers)
        assert check.ok, check.failures


async def test_certificates_are_served_in_runs_within_the_limits(tmp_path: Path) -> None:
    async with chain_with_certificates(tmp_path) as n:
        store = n.handovers.store
        assert store is not None
        run = store.raw_run(2, 100, 10**9)
        assert [HandoverCertificate.from_wire(r).epoch for r in run] == [2, 3, 4, 5, 6]
        assert len(store.raw_run(2, 2, 10**9)) == 2  # the count asked for
        assert len(store.raw_run(2, 100, len(run[0]) + len(run[1]))) == 2  # the byte limit
        assert store.raw_run(7, 10, 10**9) == []  # none yet
        assert store.epochs() == (5, 2, 6)
        # Served to a peer: one answer, metered by the peer's sync budget.
        with_peers(n)
        await n.handovers.serve(PEER_A, HandoverRequest(2, 1000))
        assert sample(n, "perpbft_handover_served_total", outcome="served") == 1
        n.sync_budget.charge(PEER_A, 10**12, time.monotonic())
        await n.handovers.serve(PEER_A, HandoverRequest(2, 10))
        assert sample(n, "perpbft_handover_served_total", outcome="refused") == 1


# ---- state sync across set changes -----------------------------------------------------------


@pytest.mark.parametrize("lie", ["forged set", "not a certificate"])
async def test_state_sync_trusts_an_anchor_beyond_genesis_only_through_verified_hand_overs(
    tmp_path: Path, lie: str
) -> None:
    async with chain_with_certificates(tmp_path / "server", StorageSettings(archive=True)) as n:
        assert n.chain is not None
        certs = stored(n)
        path = tmp_path / "15.snap"
        export_snapshot(n.chain.store, path, 15)
        snap = index_snapshot(path)
        anchor = n.chain.committed_block(16)
        assert anchor is not None
    offer = SnapshotOffer(
        15,
        snap.state_root,
        snap.entry_count,
        snap.chunk_hashes,
        anchor.block.header,
        anchor.commit_qc,  # signed by Bob alone, the set of epoch 5
    )
    # The genesis set alone cannot certify it: what state sync checked before hand-overs.
    genesis_only = offer_refusal(
        offer,
        chain_id=GENESIS.chain_id,
        sets=genesis_validator_set(GENESIS),
        genesis_hash=GENESIS_HASH,
        trust=Trust(),
    )
    assert genesis_only == OFFER_BAD_ANCHOR
    unknown = offer_refusal(
        offer,
        chain_id=GENESIS.chain_id,
        sets=genesis_chain().epoch_sets(),
        genesis_hash=GENESIS_HASH,
        trust=Trust(),
    )
    assert unknown == OFFER_SET_UNKNOWN  # beyond the trusted sets: fetch hand-overs first
    with staking_node(tmp_path / "syncer", storage=PRUNED) as syncer:
        syncer.statesync.verified = genesis_chain()  # the staking epochs of this test chain
        with_peers(syncer)
        syncer.handovers.open()
        sync = syncer.statesync
        sync._restoring = True
        sync._consider_offer(PEER_A, offer)
        sync._consider_offer(PEER_B, offer)
        assert len(sync.waiting) == 2 and sync.plan.best() is None  # OFFER_SET_UNKNOWN
        # A lies first (epoch 4's set as epoch 2's, or bytes that are no certificate), then B
        # answers with the real run.
        forged = dataclasses.replace(certs[2], value=certs[4].value).to_wire()
        if lie == "not a certificate":
            forged = certs[2].to_wire()[:-1]
        wires = tuple(certs[e].to_wire() for e in range(2, LAST_EPOCH + 1))
        sync._inbox_tx.send_nowait((PEER_A, HandoverCertificates(2, (forged,))))
        sync._inbox_tx.send_nowait((PEER_B, HandoverCertificates(2, wires)))
        await sync._fetch_handovers()
        assert sample(syncer, "perpbft_statesync_refused_total", reason=HANDOVER_FORGED) == 1
        assert (
            sample(syncer, "perpbft_p2p_invalid_messages_total", reason="statesync_handover_forged")
            == 1
        )
        assert sync.verified.latest_epoch() == LAST_EPOCH
        candidate = sync.plan.best()
        assert candidate is not None and candidate.offer == offer
        assert candidate.providers == [PEER_A, PEER_B]
        # The verified certificates are kept, to be served by this node in turn.
        assert {e: c.to_wire() for e, c in stored(syncer).items()} == {
            e: certs[e].to_wire() for e in range(2, LAST_EPOCH + 1)
        }
        assert sample(syncer, "perpbft_handover_stored_total", source="peer") == 5
        syncer.handovers.close()
    # With the sets verified, the anchor is checked against its own epoch's set.
    assert (
        offer_refusal(
            offer,
            chain_id=GENESIS.chain_id,
            sets=sync.verified.epoch_sets(),
            genesis_hash=GENESIS_HASH,
            trust=Trust(),
        )
        == ""
    )
