"""Risk engine cost per block: marks, funding samples and liquidation checks vs open positions.

For each ``--positions`` count, that many accounts open a BTC-PERP or ETH-PERP position
(seeded mix of sizes, sides and leverage 2-20x) against a market maker through apply_block. Then
``--blocks`` blocks are applied in which the validators move every perp oracle by a small
random step (at most ``--move-ppm``), with a few resting quotes on the books so the mark and
the funding premium are computed from a real book. Each measured block is a full apply_block
with those oracle transactions only, so its time is begin/end-block work: oracle medians, mark
prices, premium samples, the risk index lookups and whatever liquidations the moves cause.
The median block time is reported; with small moves it should not grow with the number of
positions.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from typing import Any

from bench import cascade
from bench.riskchain import CHAIN, PERPS, T0, Chain
from state_machine.exchange import ExchangeState
from state_machine.genesis import default_genesis
from state_machine.tx import (
    KIND_LIMIT,
    TIF_GTC,
    TIF_IOC,
    Action,
    CancelAll,
    OraclePrice,
    OracleUpdate,
    PlaceOrder,
    SetLeverage,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--positions", type=int, nargs="+", default=[10_000, 100_000], help="open positions"
    )
    parser.add_argument("--blocks", type=int, default=30, help="measured blocks per size")
    parser.add_argument("--move-ppm", type=int, default=200, help="largest oracle step (ppm)")
    parser.add_argument("--seed", type=int, default=1)
    cascade.add_arguments(parser)


def setup(n: int, seed: int) -> tuple[Chain, list[bytes], random.Random]:
    rng = random.Random(seed)
    traders = [(10**6 + i).to_bytes(32, "big") for i in range(n)]
    mm = (1).to_bytes(32, "big")
    validators = [bytes([0xF0 + i]) * 32 for i in range(4)]
    balances = [(t, 0, 10_000 * 10**6) for t in traders] + [(mm, 0, 10**11 * 10**6)]
    g = default_genesis(CHAIN, [(v, 1) for v in validators], balances, genesis_time_ms=T0)
    chain = Chain(ExchangeState.from_genesis(g))
    batch = 5_000
    for i in range(0, n, batch):
        part = traders[i : i + batch]
        chain.block(
            [
                chain.tx(t, [SetLeverage(2 + j % 2, rng.choice((2, 5, 10, 20)), False)])
                for j, t in enumerate(part, i)
            ]
        )
        quotes: list[Action] = []
        for mid, p in PERPS.items():
            quotes.append(PlaceOrder(mid, False, KIND_LIMIT, TIF_GTC, p, 10**7, 0, False, 0, 0))
            quotes.append(PlaceOrder(mid, True, KIND_LIMIT, TIF_GTC, p - 1, 10**7, 0, False, 0, 0))
        chain.block([chain.tx(mm, quotes)])
        txs = []
        for j, t in enumerate(part, i):
            mid = 2 + j % 2
            p = PERPS[mid]
            is_buy = rng.random() < 0.5
            lots = rng.randint(10, 200) * (1 if mid == 2 else 20)
            price = p if is_buy else p - 1
            txs.append(
                chain.tx(
                    t, [PlaceOrder(mid, is_buy, KIND_LIMIT, TIF_IOC, price, lots, 0, False, 0, 0)]
                )
            )
        chain.block(txs)
        chain.block([chain.tx(mm, [CancelAll(None)])])
        print(f"  {min(i + batch, n)}/{n} positions open", file=sys.stderr)
    # Thin quotes so marks and premiums come from a two-sided book.
    quotes = []
    for mid, p in PERPS.items():
        quotes.append(
            PlaceOrder(mid, False, KIND_LIMIT, TIF_GTC, p + p // 1000, 5_000, 0, False, 0, 0)
        )
        quotes.append(
            PlaceOrder(mid, True, KIND_LIMIT, TIF_GTC, p - p // 1000, 5_000, 0, False, 0, 0)
        )
    chain.block([chain.tx(mm, quotes)])
    chain.block([])  # the first end-block after a burst evaluates the touched units
    return chain, validators, rng


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.cascade:
        return cascade.run(args)
    results = []
    for n in args.positions:
        print(f"opening {n} positions...", file=sys.stderr)
        chain, validators, rng = setup(n, args.seed)
        st = chain.state
        open_positions = sum(
            1 for a in st.accounts.values() for p in a.positions.values() if p.size_lots
        )
        prices = {mid: st.mstates[mid].oracle_price_ticks for mid in PERPS}
        times = []
        liquidations = 0
        for _ in range(args.blocks):
            txs = []
            for mid in PERPS:
                step = rng.randint(-args.move_ppm, args.move_ppm)
                prices[mid] = prices[mid] * (10**6 + step) // 10**6
            for v in validators:
                ups = tuple(OraclePrice(mid, p) for mid, p in prices.items())
                txs.append(chain.tx(v, [OracleUpdate(ups)]))
            before = len(st.events)
            times.append(chain.block(txs) * 1000)
            liquidations += sum(1 for e in st.events[before:] if e[0] == "liquidation")
        # A block that crosses a funding boundary: the index moves, units whose funded-price
        # band it leaves are re-evaluated; then ten ordinary blocks.
        txs = [
            chain.tx(v, [OracleUpdate(tuple(OraclePrice(m, p) for m, p in prices.items()))])
            for v in validators
        ]
        funding_ms = chain.block(txs, dt_ms=3_600_000) * 1000
        later = [chain.block([], dt_ms=500) * 1000 for _ in range(10)]
        block_ms = statistics.median(times)
        print(
            f"{open_positions} positions: median block {block_ms:.3f} ms "
            f"(max {max(times):.3f} ms), {liquidations} liquidations; funding tick block "
            f"{funding_ms:.3f} ms; next ten blocks max {max(later):.3f} ms",
            file=sys.stderr,
        )
        results.append(
            {
                "positions": open_positions,
                "block_ms": round(block_ms, 3),
                "max_block_ms": round(max(times), 3),
                "liquidations": liquidations,
                "funding_tick_block_ms": round(funding_ms, 3),
                "after_funding_block_ms_max": round(max(later), 3),
            }
        )
    return {"bench": "risk", "results": results}
