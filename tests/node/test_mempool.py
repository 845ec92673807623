"""Mempool admission, limits, fairness and removal."""

from __future__ import annotations

import dataclasses

from node.mempool import Admit, Mempool, MempoolLimits
from node.sigpool import SignaturePool
from state_machine.crypto import Keypair
from state_machine.nonces import WINDOW_PAST_MS, NonceCheck, NonceTracker
from state_machine.tx import KIND_LIMIT, TIF_GTC, PlaceOrder, sign_transaction

CHAIN = "perpbft-test"
NOW = 1_800_000_000_000
KEYS = [Keypair(bytes([i]) * 32) for i in range(1, 6)]


def raw_tx(key: Keypair, nonce: int, chain: str = CHAIN, expires: int = 0) -> bytes:
    order = PlaceOrder(0, True, KIND_LIMIT, TIF_GTC, 100, 1)
    return sign_transaction(key, chain, nonce, [order], expires_at_ms=expires).to_wire()


def admit(pool: Mempool, raw: bytes, now: int = NOW) -> Admit:
    prepared = pool.prepare(raw, now)
    if isinstance(prepared, Admit):
        return prepared
    with SignaturePool(1) as sigs:
        (ok,) = sigs.verify_many(pool.signature_items([prepared]))
    return pool.insert(prepared, ok, now)


def make_pool(limits: MempoolLimits | None = None) -> tuple[Mempool, NonceTracker]:
    committed = NonceTracker()
    return Mempool(CHAIN, committed.check, limits), committed


def test_valid_transaction_admitted_once() -> None:
    pool, _ = make_pool()
    raw = raw_tx(KEYS[0], NOW)
    assert admit(pool, raw) is Admit.OK
    assert len(pool) == 1 and pool.size_bytes == len(raw)
    assert admit(pool, raw) is Admit.DUPLICATE


def test_each_rejection_reason() -> None:
    pool, committed = make_pool(MempoolLimits(tx_bytes_max=2000))
    assert admit(pool, b"\x00" * 2001) is Admit.OVERSIZE
    assert admit(pool, b"\x93garbage") is Admit.MALFORMED
    assert admit(pool, raw_tx(KEYS[0], NOW, chain="other-chain")) is Admit.WRONG_CHAIN
    assert admit(pool, raw_tx(KEYS[0], NOW, expires=NOW - 1)) is Admit.EXPIRED
    assert admit(pool, raw_tx(KEYS[0], NOW - WINDOW_PAST_MS)) is Admit.NONCE_OUT_OF_WINDOW
    committed.accept(KEYS[0].public_key, NOW + 7, NOW)
    assert admit(pool, raw_tx(KEYS[0], NOW + 7)) is Admit.NONCE_USED
    # same signer and nonce as a pending transaction, different content
    assert admit(pool, raw_tx(KEYS[1], NOW, expires=NOW + 10_000)) is Admit.OK
    assert admit(pool, raw_tx(KEYS[1], NOW)) is Admit.NONCE_USED
    # bad signature: flip one byte of the signature (the last 64 bytes of the encoding)
    good = raw_tx(KEYS[2], NOW)
    bad = good[:-1] + bytes([good[-1] ^ 1])
    assert admit(pool, bad) is Admit.BAD_SIGNATURE
    assert pool.rejected["bad_signature"] == 1 and pool.rejected["oversize"] == 1
    assert len(pool) == 1


def test_count_and_byte_limits() -> None:
    pool, _ = make_pool(MempoolLimits(txs_max=3, per_signer_max=10))
    for i in range(3):
        assert admit(pool, raw_tx(KEYS[0], NOW + i)) is Admit.OK
    assert admit(pool, raw_tx(KEYS[1], NOW)) is Admit.MEMPOOL_FULL
    size = len(raw_tx(KEYS[0], NOW))
    pool2, _ = make_pool(MempoolLimits(bytes_max=2 * size, per_signer_max=10))
    assert admit(pool2, raw_tx(KEYS[0], NOW)) is Admit.OK
    assert admit(pool2, raw_tx(KEYS[0], NOW + 1)) is Admit.OK
    assert admit(pool2, raw_tx(KEYS[0], NOW + 2)) is Admit.MEMPOOL_FULL


def test_flood_from_one_signer_does_not_starve_others() -> None:
    pool, _ = make_pool(MempoolLimits(txs_max=1000, per_signer_max=50))
    outcomes = [admit(pool, raw_tx(KEYS[0], NOW + i)) for i in range(80)]
    assert outcomes.count(Admit.OK) == 50 and outcomes.count(Admit.SIGNER_LIMIT) == 30
    for key in KEYS[1:]:
        assert admit(pool, raw_tx(key, NOW)) is Admit.OK
    batch = pool.take_batch(txs_max=8, bytes_max=10**9)
    signers = [e.tx.signer for e in batch]
    # round robin: every other signer gets its transaction into the first block
    assert {k.public_key for k in KEYS} <= set(signers)
    assert signers.count(KEYS[0].public_key) == 4


def test_take_batch_respects_bytes() -> None:
    pool, _ = make_pool()
    for i in range(5):
        admit(pool, raw_tx(KEYS[0], NOW + i))
    size = len(raw_tx(KEYS[0], NOW))
    assert len(pool.take_batch(txs_max=100, bytes_max=2 * size + 1)) == 2
    assert len(pool.take_batch(txs_max=100, bytes_max=10**9)) == 5


def test_remove_committed_and_stale() -> None:
    pool, committed = make_pool()
    raws = [raw_tx(KEYS[0], NOW + i, expires=NOW + 1000 * (i + 1)) for i in range(4)]
    for raw in raws:
        assert admit(pool, raw) is Admit.OK
    entries = pool.take_batch(100, 10**9)
    assert pool.remove([entries[0].tx_id]) == 1
    assert len(pool) == 3
    # the committed nonce of tx 1 became used by another path
    committed.accept(KEYS[0].public_key, NOW + 1, NOW)
    assert pool.remove_stale(NOW + 1500) == 1  # tx 1 (nonce used); tx 0 was removed
    assert pool.remove_stale(NOW + 3000) == 1  # tx 2 expired at NOW+3000
    assert len(pool) == 1
    assert pool.signer_count(KEYS[0].public_key) == 1
    # after removal, the pending nonce is free again for a new transaction
    assert admit(pool, raw_tx(KEYS[0], NOW, expires=NOW + 5000), now=NOW + 3000) is Admit.OK


def test_committed_nonce_check_consulted() -> None:
    calls: list[tuple[bytes, int, int]] = []

    def committed(signer: bytes, nonce: int, now: int) -> NonceCheck:
        calls.append((signer, nonce, now))
        return NonceCheck.TOO_LOW

    pool = Mempool(CHAIN, committed)
    assert admit(pool, raw_tx(KEYS[0], NOW)) is Admit.NONCE_TOO_LOW
    assert calls and calls[0][1] == NOW


def test_limits_validated() -> None:
    try:
        MempoolLimits(txs_max=0)
    except ValueError as exc:
        assert "txs_max" in str(exc)
    else:
        raise AssertionError("zero limit accepted")
    assert dataclasses.replace(MempoolLimits(), txs_max=5).txs_max == 5
