"""A proposal's batch is bounded by actions as well as transactions and bytes."""

from __future__ import annotations

from node.mempool import Admit, Mempool
from state_machine.crypto import Keypair
from state_machine.nonces import NonceTracker
from state_machine.tx import KIND_LIMIT, TIF_GTC, Action, PlaceOrder, sign_transaction

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
