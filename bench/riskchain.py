"""The risk benches' chain: apply_block on an in-memory ExchangeState, blocks timed.

Shared by ``bench risk``'s quiet blocks (bench/risk.py) and its crash cascade
(bench/cascade.py); transactions carry a zero signature (apply_block does not verify:
admission does).
"""

from __future__ import annotations

import time

from state_machine.exchange import BlockContext, ExchangeState, apply_block
from state_machine.tx import TX_VERSION, Action, Transaction

CHAIN = "perpbft-bench"
T0 = 1_700_000_000_000
PERPS = {2: 6_000_000, 3: 300_000}


class Chain:
    def __init__(self, state: ExchangeState) -> None:
        self.state = state
        self.height = 0
        self.time_ms = T0
        self.nonce = T0

    def tx(self, signer: bytes, actions: list[Action]) -> Transaction:
        self.nonce += 1
        return Transaction(TX_VERSION, CHAIN, signer, self.nonce, 0, tuple(actions), bytes(64))

    def block(self, txs: list[Transaction], dt_ms: int = 500) -> float:
        self.height += 1
        self.time_ms += dt_ms
        ids = [bytes(32)] * len(txs)
        t0 = time.perf_counter()
        apply_block(self.state, BlockContext(self.height, self.time_ms, b""), txs, ids)
        return time.perf_counter() - t0
