"""A crash cascade for ``perpbft bench risk --cascade N``: one block whose oracle drop makes N
accounts liquidatable at once.

Setup (through apply_block, like ``bench risk``): N "victims" open BTC-PERP longs at high
leverage (15, 20, 25 or 50x, seeded), half in isolated margin, half in cross margin funded
with just their initial margin plus the fee; ``--cascade-bystanders`` accounts hold
low-leverage (2-5x) positions on both sides with ample collateral (they survive the drop and
are the ADL counterparties, as a real book's profitable shorts would be); a market maker
takes the other side of everything and the vault starts with ``--insurance-usdc`` of
insurance fund, so the block runs every rung of the ladder: book orders into thin bids, vault
takeovers until its exposure cap or margin refuses them, then ADL. Then one block in which
every validator submits BTC-PERP ``--drop-ppm`` lower: its apply_block is the measured risk
processing time (the block holds only the oracle updates, so the time is the end-block work:
oracle median, mark, funding sample, index lookups and the liquidations). ``--profile``
prints a cProfile summary of that block to stderr.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import pstats
import random
import sys
import time
from collections import Counter
from typing import Any

from bench.riskchain import CHAIN, PERPS, T0, Chain
from state_machine.exchange import ExchangeState
from state_machine.genesis import Parameters, default_genesis
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

BTC = 2
VICTIM_LEVERAGE = (15, 20, 25, 50)
SETUP_BATCH = 5_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cascade",
        type=int,
        default=0,
        metavar="N",
        help="crash-cascade mode: one oracle drop makes N accounts liquidatable",
    )
    parser.add_argument(
        "--cascade-bystanders", type=int, default=10_000, help="surviving low-leverage accounts"
    )
    parser.add_argument("--drop-ppm", type=int, default=60_000, help="the oracle drop (ppm)")
    parser.add_argument("--insurance-usdc", type=int, default=1_000_000, help="vault's fund")
    parser.add_argument("--profile", action="store_true", help="cProfile the cascade block")


def victim_plan(n: int, rng: random.Random) -> list[tuple[int, int, bool]]:
    """(lots, leverage, isolated) of each victim's long."""
    return [(rng.randint(10, 200), rng.choice(VICTIM_LEVERAGE), i % 2 == 0) for i in range(n)]


def victim_funds_atoms(lots: int, leverage: int) -> int:
    """Initial margin plus the taker fee with a little rounding room: a cross victim holds
    nothing more, so the drop takes it under maintenance as it would an isolated one."""
    notional = lots * PERPS[BTC]  # BTC-PERP's tick_lot_atoms is 1
    return notional // leverage + notional // 500 + 1_000


def setup(args: argparse.Namespace) -> tuple[Chain, list[bytes]]:
    rng = random.Random(args.seed)
    n, m = args.cascade, args.cascade_bystanders
    victims = [(2 * 10**6 + i).to_bytes(32, "big") for i in range(n)]
    bystanders = [(3 * 10**6 + i).to_bytes(32, "big") for i in range(m)]
    mm = (1).to_bytes(32, "big")
    validators = [bytes([0xF0 + i]) * 32 for i in range(4)]
    plan = victim_plan(n, rng)
    balances = [
        (v, 0, victim_funds_atoms(lots, lev))
        for v, (lots, lev, _) in zip(victims, plan, strict=True)
    ]
    balances += [(b, 0, 10_000 * 10**6) for b in bystanders] + [(mm, 0, 10**11 * 10**6)]
    params = Parameters(insurance_fund_atoms=args.insurance_usdc * 10**6)
    g = default_genesis(CHAIN, [(v, 1) for v in validators], balances, T0, params)
    chain = Chain(ExchangeState.from_genesis(g))
    price = PERPS[BTC]
    for i in range(0, n, SETUP_BATCH):
        part = list(zip(victims[i : i + SETUP_BATCH], plan[i : i + SETUP_BATCH], strict=True))
        chain.block([chain.tx(v, [SetLeverage(BTC, lev, iso)]) for v, (_, lev, iso) in part])
        quote = PlaceOrder(BTC, False, KIND_LIMIT, TIF_GTC, price, 10**7, 0, False, 0, 0)
        chain.block([chain.tx(mm, [quote])])
        buys = [
            chain.tx(v, [PlaceOrder(BTC, True, KIND_LIMIT, TIF_IOC, price, lots, 0, False, 0, 0)])
            for v, (lots, _, _) in part
        ]
        chain.block(buys)
        chain.block([chain.tx(mm, [CancelAll(None)])])
        print(f"  {min(i + SETUP_BATCH, n)}/{n} victims open", file=sys.stderr)
    open_bystanders(chain, bystanders, mm, rng)
    # A thin two-sided book so the ladder's first rung (reduce-only IOC into the bids) fills
    # part of the flow and the mark comes from a real book.
    quotes: list[Action] = []
    for k in range(1, 6):
        bid = price * (10**6 - args.drop_ppm - 2_000 * k) // 10**6
        quotes.append(PlaceOrder(BTC, True, KIND_LIMIT, TIF_GTC, bid, 2_000, 0, False, 0, 0))
        ask = price + price * k // 1000
        quotes.append(PlaceOrder(BTC, False, KIND_LIMIT, TIF_GTC, ask, 2_000, 0, False, 0, 0))
    chain.block([chain.tx(mm, quotes)])
    chain.block([])
    return chain, validators


