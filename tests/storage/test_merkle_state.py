"""State tree: incremental roots, history independence, node emission, proofs."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from state_machine.codec import DecodeError
from state_machine.merkle_state import (
    DEFAULT_SHAPE,
    MemoryNodeStore,
    MerkleInvariantError,
    MerkleState,
    MissingNodeError,
    StateProof,
    TreeShape,
    empty_root,
    key_hash,
    prefix_of,
    prove_from_nodes,
    verify_proof,
)
from tests.conftest import examples

# A tiny shape makes splits and collapses happen with a handful of keys.
TINY = TreeShape(min_depth=1, bucket_cap=2)
SHAPES = st.sampled_from([TINY, TreeShape(min_depth=2, bucket_cap=3), DEFAULT_SHAPE])

keys = st.binary(min_size=0, max_size=12)
values = st.binary(min_size=0, max_size=24)
writes_st = st.lists(st.tuples(keys, st.one_of(st.none(), values)), max_size=60)


def reference(writes: list[tuple[bytes, bytes | None]]) -> dict[bytes, bytes]:
    state: dict[bytes, bytes] = {}
    for k, v in writes:
        if v is None:
            state.pop(k, None)
        else:
            state[k] = v
    return state


def flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def test_empty_tree_root_is_the_empty_node_hash() -> None:
    tree = MerkleState()
    assert tree.root() == empty_root()
    assert len(tree) == 0
    assert verify_proof(tree.root(), b"anything", None, tree.prove(b"anything"))
    assert not verify_proof(tree.root(), b"anything", b"", tree.prove(b"anything"))


@settings(max_examples=examples(80))
@given(shape=SHAPES, blocks=st.lists(writes_st, min_size=1, max_size=6))
def test_incremental_root_equals_rebuilt_root_and_store_matches(shape, blocks) -> None:
    tree = MerkleState(shape)
    store = MemoryNodeStore()
    history: list[tuple[bytes, bytes | None]] = []
    for block in blocks:
        store.write_nodes(tree.apply(block))
        history.extend(block)
        state = reference(history)
        rebuilt = MerkleState.from_entries(sorted(state.items()), shape)
        assert tree.root() == rebuilt.root()
        assert len(tree) == len(state) == len(rebuilt)
        # The node updates emitted block by block leave exactly the canonical node set.
        assert store.nodes == dict(rebuilt.nodes())
        assert all(hashlib.sha256(v).digest() for v in store.nodes.values())


@given(shape=SHAPES, entries=st.dictionaries(keys, values, max_size=40), data=st.data())
def test_root_is_independent_of_write_order(shape, entries, data) -> None:
    items = list(entries.items())
    shuffled = data.draw(st.permutations(items))
    a = MerkleState(shape)
    a.apply(items)
    b = MerkleState(shape)
    # Insert in another order, with extra keys added and removed on the way.
    b.apply([(b"temp" + k, v) for k, v in shuffled])
    b.apply(shuffled)
    b.apply([(b"temp" + k, None) for k, _ in shuffled])
    assert a.root() == b.root()


@settings(max_examples=examples(120))
@given(
    shape=SHAPES,
    entries=st.dictionaries(keys, values, min_size=1, max_size=40),
    absent=st.lists(keys, max_size=5),
    data=st.data(),
)
def test_proofs_of_present_and_absent_keys(shape, entries, absent, data) -> None:
    tree = MerkleState.from_entries(sorted(entries.items()), shape)
    root = tree.root()
    store = MemoryNodeStore()
    store.write_nodes(tree.nodes())

    key = data.draw(st.sampled_from(sorted(entries)))
    value = entries[key]
    proof = tree.prove(key)
    assert prove_from_nodes(store.get_node, key, root, shape) == proof
    assert StateProof.from_wire(proof.to_wire()) == proof
    assert verify_proof(root, key, value, proof, shape)
    assert verify_proof(root, key, value, proof.to_wire(), shape)
    assert not verify_proof(root, key, None, proof, shape)
    assert not verify_proof(root, key, value + b"x", proof, shape)
    wire = proof.to_wire()
    bit = data.draw(st.integers(0, len(wire) * 8 - 1))
    assert not verify_proof(root, key, value, flip(wire, bit), shape)
    if key:
        assert not verify_proof(
            root, flip(key, data.draw(st.integers(0, len(key) * 8 - 1))), value, proof, shape
        )
    if value:
        assert not verify_proof(
            root, key, flip(value, data.draw(st.integers(0, len(value) * 8 - 1))), proof, shape
        )
    assert not verify_proof(flip(root, data.draw(st.integers(0, 255))), key, value, proof, shape)

    for missing in absent:
        if missing in entries:
            continue
        proof = tree.prove(missing)
        assert prove_from_nodes(store.get_node, missing, root, shape) == proof
        assert verify_proof(root, missing, None, proof, shape)
        assert not verify_proof(root, missing, b"", proof, shape)
        wire = proof.to_wire()
        bit = data.draw(st.integers(0, len(wire) * 8 - 1))
        assert not verify_proof(root, missing, None, flip(wire, bit), shape)


def test_a_present_key_cannot_be_proven_absent_with_a_doctored_bucket() -> None:
    entries = {f"k{i}".encode(): b"v" for i in range(200)}
    tree = MerkleState.from_entries(sorted(entries.items()), TINY)
    proof = tree.prove(b"k7")
    records = proof.bucket
    kh = key_hash(b"k7")
    doctored = b"".join(
        records[i : i + 64] for i in range(0, len(records), 64) if records[i : i + 32] != kh
    )
    assert doctored != records
    assert not verify_proof(tree.root(), b"k7", None, StateProof(proof.siblings, doctored), TINY)


# Same cap as the default, fewer slots: grinding keys into one slot stays cheap in a test.
CROWDED = TreeShape(min_depth=2, bucket_cap=DEFAULT_SHAPE.bucket_cap)


def ground_keys(slot: int, count: int) -> list[bytes]:
    """Keys whose hash falls in one slot (what an attacker grinding keys would make)."""
    out: list[bytes] = []
    i = 0
    while len(out) < count:
        key = b"grind" + i.to_bytes(4, "big")
        if prefix_of(key_hash(key), CROWDED.min_depth) == slot:
            out.append(key)
        i += 1
    return out


@pytest.fixture(scope="module")
def crowded_slot_keys() -> list[bytes]:
    return ground_keys(slot=7, count=DEFAULT_SHAPE.bucket_cap + 6)


def test_an_overfull_bucket_splits_and_collapses_canonically(crowded_slot_keys) -> None:
    tree = MerkleState(CROWDED)
    store = MemoryNodeStore()
    store.write_nodes(tree.apply([(k, b"x") for k in crowded_slot_keys]))
    assert len(tree) == len(crowded_slot_keys)
    proof = tree.prove(crowded_slot_keys[0])
    assert len(proof.siblings) > CROWDED.min_depth  # the slot became an inner node
    assert len(proof.bucket) <= CROWDED.bucket_bytes_max
    assert verify_proof(tree.root(), crowded_slot_keys[0], b"x", proof, CROWDED)
    assert store.nodes == dict(tree.nodes())
    store.write_nodes(tree.apply([(k, None) for k in crowded_slot_keys[:10]]))
    assert len(tree.prove(crowded_slot_keys[-1]).siblings) == CROWDED.min_depth
    rebuilt = MerkleState.from_entries([(k, b"x") for k in crowded_slot_keys[10:]], CROWDED)
    assert tree.root() == rebuilt.root()
    assert store.nodes == dict(rebuilt.nodes())


def test_prove_from_a_corrupted_store_raises() -> None:
    tree = MerkleState.from_entries([(b"a", b"1"), (b"b", b"2")])
    store = MemoryNodeStore()
    store.write_nodes(tree.nodes())
    nid = next(iter(sorted(n for n in store.nodes if n[0] == DEFAULT_SHAPE.min_depth)))
    store.nodes[nid] = store.nodes[nid][:-1] + bytes([store.nodes[nid][-1] ^ 1])
    with pytest.raises(MissingNodeError):
        for key in (b"a", b"b"):
            prove_from_nodes(store.get_node, key, tree.root())


def test_limits_and_duplicate_keys() -> None:
    with pytest.raises(MerkleInvariantError):
        MerkleState().apply([(b"k" * 2000, b"v")])
    with pytest.raises(MerkleInvariantError):
        MerkleState.from_entries([(b"k", b"1"), (b"k", b"2")])
    with pytest.raises(DecodeError):
        StateProof.from_wire(b"\x92\x90\xc4\x01")
    assert not verify_proof(b"\x00" * 32, b"k", None, b"garbage")
    assert not verify_proof(b"\x00" * 31, b"k", None, MerkleState().prove(b"k"))
