"""The golden vectors explained from outside the project: the bytes pinned in
``tests/vectors/golden/`` are rebuilt here from the msgpack specification
(github.com/msgpack/msgpack/blob/master/spec.md, written out below without the msgpack library or
``state_machine.codec``), SHA-256 from hashlib and Ed25519 from pyca/cryptography (OpenSSL, not
the libsodium the node signs with). So the pinned values are not merely what the code printed
once: another implementation, in any language, following the documented layout gets them too.
"""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.vectors import golden

TX_TAG = b"perpbft/tx/v1\x00"
BLOCK_TAG = b"perpbft/block/v1\x00"
VOTE_TAG = b"perpbft/vote/v1\x00"
COMMIT_PHASE = 3


def mp(value: Any) -> bytes:
    """msgpack, smallest format for every value (the spec's canonical choice)."""
    if value is None:
        return b"\xc0"
    if value is True or value is False:
        return b"\xc3" if value else b"\xc2"
    if isinstance(value, int):
        return mp_int(value)
    if isinstance(value, str):
        data = value.encode()
        return mp_len(len(data), 0xA0, 31, b"\xd9", b"\xda", b"\xdb") + data
    if isinstance(value, bytes):
        return mp_len(len(value), None, -1, b"\xc4", b"\xc5", b"\xc6") + value
    if isinstance(value, list):
        head = mp_len(len(value), 0x90, 15, None, b"\xdc", b"\xdd")
        return head + b"".join(mp(v) for v in value)
    raise TypeError(type(value))


def mp_int(n: int) -> bytes:
    if 0 <= n <= 0x7F:
        return bytes([n])
    if -32 <= n < 0:
        return struct.pack(">b", n)
    if n >= 0:
        for tag, fmt, top in ((0xCC, ">B", 0xFF), (0xCD, ">H", 0xFFFF), (0xCE, ">I", 2**32 - 1)):
            if n <= top:
                return bytes([tag]) + struct.pack(fmt, n)
        return b"\xcf" + struct.pack(">Q", n)
    for tag, fmt, low in ((0xD0, ">b", -(2**7)), (0xD1, ">h", -(2**15)), (0xD2, ">i", -(2**31))):
        if n >= low:
            return bytes([tag]) + struct.pack(fmt, n)
    return b"\xd3" + struct.pack(">q", n)


def mp_len(
    n: int, fix: int | None, fix_max: int, t8: bytes | None, t16: bytes, t32: bytes
) -> bytes:
    if fix is not None and n <= fix_max:
        return bytes([fix | n])
    if t8 is not None and n <= 0xFF:
        return t8 + bytes([n])
    return t16 + struct.pack(">H", n) if n <= 0xFFFF else t32 + struct.pack(">I", n)


def action_array(action: Any) -> list[Any]:
    """An action as the union encodes it: ``[TAG, field, ...]``, nested structs as arrays
    (a nested union member, like the evidence and votes of SubmitEvidence, with its TAG first:
    a class with a TAG encodes as ``[TAG, field, ...]`` wherever it appears)."""
    encoded: list[Any] = plain(action)
    return encoded


def plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    if hasattr(value, "WIRE"):
        fields = [plain(getattr(value, name)) for name, _ in value.WIRE]
        return [value.TAG, *fields] if value.TAG >= 0 else fields
    return value


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((golden.GOLDEN_DIR / name).read_text())
    return data


@pytest.mark.parametrize(
    ("index", "name"), list(enumerate(n for n, _ in golden.one_of_each_action()))
)
def test_transaction_vectors_follow_the_documented_layout(index: int, name: str) -> None:
    """signing bytes = tag || chain id || 0x00 || msgpack([version, chain id, signer, nonce,
    expires_at_ms, [action]]); tx id = SHA-256 of them; signature = Ed25519 (RFC 8032) of them."""
    pinned = load("transactions.json")[name]
    action = golden.one_of_each_action()[index][1]
    nonce = golden.GENESIS_TIME_MS + index
    signer = golden.ALICE.public_key
    unsigned = [1, golden.CHAIN_ID, signer, nonce, nonce + 60_000, [action_array(action)]]
    signing = TX_TAG + golden.CHAIN_ID.encode() + b"\x00" + mp(unsigned)
    assert signing.hex() == pinned["signing_bytes"]
    assert hashlib.sha256(signing).hexdigest() == pinned["tx_id"]
    other_ed25519 = Ed25519PrivateKey.from_private_bytes(golden.ALICE.seed)
    signature = other_ed25519.sign(signing)
    assert signature.hex() == pinned["signature"]
    assert mp([*unsigned, signature]).hex() == pinned["wire"]


def test_block_hash_and_qc_follow_the_documented_layout() -> None:
    pinned = load("consensus.json")
    h = golden.sample_header()
    fields = [h.height, h.view, h.parent_hash, h.timestamp_ms, h.proposer, h.payload_root,
              h.state_root]  # fmt: skip
    assert mp(fields).hex() == pinned["block_header"]["wire"]
    block_hash = hashlib.sha256(BLOCK_TAG + mp(fields)).digest()
    assert block_hash.hex() == pinned["block_header"]["block_hash"]
    vote_body = [COMMIT_PHASE, 9, 7, block_hash]
    vote_bytes = VOTE_TAG + golden.CHAIN_ID.encode() + b"\x00" + mp(vote_body)
    assert vote_bytes.hex() == pinned["vote_signing_bytes"]
    sigs = []
    for v in golden.VALIDATORS[:3]:
        sig = Ed25519PrivateKey.from_private_bytes(v.seed).sign(vote_bytes)
        sigs.append([v.public_key, sig])
    assert mp([COMMIT_PHASE, 9, 7, block_hash, sigs]).hex() == pinned["commit_qc_wire"]


def test_merkle_vectors_follow_rfc6962_and_the_trie_layout() -> None:
    pinned = load("merkle.json")
    a, b = hashlib.sha256(b"leaf-a").digest(), hashlib.sha256(b"leaf-b").digest()
    assert hashlib.sha256(b"\x00golden leaf").hexdigest() == pinned["rfc6962_leaf_hash"]
    assert hashlib.sha256(b"\x01" + a + b).hexdigest() == pinned["rfc6962_node_hash"]
    assert hashlib.sha256(b"").hexdigest() == pinned["payload_root_0"]
    assert hashlib.sha256(b"\x01golden").hexdigest() == pinned["state_key_hash"]
    assert hashlib.sha256(b"\x00golden value").hexdigest() == pinned["state_value_hash"]
    # Empty trie: an empty bucket hashes 0x02; each of the 4 fixed levels above is 0x01 and
    # the 16 child hashes.
    node = hashlib.sha256(b"\x02").digest()
    for _ in range(4):
        node = hashlib.sha256(b"\x01" + node * 16).digest()
    assert node.hex() == pinned["state_empty_root"]
