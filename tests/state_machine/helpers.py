"""A small harness for exchange tests: genesis with funded accounts, blocks of unsigned txs.

apply_block never verifies signatures (the node does, once, on mempool entry), so test
transactions carry a zero signature.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from state_machine.exchange import (
    ActionResult,
    BlockContext,
    BlockResult,
    ExchangeState,
    apply_block,
)
from state_machine.genesis import Genesis, Parameters, default_genesis
from state_machine.results import event_to_dict
from state_machine.tx import (
    KIND_LIMIT,
    STP_CANCEL_RESTING,
    TIF_GTC,
    TX_VERSION,
    Action,
    PlaceOrder,
    Transaction,
)

CHAIN = "test-chain"
T0 = 1_700_000_000_000
USDC = 10**6
BTC_SPOT, ETH_SPOT, BTC_PERP, ETH_PERP = 0, 1, 2, 3
VALIDATORS = [bytes([0xA0 + i]) * 32 for i in range(4)]


def acct(i: int) -> bytes:
    return bytes([i]) * 32


def make_genesis(
    n_accounts: int = 4, parameters: Parameters | None = None, funded: Any = None
) -> Genesis:
    return default_genesis(
        CHAIN,
        [(v, 10) for v in VALIDATORS],
        funded if funded is not None else [acct(i) for i in range(1, n_accounts + 1)],
        genesis_time_ms=T0,
        parameters=parameters,
    )


def tx(signer: bytes, actions: Sequence[Action], nonce: int, **kw: Any) -> Transaction:
    return Transaction(
        kw.get("version", TX_VERSION),
        kw.get("chain_id", CHAIN),
        signer,
        nonce,
        kw.get("expires_at_ms", 0),
        tuple(actions),
        b"\x00" * 64,
    )


def limit(
    market: int,
    is_buy: bool,
    price: int,
    size: int,
    tif: int = TIF_GTC,
    reduce_only: bool = False,
    client_id: int = 0,
    stp: int = STP_CANCEL_RESTING,
    kind: int = KIND_LIMIT,
) -> PlaceOrder:
    return PlaceOrder(market, is_buy, kind, tif, price, size, 0, reduce_only, client_id, stp)


def trigger(
    market: int,
    is_buy: bool,
    kind: int,
    trigger_px: int,
    size: int,
    price: int = 0,
    client_id: int = 0,
    reduce_only: bool = False,
) -> PlaceOrder:
    return PlaceOrder(market, is_buy, kind, 0, price, size, trigger_px, reduce_only, client_id, 0)


class Harness:
    """An exchange state plus a clock; ``block()`` applies transactions as one block."""

    def __init__(self, genesis: Genesis | None = None) -> None:
        self.genesis = genesis if genesis is not None else make_genesis()
        self.state = ExchangeState.from_genesis(self.genesis)
        self.height = 0
        self.time_ms = T0
        self.nonce = T0
        self.last: BlockResult | None = None

    def block(self, txs: Sequence[Transaction], dt_ms: int = 500) -> BlockResult:
        self.height += 1
        self.time_ms += dt_ms
        self.last = apply_block(self.state, BlockContext(self.height, self.time_ms, b""), txs)
        return self.last

    def next_nonce(self) -> int:
        self.nonce += 1
        return self.nonce

    def do(self, signer: bytes, *actions: Action) -> list[ActionResult]:
        """One transaction in its own block; returns its action results."""
        res = self.block([tx(signer, actions, self.next_nonce())])
        return list(res.tx_results[0].actions)

    def one(self, signer: bytes, action: Action) -> ActionResult:
        return self.do(signer, action)[0]

    def events(self, kind: str) -> list[dict[str, Any]]:
        assert self.last is not None
        return [event_to_dict(e) for e in self.last.events if e[0] == kind]

    def bal(self, who: bytes, asset: int) -> tuple[int, int]:
        a = self.state.accounts.get(who)
        if a is None or asset not in a.balances:
            return (0, 0)
        b = a.balances[asset]
        return (b.available_atoms, b.held_atoms)

    def oracle(self, market: int, price: int) -> None:
        from state_machine.tx import OraclePrice, OracleUpdate

        self.block(
            [
                tx(v, [OracleUpdate((OraclePrice(market, price),))], self.next_nonce())
                for v in VALIDATORS
            ]
        )


def run_bench(*args: str) -> dict[str, Any]:
    """Run ``perpbft bench ARGS`` as a subprocess; returns the JSON object of its last line."""
    import json
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "bench", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr
    last: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return last
