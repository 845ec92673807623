"""A proposal's batch is bounded by actions as well as transactions and bytes."""

from __future__ import annotations

from hypothesis import given, settings

from node.chain import encode_events
from node.mempool import Admit, Mempool, signing_bytes_of_wire
from state_machine.codec import DecodeError, encode
from state_machine.crypto import Keypair
from state_machine.nonces import NonceTracker
from state_machine.tx import (
    KIND_LIMIT,
    TIF_GTC,
    Action,
    PlaceOrder,
    Transaction,
    sign_transaction,
)
from tests.conftest import examples
from tests.wire_strategies import strategy_for

CHAIN = "perpbft-test"
NOW = 1_700_000_000_000


def batch_tx(key: Keypair, nonce: int, orders: int) -> bytes:
    actions: list[Action] = [
        PlaceOrder(2, True, KIND_LIMIT, TIF_GTC, 100 + i, 1) for i in range(orders)
    ]
    return sign_transaction(key, CHAIN, nonce, actions).to_wire()


def test_take_batch_counts_actions() -> None:
    pool = Mempool(CHAIN, NonceTracker().check)
    key = Keypair(b"\x07" * 32)
    for n in range(10):
        prepared = pool.prepare(batch_tx(key, NOW + n, 50), NOW)
        assert not isinstance(prepared, Admit)
        assert pool.insert(prepared, True, NOW) is Admit.OK
    assert len(pool.take_batch(100, 10**9)) == 10
    assert len(pool.take_batch(100, 10**9, actions_max=120)) == 2
    # one transaction larger than the bound still goes alone, never starves
    assert len(pool.take_batch(100, 10**9, actions_max=10)) == 1


@settings(max_examples=examples(300), deadline=None)
@given(strategy_for(Transaction))
def test_signing_bytes_from_the_wire_equal_encoding_again(tx: Transaction) -> None:
    """The admission shortcut gives exactly the bytes the signature covers, for any
    transaction the decoder accepts (so the verdict cached for proposals is the same)."""
    raw = tx.to_wire()
    try:
        decoded = Transaction.from_wire(raw)
    except DecodeError:
        return  # too large for the wire limit: never reaches the shortcut
    assert signing_bytes_of_wire(raw, decoded) == decoded.signing_bytes()


def test_events_encode_like_lists() -> None:
    events = [("fill", 2, 100, 5, True, b"\x01" * 32), ("oracle", 3, 7)]
    assert encode_events(events) == encode([list(e) for e in events])