def open_bystanders(chain: Chain, bystanders: list[bytes], mm: bytes, rng: random.Random) -> None:
    price = PERPS[BTC]
    for i in range(0, len(bystanders), SETUP_BATCH):
        part = bystanders[i : i + SETUP_BATCH]
        chain.block([chain.tx(b, [SetLeverage(BTC, rng.randint(2, 5), False)]) for b in part])
        quotes: list[Action] = [
            PlaceOrder(BTC, False, KIND_LIMIT, TIF_GTC, price, 10**7, 0, False, 0, 0),
            PlaceOrder(BTC, True, KIND_LIMIT, TIF_GTC, price - 1, 10**7, 0, False, 0, 0),
        ]
        chain.block([chain.tx(mm, quotes)])
        txs = []
        for j, b in enumerate(part, i):
            is_buy = j % 2 == 1
            lots = rng.randint(10, 200)
            px = price if is_buy else price - 1
            order = PlaceOrder(BTC, is_buy, KIND_LIMIT, TIF_IOC, px, lots, 0, False, 0, 0)
            txs.append(chain.tx(b, [order]))
        chain.block(txs)
        chain.block([chain.tx(mm, [CancelAll(None)])])
        print(f"  {min(i + SETUP_BATCH, len(bystanders))} bystanders open", file=sys.stderr)


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.cascade < 1 or args.cascade_bystanders < 0 or not 0 < args.drop_ppm < 500_000:
        raise ValueError("--cascade must be positive and --drop-ppm in 1..499999")
    print(
        f"opening {args.cascade} victims and {args.cascade_bystanders} bystanders...",
        file=sys.stderr,
    )
    chain, validators = setup(args)
    st = chain.state
    new_price = st.mstates[BTC].oracle_price_ticks * (10**6 - args.drop_ppm) // 10**6
    txs = [chain.tx(v, [OracleUpdate((OraclePrice(BTC, new_price),))]) for v in validators]
    before = len(st.events)
    profiler = cProfile.Profile() if args.profile else None
    cpu0 = time.process_time()
    if profiler is not None:
        profiler.enable()
    block_s = chain.block(txs)
    if profiler is not None:
        profiler.disable()
    cpu_s = time.process_time() - cpu0
    kinds = Counter(e[0] for e in st.events[before:])
    events_digest = hashlib.sha256(repr(st.events[before:]).encode()).hexdigest()
    state_digest = st.digest().hex()
    later_ms = [chain.block([]) * 1000 for _ in range(3)]
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
        print(out.getvalue(), file=sys.stderr)
    result = {
        "accounts": len(st.accounts),
        "victims": args.cascade,
        "drop_ppm": args.drop_ppm,
        "liquidated_units": kinds["liquidation"],
        "cascade_block_ms": round(block_s * 1000, 1),
        "cascade_block_cpu_ms": round(cpu_s * 1000, 1),
        "events": dict(sorted(kinds.items())),
        # A change to risk processing must leave both unchanged (same seed and arguments).
        "events_sha256": events_digest,
        "state_sha256": state_digest,
        "next_blocks_ms_max": round(max(later_ms), 1),
    }
    print(
        f"cascade: {kinds['liquidation']} units liquidated in one block of "
        f"{block_s * 1000:.1f} ms ({cpu_s * 1000:.1f} ms CPU); events {dict(kinds)}",
        file=sys.stderr,
    )
    return {"bench": "risk", "mode": "cascade", "cascade": result}
