"""State sync against peers that lie, cannot serve, or go away: real stores, real snapshot
files and real protocol messages; the peers' answers are put where the p2p inbound task puts
them (the restoring node's inbox), in the order a test chooses.

The snapshot is exported from a real chain of two blocks certified by the genesis validator;
its entry frames are made small so it has several chunks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

import node.snapshot
from consensus.types import (
    COMMIT,
    Block,
    BlockHeader,
    QCSignature,
    QuorumCert,
    genesis_block,
    payload_root,
    vote_signing_bytes,
)
from node.chain import genesis_state_root
from node.config import Config, RoleSettings, StateSyncSettings
from node.node import Node, now_ms
from node.snapshot import EntryChunk, export_snapshot
from node.statesync import (
    CHUNK_MISMATCH,
    CHUNK_MISSING,
    CHUNK_TIMEOUT,
    OFFER_BAD_ANCHOR,
    OFFER_UNTRUSTED,
    SNAPSHOT_ROOT_MISMATCH,
    ChunkResponse,
    ChunkStore,
    LocalSnapshot,
    SnapshotOffer,
    Trust,
    chunk_hash,
    index_snapshot,
    offer_refusal,
    read_chunk,
)
from node.storage import store_path
from p2p.manager import PeerManager
from state_machine.crypto import Keypair
from state_machine.genesis import default_genesis

VALIDATOR = Keypair(b"\x21" * 32)
SERVER = Keypair(b"\x22" * 32)
SYNCER = Keypair(b"\x23" * 32)
PEER_A = Keypair(b"\x24" * 32).public_key
PEER_B = Keypair(b"\x25" * 32).public_key
OUTSIDER = Keypair(b"\x26" * 32)
ALICE = Keypair(b"\x27" * 32)
GENESIS_TIME_MS = now_ms() - 60_000
GENESIS = default_genesis(
    "perpbft-test", [(VALIDATOR.public_key, 1)], [ALICE.public_key], GENESIS_TIME_MS
)
GENESIS_HASH = genesis_block(GENESIS_TIME_MS).block_hash()
ENTRIES_PER_TEST_CHUNK = 2


def new_node(home: Path, key: Keypair, statesync: StateSyncSettings | None = None) -> Node:
    config = Config(
        home=home, role=RoleSettings(mode="full"), statesync=statesync or StateSyncSettings()
    )
    n = Node(config, GENESIS, key)
    n.peers = PeerManager(key.seed, config.transport_config(), allowed_keys=[])
    return n


def signed_qc(header: BlockHeader, signer: Keypair) -> QuorumCert:
    block_hash = header.block_hash()
    message = vote_signing_bytes(GENESIS.chain_id, COMMIT, header.height, header.height, block_hash)
    signature = QCSignature(signer.public_key, signer.sign(message))
    return QuorumCert(COMMIT, header.height, header.height, block_hash, (signature,))


@dataclasses.dataclass
class Served:
    """A snapshot at height 1 of a real two-block chain, and its offer."""

    snapshot: LocalSnapshot
    offer: SnapshotOffer

    def chunk(self, index: int) -> bytes:
        data = read_chunk(self.snapshot, index)
        assert data is not None
        return data


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("server")
    server = new_node(home, SERVER)
    server.chain = chain = server.open_chain()
    parent_hash, root = GENESIS_HASH, genesis_state_root(GENESIS)
    headers: list[BlockHeader] = []

    async def build() -> None:
        nonlocal parent_hash, root
        for height in (1, 2):
            header = BlockHeader(
                height,
                height,
                parent_hash,
                GENESIS_TIME_MS + 1000 * height,
                VALIDATOR.public_key,
                payload_root(()),
                root,
            )
            assert await server._follow_store(
                VALIDATOR.public_key, Block(header, ()), signed_qc(header, VALIDATOR), "sync"
            )
            parent_hash, root = header.block_hash(), chain.state_root
            headers.append(header)

    trio.run(build)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(node.snapshot, "ENTRIES_PER_CHUNK", ENTRIES_PER_TEST_CHUNK)
        path = home / "snap" / "1.snap"
        path.parent.mkdir()
        export_snapshot(chain.store, path, 1)
    snap = index_snapshot(path)
    assert len(snap.chunk_hashes) >= 3
    anchor = headers[1]
    offer = SnapshotOffer(
        1,
        snap.state_root,
        snap.entry_count,
        snap.chunk_hashes,
        anchor,
        signed_qc(anchor, VALIDATOR),
    )
    yield Served(snap, offer)
    server.sigpool.close()
    chain.close()


@pytest.fixture
def syncer(tmp_path: Path) -> Iterator[Node]:
    n = new_node(tmp_path, SYNCER, StateSyncSettings(enabled=True, chunk_timeout_ms=100))
    yield n
    n.sigpool.close()
    if n.chain is not None:
        n.chain.close()


def sample(n: Node, name: str, **labels: str) -> float:
    return n.metrics.registry.get_sample_value(name, labels) or 0.0


def answer(n: Node, peer: bytes, height: int, index: int, chunk: bytes) -> None:
    n.statesync._inbox_tx.send_nowait((peer, ChunkResponse(height, index, chunk)))


async def fetch(n: Node, offer: SnapshotOffer, providers: list[bytes]) -> bool:
    syncer = n.statesync
    for peer in providers:
        syncer.plan.consider(peer, offer)
    candidate = syncer.plan.best()
    assert candidate is not None
    syncer._restoring = True
    return await syncer._fetch(candidate)


def opened_height(n: Node) -> int:
    n.chain = n.open_chain()
    return n.chain.height


async def test_a_bad_chunk_is_refused_the_peer_penalised_and_another_peer_serves_it(
    syncer: Node, served: Served
) -> None:
    n, offer = syncer, served.offer
    total = len(offer.chunk_hashes)
    bad = bytearray(served.chunk(0))
    bad[-1] ^= 1
    answer(n, PEER_A, 1, 0, bytes(bad))  # A is asked first and lies
    for index in range(total):
        answer(n, PEER_B, 1, index, served.chunk(index))
    assert await fetch(n, offer, [PEER_A, PEER_B])
    assert sample(n, "perpbft_statesync_refused_total", reason=CHUNK_MISMATCH) == 1
    assert sample(n, "perpbft_p2p_invalid_messages_total", reason="statesync_chunk_mismatch") == 1
    assert sample(n, "perpbft_statesync_chunks_total", source="peer") == total
    candidate = n.statesync.plan.candidates[offer.identity()]
    assert candidate.providers == [PEER_B]
    assert opened_height(n) == 1
    assert n.chain is not None and n.chain.state_root == offer.state_root
    assert n.chain.store.meta.block_hash == offer.anchor_header.parent_hash
    assert not any((n.config.data_path / "statesync").glob("*/*"))  # resume files removed


async def test_a_peer_that_cannot_serve_its_offer_is_dropped(syncer: Node, served: Served) -> None:
    n, offer = syncer, served.offer
    answer(n, PEER_A, 1, 0, b"")  # "missing"
    for index in range(len(offer.chunk_hashes)):
        answer(n, PEER_B, 1, index, served.chunk(index))
    assert await fetch(n, offer, [PEER_A, PEER_B])
    assert sample(n, "perpbft_statesync_refused_total", reason=CHUNK_MISSING) == 1
    assert opened_height(n) == 1


async def test_an_interrupted_sync_resumes_with_the_chunks_it_verified(
    syncer: Node, served: Served
) -> None:
    n, offer = syncer, served.offer
    total = len(offer.chunk_hashes)
    # First attempt: A serves two chunks, then goes silent; nobody else offers.
    answer(n, PEER_A, 1, 0, served.chunk(0))
    answer(n, PEER_A, 1, 1, served.chunk(1))
    assert not await fetch(n, offer, [PEER_A])
    assert sample(n, "perpbft_statesync_refused_total", reason=CHUNK_TIMEOUT) == 1
    assert not (store_path(n.config.data_path) / "data.mdb").exists()
    # A chunk damaged on disk meanwhile is not trusted on resume.
    candidate = n.statesync.plan.best() or n.statesync.plan.candidates[offer.identity()]
    stored = ChunkStore(n.statesync.resume_dir, candidate)
    assert stored.have(0) and stored.have(1)
    stored.path(1).write_bytes(b"damaged")
    # Second attempt (a restart would do the same): B is asked only for what is missing. Had
    # it been asked for chunk 0, its queued answers would not match and the fetch would fail.
    for index in range(1, total):
        answer(n, PEER_B, 1, index, served.chunk(index))
    assert await fetch(n, offer, [PEER_B])
    assert sample(n, "perpbft_statesync_chunks_total", source="resumed") == 1
    assert opened_height(n) == 1


async def test_a_snapshot_whose_whole_root_fails_is_refused_and_nothing_is_stored(
    syncer: Node, served: Served
) -> None:
    n, offer = syncer, served.offer
    # Liars offer the certified root with hashes of chunks they made up (one entry dropped).
    chunks = [served.chunk(i) for i in range(len(offer.chunk_hashes))]
    forged = EntryChunk.from_wire(chunks[0])
    chunks[0] = EntryChunk(forged.entries[1:]).to_wire()
    lie = dataclasses.replace(
        offer,
        chunk_hashes=(chunk_hash(chunks[0]), *offer.chunk_hashes[1:]),
        entry_count=offer.entry_count - 1,
    )
    for index, chunk in enumerate(chunks):
        answer(n, PEER_A, 1, index, chunk)
    assert not await fetch(n, lie, [PEER_A])
    assert sample(n, "perpbft_statesync_refused_total", reason=SNAPSHOT_ROOT_MISMATCH) == 1
    reason = f"statesync_{SNAPSHOT_ROOT_MISMATCH}"
    assert sample(n, "perpbft_p2p_invalid_messages_total", reason=reason) == 1
    assert lie.identity() in n.statesync.plan.rejected
    assert not (store_path(n.config.data_path) / "data.mdb").exists()


def test_offers_are_checked_against_the_genesis_validators_and_the_trust_pin(
    served: Served,
) -> None:
    offer = served.offer
    validators = Node(Config(home=Path("/nonexistent")), GENESIS, SYNCER).validators

    def verdict(o: SnapshotOffer, trust: Trust = Trust()) -> str:
        return offer_refusal(
            o,
            chain_id=GENESIS.chain_id,
            sets=validators,
            genesis_hash=GENESIS_HASH,
            trust=trust,
        )

    assert verdict(offer) == ""
    forged = dataclasses.replace(offer, anchor_qc=signed_qc(offer.anchor_header, OUTSIDER))
    assert verdict(forged) == OFFER_BAD_ANCHOR
    other_root = dataclasses.replace(offer, state_root=b"\x07" * 32)
    assert verdict(other_root) == OFFER_BAD_ANCHOR
    wrong_height = dataclasses.replace(offer, height=2)
    assert verdict(wrong_height) == OFFER_BAD_ANCHOR
    block_1 = offer.anchor_header.parent_hash
    assert verdict(offer, Trust(1, block_1)) == ""
    assert verdict(offer, Trust(1, b"\x01" * 32)) == OFFER_UNTRUSTED
    assert verdict(offer, Trust(5, block_1)) == OFFER_UNTRUSTED
