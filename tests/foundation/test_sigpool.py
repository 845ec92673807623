"""verify_many: same answers as verify(), in input order, across threads."""

from __future__ import annotations

from node.sigpool import SignaturePool, verify_many
from state_machine.crypto import Keypair, verify


def test_verify_many_matches_verify_in_order() -> None:
    keys = [Keypair(bytes([i]) * 32) for i in range(1, 9)]
    items = []
    for i in range(500):
        key = keys[i % len(keys)]
        msg = f"message {i}".encode()
        sig = key.sign(msg)
        if i % 7 == 0:
            sig = bytes([sig[0] ^ 1]) + sig[1:]  # corrupt some
        if i % 11 == 0:
            msg = msg + b"!"
        items.append((key.public_key, msg, sig))
    expected = [verify(*item) for item in items]
    assert expected.count(False) > 50
    with SignaturePool(threads=3) as pool:
        assert pool.verify_many(items) == expected
        assert pool.verify_many(items[:5]) == expected[:5]
        assert pool.verify_many([]) == []
    assert verify_many(items, threads=2) == expected
