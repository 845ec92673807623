"""RFC 6962 transaction root against the transparency-dev vectors (every root and probe)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from state_machine.txroot import (
    EMPTY_ROOT,
    TxInclusionProof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    tx_root,
    verify_inclusion,
    verify_tx_inclusion,
)
from tests.conftest import VECTORS_DIR

VECTORS: dict[str, Any] = json.loads(
    (VECTORS_DIR / "merkle" / "rfc6962_vectors.json").read_text(encoding="utf-8")
)
LEAVES = [bytes.fromhex(h) for h in VECTORS["leaf_inputs_hex"]]
PROBES = VECTORS["inclusion_probes"]


def test_hasher_vectors() -> None:
    by_desc = {v["desc"]: v for v in VECTORS["hasher_vectors"]}
    assert EMPTY_ROOT.hex() == by_desc["empty tree root"]["want"]
    assert leaf_hash(b"").hex() == by_desc['HashLeaf("")']["want"]
    assert leaf_hash(b"L123456").hex() == by_desc['HashLeaf("L123456")']["want"]
    children = by_desc['HashChildren("N123","N456") (raw bytes, not hashes)']
    want = children["want"]
    assert (
        node_hash(bytes.fromhex(children["left_hex"]), bytes.fromhex(children["right_hex"])).hex()
        == want
    )


@pytest.mark.parametrize("size", range(9))
def test_roots_for_sizes_0_to_8(size: int) -> None:
    assert tx_root(LEAVES[:size]).hex() == VECTORS["root_hashes_by_size"][size]


def test_all_inclusion_probes_present() -> None:
    assert len(PROBES) == 98
    assert any(p["wantErr"] for p in PROBES) and any(not p["wantErr"] for p in PROBES)


@pytest.mark.parametrize(
    "probe",
    PROBES,
    ids=[f"{i}-{p['source_path'].split('/')[-2]}-{p['desc']}" for i, p in enumerate(PROBES)],
)
def test_inclusion_probe(probe: dict[str, Any]) -> None:
    ok = verify_inclusion(
        bytes.fromhex(probe["leafHash"]),
        probe["leafIdx"],
        probe["treeSize"],
        [bytes.fromhex(p) for p in probe["proof"]],
        bytes.fromhex(probe["root"]),
    )
    assert ok is (not probe["wantErr"])


@pytest.mark.parametrize("size", range(1, 9))
def test_generated_proofs_verify_and_match_happy_probes(size: int) -> None:
    root = tx_root(LEAVES[:size])
    for index in range(size):
        proof = inclusion_proof(LEAVES[:size], index)
        assert verify_tx_inclusion(LEAVES[index], proof, root)
        assert not verify_tx_inclusion(LEAVES[index] + b"x", proof, root)
        for probe in PROBES:
            if not probe["wantErr"] and (probe["treeSize"], probe["leafIdx"]) == (size, index):
                assert [p.hex() for p in proof.path] == probe["proof"]


@given(
    tx_ids=st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=40),
    data=st.data(),
)
def test_random_trees_prove_every_leaf_and_reject_tampering(
    tx_ids: list[bytes], data: st.DataObject
) -> None:
    root = tx_root(tx_ids)
    index = data.draw(st.integers(0, len(tx_ids) - 1))
    proof = inclusion_proof(tx_ids, index)
    assert TxInclusionProof.from_wire(proof.to_wire()) == proof
    assert verify_tx_inclusion(tx_ids[index], proof, root)
    if len(tx_ids) > 1:
        other = (index + 1) % len(tx_ids)
        if tx_ids[other] != tx_ids[index]:
            assert not verify_tx_inclusion(tx_ids[other], proof, root)
    if proof.path:
        k = data.draw(st.integers(0, len(proof.path) - 1))
        bit = data.draw(st.integers(0, 255))
        bad = bytearray(proof.path[k])
        bad[bit // 8] ^= 1 << (bit % 8)
        path = list(proof.path)
        path[k] = bytes(bad)
        assert not verify_tx_inclusion(
            tx_ids[index], TxInclusionProof(index, len(tx_ids), tuple(path)), root
        )
