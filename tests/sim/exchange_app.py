"""The real exchange state machine as the simulator's application.

Each node executes committed blocks with ``state_machine.exchange.apply_block`` on its own
``ExchangeState``; the state root per height is ``state.digest()``, so the checkers compare the
full exchange state of every honest node at every height. Payloads are signed limit orders from
a few funded traders; the application check verifies each transaction's signature, as the node
does on mempool entry.
"""

from __future__ import annotations

import random
from typing import Any

from consensus.types import Block
from state_machine.codec import DecodeError
from state_machine.crypto import Keypair, sha256
from state_machine.exchange import BlockContext, ExchangeState, apply_block
from state_machine.genesis import Genesis, default_genesis
from state_machine.tx import KIND_LIMIT, TIF_GTC, TIF_IOC, PlaceOrder, Transaction, sign_transaction

TRADERS = [Keypair(sha256(b"perpbft-sim-trader-%d" % i)) for i in range(6)]
SPOT_MARKET = 0
PERP_MARKET = 2


def sim_genesis(chain_id: str, validator_keys: list[bytes], genesis_time_ms: int) -> Genesis:
    return default_genesis(
        chain_id,
        [(k, 1) for k in validator_keys],
        [t.public_key for t in TRADERS],
        genesis_time_ms=genesis_time_ms,
    )


class ExchangeApp:
    def __init__(self, genesis: Genesis) -> None:
        self.state = ExchangeState.from_genesis(genesis)
        self.height = 0
        self.root = self.state.digest()
        self.fills = 0

    def apply(self, block: Block) -> bytes:
        header = block.header
        txs = [Transaction.from_wire(data) for data in block.payload]
        ctx = BlockContext(header.height, header.timestamp_ms, header.proposer)
        result = apply_block(self.state, ctx, txs)
        self.fills += sum(1 for e in result.events if e[0] == "fill")
        self.height = header.height
        self.root = self.state.digest()
        return self.root


def check_payload(block: Block) -> bool:
    """Every transaction decodes strictly and carries a valid signature."""
    for data in block.payload:
        try:
            tx = Transaction.from_wire(data)
        except DecodeError:
            return False
        if not tx.signature_valid():
            return False
    return True


class OrderFlow:
    """Random crossing limit orders around one price; nonces are unique milliseconds."""

    def __init__(self, chain_id: str, genesis_time_ms: int) -> None:
        self.chain_id = chain_id
        self.nonce = genesis_time_ms

    def __call__(self, rng: random.Random, height: int) -> tuple[bytes, ...]:
        out = []
        for _ in range(rng.randrange(0, 6)):
            trader = TRADERS[rng.randrange(len(TRADERS))]
            market = rng.choice((SPOT_MARKET, PERP_MARKET))
            order = PlaceOrder(
                market,
                rng.random() < 0.5,
                KIND_LIMIT,
                rng.choice((TIF_GTC, TIF_GTC, TIF_IOC)),
                rng.randint(5_999_995, 6_000_005),  # around the BTC markets' initial price
                rng.randint(2, 6),
            )
            self.nonce += 1
            tx = sign_transaction(trader, self.chain_id, self.nonce, [order])
            out.append(tx.to_wire())
        return tuple(out)


def configure(scenario: Any, chain_id: str, validator_keys: list[bytes], t0: int) -> None:
    """Make ``scenario`` run the exchange instead of the key-value application."""
    genesis = sim_genesis(chain_id, validator_keys, t0)
    scenario.app_factory = lambda: ExchangeApp(genesis)
    scenario.genesis_root = ExchangeState.from_genesis(genesis).digest()
    scenario.payload_factory = OrderFlow(chain_id, t0)
    scenario.check_payload = check_payload
