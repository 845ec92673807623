"""The one verifier, pinned on third-party Ed25519 vectors (../shared/vectors/ed25519).

perpbft verifies with libsodium only. The tables below pin its answer on every edge case so a
library upgrade that changed an answer (and could fork the chain) fails here first. The reasons
are recorded in docs/ARCHITECTURE.md ("Ed25519 edge cases").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from state_machine.crypto import Keypair, verify
from tests.conftest import VECTORS_DIR

ED_DIR = VECTORS_DIR / "ed25519"


def load(name: str) -> Any:
    return json.loads(Path(ED_DIR / name).read_text())


# novifinancial/ed25519-speccheck cases: (accepted by perpbft, why).
SPECCHECK_PINNED: dict[int, tuple[bool, str]] = {
    0: (False, "S = 0 with small-order A and R: small-order public key rejected"),
    1: (False, "small-order A: rejected by libsodium's small-order blocklist"),
    2: (False, "small-order R: rejected by libsodium's small-order blocklist"),
    3: (True, "mixed-order A and R that pass the cofactorless equation: accepted"),
    4: (False, "passes only the cofactored equation; libsodium is cofactorless"),
    5: (False, "passes only the cofactored equation; libsodium is cofactorless"),
    6: (False, "S > L: non-canonical scalar rejected"),
    7: (False, "S much larger than L: non-canonical scalar rejected"),
    8: (False, "non-canonical encoding of R rejected"),
    9: (False, "non-canonical encoding of R rejected"),
    10: (False, "non-canonical encoding of A rejected"),
    11: (False, "non-canonical A reduced before hashing: rejected (OpenSSL accepts)"),
}

# C2SP/CCTV ed25519vectors.json: the vector numbers libsodium accepts (all others rejected).
CCTV_ACCEPTED = frozenset(
    {
        *(7, 29, 50, 117, 139, 161, 182, 249, 305, 411, 425, 438, 465, 473, 481, 489, 497),
        *(511, 525, 538, 565, 573, 581, 589, 597, 611, 625, 638, 665, 673, 681, 689, 697),
        *(711, 725, 738, 765, 773, 781, 789, 797, 832, 899),
    }
)
# Flags that libsodium always rejects (blocklisted or non-canonical points, reencoded k).
CCTV_ALWAYS_REJECTED_FLAGS = {
    "low_order_A",
    "low_order_R",
    "non_canonical_A",
    "non_canonical_R",
    "reencoded_k",
    "low_order_residue",
}


def test_rfc8032_sign_and_verify_exact_bytes() -> None:
    cases = load("rfc8032_ed25519.json")
    assert len(cases) == 5
    for case in cases:
        key = Keypair(bytes.fromhex(case["secret_key"]))
        message = bytes.fromhex(case["message"])
        assert key.public_key.hex() == case["public_key"], case["name"]
        signature = key.sign(message)
        assert signature.hex() == case["signature"], case["name"]
        assert verify(key.public_key, message, signature), case["name"]
        assert not verify(key.public_key, message + b"\x00", signature), case["name"]


def test_speccheck_cases_pinned() -> None:
    cases = load("speccheck_cases.json")
    assert len(cases) == len(SPECCHECK_PINNED)
    for i, case in enumerate(cases):
        got = verify(
            bytes.fromhex(case["pub_key"]),
            bytes.fromhex(case["message"]),
            bytes.fromhex(case["signature"]),
        )
        expected, why = SPECCHECK_PINNED[i]
        assert got is expected, f"speccheck case {i}: {why}"


def test_wycheproof_all_expectations_met() -> None:
    suite = load("wycheproof_ed25519_test.json")
    count = 0
    for group in suite["testGroups"]:
        public_key = bytes.fromhex(group["publicKey"]["pk"])
        for test in group["tests"]:
            count += 1
            got = verify(public_key, bytes.fromhex(test["msg"]), bytes.fromhex(test["sig"]))
            assert got is (test["result"] == "valid"), f"wycheproof tcId {test['tcId']}"
    assert count == suite["numberOfTests"] == 151


def test_cctv_edge_cases_pinned() -> None:
    vectors = load("cctv_ed25519vectors.json")
    assert len(vectors) == 914
    accepted = set()
    for v in vectors:
        if verify(bytes.fromhex(v["key"]), v["msg"].encode(), bytes.fromhex(v["sig"])):
            accepted.add(v["number"])
            assert not set(v["flags"] or ()) & CCTV_ALWAYS_REJECTED_FLAGS, v["number"]
    assert accepted == CCTV_ACCEPTED


@pytest.mark.parametrize(
    ("public_key", "signature"),
    [(b"\x01" * 31, b"\x00" * 64), (b"\x01" * 32, b"\x00" * 63), (b"", b"")],
)
def test_wrong_lengths_are_invalid_not_errors(public_key: bytes, signature: bytes) -> None:
    assert verify(public_key, b"msg", signature) is False
