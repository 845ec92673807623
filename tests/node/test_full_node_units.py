"""A full node's handling of peers' blocks and a validator's handling of a full node's
consensus messages, on real nodes (store, chain, metrics) without the network: frames go in
through the same entry as the peer-inbound task's."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from consensus.events import MessageReceived
from consensus.types import (
    COMMIT,
    Block,
    BlockHeader,
    CommittedBlock,
    QCSignature,
    QuorumCert,
    SyncResponse,
    Vote,
    encode_message,
    genesis_block,
    payload_root,
    vote_signing_bytes,
)
from node.chain import genesis_state_root
from node.config import Config, RoleSettings
from node.node import Node, now_ms
from state_machine.crypto import Keypair
from state_machine.genesis import Genesis, default_genesis
from state_machine.tx import KIND_LIMIT, TIF_GTC, PlaceOrder, Transaction, sign_transaction

VALIDATOR = Keypair(b"\x11" * 32)
FULL = Keypair(b"\x12" * 32)  # a full node's p2p key: not in the validator set
OUTSIDER = Keypair(b"\x13" * 32)
ALICE = Keypair(b"\x14" * 32)
GENESIS_TIME_MS = now_ms() - 60_000
GENESIS = default_genesis(
    "perpbft-test", [(VALIDATOR.public_key, 1)], [ALICE.public_key], GENESIS_TIME_MS
)


def open_node(home: Path, key: Keypair, genesis: Genesis = GENESIS, **role: str) -> Node:
    n = Node(Config(home=home, role=RoleSettings(**role)), genesis, key)  # type: ignore[arg-type]
    n.chain = n.open_chain()
    n.replica = n.build_replica(n.chain)
    return n


@pytest.fixture
def full_node(tmp_path: Path) -> Iterator[Node]:
    n = open_node(tmp_path, FULL)
    yield n
    n.sigpool.close()
    assert n.chain is not None
    n.chain.close()


def first_block() -> Block:
    order = PlaceOrder(2, True, KIND_LIMIT, TIF_GTC, 6_000_000, 1)
    payload = (sign_transaction(ALICE, GENESIS.chain_id, now_ms(), [order]).to_wire(),)
    header = BlockHeader(
        1,
        1,
        genesis_block(GENESIS_TIME_MS).block_hash(),
        now_ms(),
        VALIDATOR.public_key,
        payload_root(payload),
        genesis_state_root(GENESIS),
    )
    return Block(header, payload)


def commit_qc(block: Block, signer: Keypair) -> QuorumCert:
    message = vote_signing_bytes(GENESIS.chain_id, COMMIT, 1, block.height, block.block_hash())
    return QuorumCert(
        COMMIT,
        1,
        block.height,
        block.block_hash(),
        (QCSignature(signer.public_key, signer.sign(message)),),
    )


def sample(n: Node, name: str, **labels: str) -> float:
    return n.metrics.registry.get_sample_value(name, labels) or 0.0


async def frame_in(n: Node, peer: bytes, body: bytes) -> None:
    """A consensus frame from ``peer``, then whatever it queued for the follow loop."""
    await n._on_consensus_frame(peer, body)
    while True:
        try:
            event = n._events_rx.receive_nowait()
        except trio.WouldBlock:
            return
        assert isinstance(event, MessageReceived)
        await n._follow_message(event.sender, event.message)


async def test_a_block_certified_by_non_validators_is_refused_counted_and_not_stored(
    full_node: Node,
) -> None:
    n = full_node
    assert n.chain is not None and n.replica is None and not n.is_validator
    block = first_block()
    forged = SyncResponse((CommittedBlock(block, commit_qc(block, OUTSIDER)),))
    await frame_in(n, VALIDATOR.public_key, encode_message(forged))
    assert n.chain.height == 0
    assert sample(n, "perpbft_follow_refused_blocks_total", reason="invalid_qc") == 1
    assert sample(n, "perpbft_p2p_invalid_messages_total", reason="follow_invalid_qc") == 1

    # The same block with the validator's commit QC is executed and stored, from any peer.
    good = SyncResponse((CommittedBlock(block, commit_qc(block, VALIDATOR)),))
    await frame_in(n, OUTSIDER.public_key, encode_message(good))
    assert n.chain.height == 1 and n.chain.committed_block(1) is not None
    assert sample(n, "perpbft_follow_blocks_total", source="sync") == 1
    assert n.chain.store.get_tx_result(sign_id(block)) is not None


def sign_id(block: Block) -> bytes:
    return Transaction.from_wire(block.payload[0]).tx_id()


async def test_a_block_whose_payload_was_swapped_is_refused(full_node: Node) -> None:
    n = full_node
    assert n.chain is not None
    block = first_block()
    qc = commit_qc(block, VALIDATOR)
    swapped = dataclasses.replace(block, payload=())
    await frame_in(
        n, OUTSIDER.public_key, encode_message(SyncResponse((CommittedBlock(swapped, qc),)))
    )
    assert n.chain.height == 0
    assert sample(n, "perpbft_follow_refused_blocks_total", reason="payload_mismatch") == 1


async def test_a_validator_refuses_and_counts_a_full_nodes_vote(tmp_path: Path) -> None:
    n = open_node(tmp_path, VALIDATOR)
    try:
        assert n.is_validator and n.replica is not None
        block = first_block()
        message = vote_signing_bytes(GENESIS.chain_id, COMMIT, 1, 1, block.block_hash())
        vote = Vote(COMMIT, 1, 1, block.block_hash(), FULL.public_key, FULL.sign(message))
        await n._on_consensus_frame(FULL.public_key, encode_message(vote))
        assert n._events_rx.statistics().current_buffer_used == 0  # never reached the replica
        reason = "consensus_from_non_validator"
        assert sample(n, "perpbft_p2p_invalid_messages_total", reason=reason) == 1
        # A validator takes no blocks from a full node either (it syncs from validators).
        good = SyncResponse((CommittedBlock(block, commit_qc(block, VALIDATOR)),))
        await n._on_consensus_frame(FULL.public_key, encode_message(good))
        assert n._events_rx.statistics().current_buffer_used == 0
        assert sample(n, "perpbft_p2p_invalid_messages_total", reason=reason) == 2
    finally:
        n.sigpool.close()
        assert n.chain is not None
        n.chain.close()


def test_a_validator_key_in_the_full_node_role_never_votes(tmp_path: Path) -> None:
    n = open_node(tmp_path, VALIDATOR, mode="full")
    try:
        assert not n.is_validator and n.replica is None and n.follow is not None
    finally:
        n.sigpool.close()
        assert n.chain is not None
        n.chain.close()
