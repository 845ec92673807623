"""Background transaction load for cluster tests: a thread submitting signed orders."""

from __future__ import annotations

import itertools
import threading
import time

import httpx

from state_machine.crypto import Keypair
from state_machine.tx import KIND_LIMIT, TIF_IOC, PlaceOrder, sign_transaction
from tests.cluster import Cluster

# IOC orders far from each other never rest, so the books stay small however long the load runs.
BTC_PERP_MARKET_ID = 2
BUY_PRICE_TICKS = 5_900_000
SELL_PRICE_TICKS = 6_100_000


def ioc_order_tx(
    key: Keypair, chain_id: str, nonce: int, is_buy: bool, expires_at_ms: int = 0
) -> bytes:
    price = BUY_PRICE_TICKS if is_buy else SELL_PRICE_TICKS
    order = PlaceOrder(BTC_PERP_MARKET_ID, is_buy, KIND_LIMIT, TIF_IOC, price, 1)
    return sign_transaction(key, chain_id, nonce, [order], expires_at_ms).to_wire()


class Load(threading.Thread):
    """Submits transactions round robin to ``nodes`` (without waiting for commits) until
    stopped. Nonces start at the wall clock in ms and count up, so they are unique and
    inside the acceptance window. Counts the replies by status."""

    def __init__(self, cluster: Cluster, nodes: list[int], signers: list[int]) -> None:
        super().__init__(daemon=True, name="cluster-load")
        self.cluster = cluster
        self.nodes = nodes
        self.keys = [cluster.demo_key(i) for i in signers]
        self.accepted = 0
        self.refused = 0
        self.unreachable = 0
        self._stopping = threading.Event()

    def run(self) -> None:
        nonce = itertools.count(int(time.time() * 1000))
        with httpx.Client(timeout=5.0) as http:
            for n in itertools.count():
                if self._stopping.is_set():
                    return
                node = self.nodes[n % len(self.nodes)]
                key = self.keys[n % len(self.keys)]
                raw = ioc_order_tx(key, self.cluster.chain_id, next(nonce), n % 2 == 0)
                try:
                    r = http.post(
                        self.cluster.api(node) + "/v1/txs",
                        content=raw,
                        headers={"content-type": "application/msgpack"},
                    )
                except httpx.HTTPError:
                    self.unreachable += 1
                    continue
                if r.status_code == 202:
                    self.accepted += 1
                else:
                    self.refused += 1

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=10)

    def __enter__(self) -> Load:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
