"""Consensus wire types: canonical strict decoding, domain-separated signatures, payload root.

Round trips and hostile bytes for every consensus wire type are covered by
``tests/foundation/test_codec.py``, which discovers them automatically.
"""

from __future__ import annotations

import json

import msgpack
import pytest

from consensus import (
    PREPARE,
    Block,
    BlockHeader,
    Decide,
    SyncRequest,
    decode_message,
    encode_message,
    payload_root,
)
from consensus.types import (
    MESSAGE,
    NewView,
    Proposal,
    genesis_block,
    genesis_qc,
    newview_signing_bytes,
    proposal_signing_bytes,
    vote_signing_bytes,
)
from consensus.verify import sign_newview, sign_proposal, sign_vote
from state_machine.codec import DecodeError
from state_machine.crypto import verify
from state_machine.tx import PlaceOrder, signing_bytes
from tests.conftest import VECTORS_DIR
from tests.consensus.harness import CHAIN_ID, keys
from tests.wire_strategies import all_wire_types

KEY = keys(1)[0]
H = b"\x42" * 32


def test_consensus_types_are_covered_by_the_codec_property_tests() -> None:
    names = {c.__name__ for c in all_wire_types() if c.__module__.startswith("consensus")}
    assert {
        "Proposal",
        "Vote",
        "QuorumCert",
        "NewView",
        "SafetyData",
        "SyncResponse",
        "VoteEquivocation",
        "ProposalEquivocation",
        "BlockHeader",
        "Block",
        "TimeoutCert",
        "TimeoutSignature",
    } <= names


def test_message_union_round_trip_and_strictness() -> None:
    message = Decide(genesis_qc(H))
    data = encode_message(message)
    assert decode_message(data) == message
    assert decode_message(encode_message(SyncRequest(5, 16))) == SyncRequest(5, 16)
    with pytest.raises(DecodeError, match="unknown consensus message tag"):
        decode_message(msgpack.packb([99, 1]))
    with pytest.raises(DecodeError):
        decode_message(data + b"\x00")
    with pytest.raises(DecodeError, match="exceeds limit"):
        decode_message(data, max_bytes=len(data) - 1)


def test_every_message_tag_is_distinct() -> None:
    tags = [m.TAG for m in MESSAGE.members]
    assert len(set(tags)) == len(tags)


def test_signature_domains_are_distinct() -> None:
    """A vote's signature is not a valid proposal, new-view or transaction signature."""
    vote = sign_vote(KEY, CHAIN_ID, PREPARE, 3, 1, H)
    as_vote = vote_signing_bytes(CHAIN_ID, PREPARE, 3, 1, H)
    assert verify(KEY.public_key, as_vote, vote.signature)
    assert not verify(KEY.public_key, proposal_signing_bytes(CHAIN_ID, 3, H), vote.signature)
    qc = genesis_qc(H)
    assert not verify(KEY.public_key, newview_signing_bytes(CHAIN_ID, 3, qc), vote.signature)
    tx_bytes = signing_bytes(1, CHAIN_ID, KEY.public_key, 3, 1, (PlaceOrder(0, True, 0, 0, 1, 1),))
    assert not verify(KEY.public_key, tx_bytes, vote.signature)
    prefixes = {
        as_vote[:16],
        proposal_signing_bytes(CHAIN_ID, 3, H)[:16],
        newview_signing_bytes(CHAIN_ID, 3, qc)[:16],
        tx_bytes[:14],
    }
    assert len(prefixes) == 4


def test_signatures_bind_the_chain_id() -> None:
    sig = sign_proposal(KEY, CHAIN_ID, 3, H)
    assert verify(KEY.public_key, proposal_signing_bytes(CHAIN_ID, 3, H), sig)
    assert not verify(KEY.public_key, proposal_signing_bytes("other-chain", 3, H), sig)
    nv_sig = sign_newview(KEY, CHAIN_ID, 3, genesis_qc(H))
    assert not verify(
        KEY.public_key, newview_signing_bytes("other-chain", 3, genesis_qc(H)), nv_sig
    )


def test_block_hash_covers_every_header_field() -> None:
    header = BlockHeader(1, 1, H, 5, KEY.public_key, payload_root(()), H)
    base = header.block_hash()
    for field, value in [
        ("height", 2),
        ("view", 2),
        ("parent_hash", b"\x01" * 32),
        ("timestamp_ms", 6),
        ("proposer", b"\x02" * 32),
        ("payload_root", b"\x03" * 32),
        ("state_root", b"\x04" * 32),
    ]:
        changed = BlockHeader(**{**{f: getattr(header, f) for f, _ in header.WIRE}, field: value})
        assert changed.block_hash() != base, field


def test_payload_root_matches_rfc6962_vectors() -> None:
    vectors = json.loads((VECTORS_DIR / "merkle" / "rfc6962_vectors.json").read_text())
    leaves = [bytes.fromhex(h) for h in vectors["leaf_inputs_hex"]]
    for size, want in enumerate(vectors["root_hashes_by_size"]):
        assert payload_root(leaves[:size]).hex() == want, size


def test_block_payload_must_match_header() -> None:
    block = genesis_block(5)
    assert block.payload_matches_header()
    assert not Block(block.header, (b"x=1",)).payload_matches_header()


def test_new_view_and_proposal_decode_from_the_union() -> None:
    block = genesis_block(5)
    qc = genesis_qc(block.block_hash())
    nv = NewView(1, qc, None, KEY.public_key, sign_newview(KEY, CHAIN_ID, 1, qc))
    p = Proposal(1, block, qc, KEY.public_key, sign_proposal(KEY, CHAIN_ID, 1, H))
    for message in (nv, p):
        assert decode_message(encode_message(message)) == message
