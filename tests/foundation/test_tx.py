"""Transaction envelope: signing bytes, domain separation, tx ids, signature checks."""

from __future__ import annotations

import dataclasses

from state_machine.crypto import Keypair, verify
from state_machine.tx import (
    KIND_LIMIT,
    TIF_GTC,
    TX_DOMAIN_TAG,
    Action,
    CancelOrder,
    PlaceOrder,
    Transaction,
    sign_transaction,
)

KEY = Keypair(b"\x07" * 32)
OTHER = Keypair(b"\x08" * 32)


def make_tx(chain_id: str = "perpbft-test", nonce: int = 1_700_000_000_000) -> Transaction:
    actions: list[Action] = [PlaceOrder(0, True, KIND_LIMIT, TIF_GTC, 100, 3), CancelOrder(0, 42)]
    return sign_transaction(KEY, chain_id, nonce, actions, expires_at_ms=0)


def test_signed_tx_verifies_and_roundtrips() -> None:
    tx = make_tx()
    assert tx.signature_valid()
    assert Transaction.from_wire(tx.to_wire()) == tx


def test_signing_bytes_start_with_domain_tag_and_chain() -> None:
    body = make_tx().signing_bytes()
    assert body.startswith(TX_DOMAIN_TAG + b"perpbft-test\x00")


def test_tampering_any_signed_field_breaks_the_signature() -> None:
    tx = make_tx()
    variants = [
        dataclasses.replace(tx, nonce=tx.nonce + 1),
        dataclasses.replace(tx, expires_at_ms=5),
        dataclasses.replace(tx, chain_id="perpbft-other"),
        dataclasses.replace(tx, signer=OTHER.public_key),
        dataclasses.replace(tx, actions=tx.actions[:1]),
    ]
    for variant in variants:
        assert not variant.signature_valid()


def test_signature_from_another_chain_does_not_verify() -> None:
    a = make_tx("chain-a")
    b = make_tx("chain-b")
    assert a.tx_id() != b.tx_id()
    assert not dataclasses.replace(b, signature=a.signature).signature_valid()


def test_tx_id_is_independent_of_signature() -> None:
    tx = make_tx()
    forged = dataclasses.replace(tx, signature=b"\x00" * 64)
    assert forged.tx_id() == tx.tx_id()
    assert not forged.signature_valid()


def test_tx_signature_cannot_be_replayed_as_raw_message() -> None:
    """A signature over the tx bytes is not a signature over the bare msgpack payload."""
    tx = make_tx()
    body = tx.signing_bytes()
    stripped = body[len(TX_DOMAIN_TAG) + len(tx.chain_id) + 1 :]
    assert not verify(KEY.public_key, stripped, tx.signature)
