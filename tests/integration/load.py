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


class Load:
    """Submits transactions (without waiting for commits) from one thread per node in
    ``nodes`` until stopped, round robin over the ``signers``' demo keys. Nonces start at
    the wall clock in ms and count up: unique, and inside the acceptance window. Counts the
    replies by outcome."""

    def __init__(self, cluster: Cluster, nodes: list[int], signers: list[int]) -> None:
        self.cluster = cluster
        self.keys = [cluster.demo_key(i) for i in signers]
        self.accepted = 0
        self.refused = 0
        self.unreachable = 0
        self._nonces = itertools.count(int(time.time() * 1000))
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(node,), daemon=True, name=f"load-{node}")
            for node in nodes
        ]

    def _next(self) -> tuple[Keypair, int]:
        with self._lock:
            nonce = next(self._nonces)
        return self.keys[nonce % len(self.keys)], nonce

    def _count(self, status_code: int | None) -> None:
        with self._lock:
            if status_code is None:
                self.unreachable += 1
            elif status_code == 202:
                self.accepted += 1
            else:
                self.refused += 1

    def _run(self, node: int) -> None:
        url = self.cluster.api(node) + "/v1/txs"
        headers = {"content-type": "application/msgpack"}
        with httpx.Client(timeout=5.0) as http:
            while not self._stopping.is_set():
                key, nonce = self._next()
                raw = ioc_order_tx(key, self.cluster.chain_id, nonce, nonce % 2 == 0)
                try:
                    r = http.post(url, content=raw, headers=headers)
                except httpx.HTTPError:
                    self._count(None)
                    continue
                self._count(r.status_code)

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stopping.set()
        for t in self._threads:
            t.join(timeout=10)

    def __enter__(self) -> Load:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
