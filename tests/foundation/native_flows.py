"""Seeded flows whose bytes the compiled and the pure-Python builds must agree on.

    python -m tests.foundation.native_flows [--actions N]   # one JSON object on stdout

Run by tests/foundation/test_native_build.py twice, once with ``PERPBFT_BUILD=pure``: it
enables the compiled build first (as the ``perpbft`` command does), then digests, per flow,
every block's state writes, events and results and the final state root, from

* ``bench matching``'s order workload (three seeds, with and without a waiting good-til order);
* a crash cascade (``bench risk --cascade``'s setup and an oracle drop: liquidations, the
  vault's takeovers, ADL);
* the golden chain (every action type, a trigger, a liquidation).
"""

from __future__ import annotations

from nativebuild.loader import activate, build_name

activate()  # before anything imports state_machine

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

from bench import cascade, matching  # noqa: E402
from state_machine.exchange import BlockContext, ExchangeState, apply_block  # noqa: E402
from state_machine.genesis import default_genesis  # noqa: E402
from state_machine.merkle_state import MerkleState  # noqa: E402
from state_machine.tx import OraclePrice, OracleUpdate  # noqa: E402
from tests.vectors.golden import chain_vectors  # noqa: E402


def digest(obj: Any) -> str:
    return hashlib.sha256(repr(obj).encode()).hexdigest()


def state_root(state: ExchangeState) -> str:
    return MerkleState.from_entries(state.entries()).root().hex()


def matching_flow(seed: int, actions: int, good_til: bool) -> dict[str, Any]:
    accounts = [(i + 1).to_bytes(32, "big") for i in range(60)]
    validators = [(bytes([0xF0 + i]) * 32, 1) for i in range(4)]
    funded = [*accounts, matching.GOOD_TIL_OWNER] if good_til else accounts
    genesis = default_genesis(matching.CHAIN, validators, funded, genesis_time_ms=matching.T0)
    state = ExchangeState.from_genesis(genesis)
    if good_til:
        matching.rest_good_til_order(state, matching.GOOD_TIL_OWNER)
    work = matching.Workload(state, accounts, seed)
    blocks = []
    for height in range(state.height + 1, state.height + 1 + actions // 500):
        txs = work.block(500)
        ctx = BlockContext(height, matching.T0 + 500 * height, b"")
        res = apply_block(state, ctx, txs, [bytes(32)] * len(txs))
        results = [tr.to_obj() for tr in res.tx_results]
        blocks.append(digest((res.writes, res.events, results)))
    return {"blocks": blocks, "root": state_root(state)}


def cascade_flow(seed: int) -> dict[str, Any]:
    args = argparse.Namespace(
        cascade=150, cascade_bystanders=80, drop_ppm=60_000, insurance_usdc=2_000, seed=seed
    )
    chain, validators = cascade.setup(args)
    st = chain.state
    price = st.mstates[cascade.BTC].oracle_price_ticks * (10**6 - args.drop_ppm) // 10**6
    txs = [chain.tx(v, [OracleUpdate((OraclePrice(cascade.BTC, price),))]) for v in validators]
    chain.block(txs)
    events = list(st.events)
    chain.block([])
    kinds = sorted({e[0] for e in events})
    return {"events": digest(events), "kinds": kinds, "root": state_root(st)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--actions", type=int, default=6_000)
    args = parser.parse_args(argv)
    out: dict[str, Any] = {"build": build_name()}
    for seed in (1, 2, 3):
        out[f"matching_{seed}"] = matching_flow(seed, args.actions, good_til=False)
    out["matching_good_til"] = matching_flow(4, args.actions, good_til=True)
    out["cascade"] = cascade_flow(1)
    out["golden_chain"] = digest(chain_vectors())
    json.dump(out, sys.stdout, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
