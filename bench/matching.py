"""Exchange throughput: order actions per second through apply_block vs a bare matching loop.

The workload (seeded, ``--seed``) runs over the default genesis markets, two spot (BTC/USDC,
ETH/USDC) and two perpetuals (BTC-PERP, ETH-PERP, with initial-margin checks), traded by
``--accounts`` funded accounts. Each action is drawn as:

* 55 % limit adds near the touch: GTC (1 in 5 post-only) on a random side, 0-10 ticks behind
  the best price on that side (or around the reference price if the side is empty);
* 30 % cancels of one of the account's open orders (by id, 1 in 4 by client id);
* 10 % crossing orders: IOC (1 in 3 GTC) through the opposite best by 0-5 ticks;
* 5 % amends of an open order (half a price move, half a size decrease).

Actions are grouped into transactions of 1-8 actions from one account and blocks of
``--block-actions`` actions, applied with :func:`state_machine.exchange.apply_block` (signatures
are not part of this benchmark: the node verifies them once on mempool entry). Only
``apply_block`` is timed; generating the next block (which looks at the open orders) is not.

The same flow, in the order the engine executed it (ids resolved), is then replayed through a
bare price-time loop with no accounts, fees or margin: one dict of deques per book side, sorted
price lists, lazy cancels. That loop bounds what Python can do for this flow.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from bisect import insort
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from client.errors import CliError
from nativebuild.loader import build_name
from state_machine.exchange import BlockContext, ExchangeState, apply_block
from state_machine.genesis import default_genesis
from state_machine.tx import (
    KIND_LIMIT,
    KIND_STOP_MARKET,
    STP_CANCEL_RESTING,
    TIF_ALO,
    TIF_GTC,
    TIF_IOC,
    TX_VERSION,
    Action,
    AmendOrder,
    CancelByClientId,
    CancelOrder,
    PlaceOrder,
    PlaceOrderExtended,
    Transaction,
)

CHAIN = "perpbft-bench"
GOOD_TIL_OWNER = bytes([0xEE]) * 32
T0 = 1_700_000_000_000
MARKETS = (0, 1, 2, 3)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--actions", type=int, default=200_000, help="order actions to apply")
    parser.add_argument("--seed", type=int, default=1, help="workload seed")
    parser.add_argument("--accounts", type=int, default=200, help="trading accounts")
    parser.add_argument("--block-actions", type=int, default=2000, help="actions per block")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the engine")
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() the genesis state and raise the gen-0 threshold, as a node may",
    )
    parser.add_argument(
        "--good-til-order",
        action="store_true",
        help="first place one far good-til stop order, so every block follows its events for "
        "the order tools (state_machine/algo/hook.py) as a chain with TWAPs or TP/SL does",
    )


class Workload:
    """Draws the next block's transactions from the current state (not timed)."""

    def __init__(self, state: ExchangeState, accounts: list[bytes], seed: int) -> None:
        self.state = state
        self.accounts = accounts
        self.rng = random.Random(seed)
        self.nonce = T0
        self.client_id = 0

    def _ref(self, mid: int) -> int:
        ms = self.state.mstates[mid]
        return ms.oracle_price_ticks or ms.last_trade_price_ticks

    def _action(self, signer: bytes) -> Action:
        rng = self.rng
        st = self.state
        mid = rng.choice(MARKETS)
        book = st.books[mid]
        ref = self._ref(mid)
        r = rng.random()
        acct = st.accounts[signer]
        if (r >= 0.55 and r < 0.85) or (r >= 0.95):
            if acct.orders:
                oid = rng.choice(list(acct.orders))
                o = acct.orders[oid]
                if r >= 0.95:
                    if rng.random() < 0.5:
                        step = rng.choice((-1, 1))
                        price = o.price_ticks + (-step if o.is_buy else step)
                        return AmendOrder(o.market_id, oid, price, o.size_lots)
                    return AmendOrder(o.market_id, oid, o.price_ticks, max(1, o.size_lots - 1))
                if o.client_id and rng.random() < 0.25:
                    return CancelByClientId(o.market_id, o.client_id)
                return CancelOrder(o.market_id, oid)
            r = 0.0  # nothing to cancel or amend: add instead
        is_buy = rng.random() < 0.5
        size = rng.randint(5, 50)
        if r < 0.55:
            side = book.bids if is_buy else book.asks
            best = side.best_price()
            if not best:
                opp = (book.asks if is_buy else book.bids).best_price()
                best = (opp - 1 if is_buy else opp + 1) if opp else ref
            off = rng.randint(0, 10)
            price = best - off if is_buy else best + off
            tif = TIF_ALO if rng.random() < 0.2 else TIF_GTC
            self.client_id += 1
            cid = self.client_id if rng.random() < 0.5 else 0
            return PlaceOrder(
                mid, is_buy, KIND_LIMIT, tif, price, size, 0, False, cid, STP_CANCEL_RESTING
            )
        opp_best = (book.asks if is_buy else book.bids).best_price() or ref
        off = rng.randint(0, 5)
        price = opp_best + off if is_buy else opp_best - off
        tif = TIF_GTC if rng.random() < 1 / 3 else TIF_IOC
        return PlaceOrder(
            mid, is_buy, KIND_LIMIT, tif, price, size, 0, False, 0, STP_CANCEL_RESTING
        )

    def block(self, n_actions: int) -> list[Transaction]:
        txs = []
        left = n_actions
        while left > 0:
            k = min(left, self.rng.randint(1, 8))
            signer = self.rng.choice(self.accounts)
            actions = tuple(self._action(signer) for _ in range(k))
            self.nonce += 1
            txs.append(Transaction(TX_VERSION, CHAIN, signer, self.nonce, 0, actions, bytes(64)))
            left -= k
        return txs


def flow_of_block(txs: list[Transaction], results: Any) -> list[tuple[Any, ...]]:
    """The block's order actions in the engine's execution order, ids resolved."""
    by_class: list[list[tuple[Any, ...]]] = [[], [], []]
    for tx, tr in zip(txs, results, strict=True):
        for a, res in zip(tx.actions, tr.actions, strict=True):
            if isinstance(a, PlaceOrder):
                cls = 1 if a.tif == TIF_ALO else 2
                by_class[cls].append(
                    ("add", a.market_id, res.order_id, a.is_buy, a.price_ticks, a.size_lots, a.tif)
                )
            elif isinstance(a, CancelOrder):
                by_class[0].append(("cancel", a.market_id, a.order_id))
            elif isinstance(a, CancelByClientId):
                by_class[0].append(("cancel", a.market_id, res.order_id))
            elif isinstance(a, AmendOrder):
                by_class[2].append(("amend", a.market_id, a.order_id, a.price_ticks, a.size_lots))
    return by_class[0] + by_class[1] + by_class[2]


def bare_loop(flow: list[tuple[Any, ...]], n_markets: int) -> float:
    """Replay the flow through a bare price-time loop; returns seconds taken."""
    # per market: [bid levels, bid keys, ask levels, ask keys]; keys ascending, best last
    books: list[list[Any]] = [[{}, [], {}, []] for _ in range(n_markets)]
    orders: dict[int, list[Any]] = {}  # oid -> [size, is_buy, price, market]

    def add(mid: int, oid: int, is_buy: bool, price: int, size: int, tif: int) -> None:
        b = books[mid]
        levels: Any
        keys: Any
        olevels: Any
        okeys: Any
        if is_buy:
            levels, keys, olevels, okeys, sign = b[2], b[3], b[0], b[1], -1
        else:
            levels, keys, olevels, okeys, sign = b[0], b[1], b[2], b[3], 1
        # match against the opposite side (levels/keys are the opposite side here)
        while size and keys:
            lp = sign * keys[-1]
            if (lp > price) if is_buy else (lp < price):
                break
            if tif == TIF_ALO:
                return
            dq = levels[lp]
            while dq and size:
                m = dq[0]
                if m[0] == 0:
                    dq.popleft()
                    continue
                q = min(size, m[0])
                m[0] -= q
                size -= q
                if m[0] == 0:
                    dq.popleft()
            if not dq:
                del levels[lp]
                keys.pop()
        if size and tif != TIF_IOC:
            entry = [size, is_buy, price, mid]
            orders[oid] = entry
            lv = olevels.get(price)
            if lv is None:
                lv = olevels[price] = deque()
                insort(okeys, price if is_buy else -price)
            lv.append(entry)

    t0 = time.perf_counter()
    for op in flow:
        if op[0] == "add":
            add(op[1], op[2], op[3], op[4], op[5], op[6])
        elif op[0] == "cancel":
            e = orders.pop(op[2], None)
            if e is not None:
                e[0] = 0
        else:
            e = orders.pop(op[2], None)
            if e is not None:
                e[0] = 0
                add(e[3], op[2], e[1], op[3], op[4], TIF_GTC)
    return time.perf_counter() - t0


@dataclass
class EngineRun:
    """What applying the workload through the real engine measured."""

    flow: list[tuple[Any, ...]] = field(default_factory=list)
    engine_s: float = 0.0
    engine_cpu_s: float = 0.0
    done: int = 0
    height: int = 0
    codes: dict[str, int] = field(default_factory=dict)
    fills: int = 0


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.actions < 1 or args.accounts < 2 or args.block_actions < 1:
        raise CliError("--actions, --accounts and --block-actions must be positive")
    accounts = [(i + 1).to_bytes(32, "big") for i in range(args.accounts)]
    validators = [(bytes([0xF0 + i]) * 32, 1) for i in range(4)]
    # The good-til order's owner is not a workload account (the workload cancels at random).
    funded = [*accounts, GOOD_TIL_OWNER] if args.good_til_order else accounts
    genesis = default_genesis(CHAIN, validators, funded, genesis_time_ms=T0)
    state = ExchangeState.from_genesis(genesis)
    if args.good_til_order:
        rest_good_til_order(state, GOOD_TIL_OWNER)
    work = Workload(state, accounts, args.seed)
    if args.gc_freeze:
        import gc

        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
    print(f"applying {args.actions} actions in blocks of {args.block_actions}...", file=sys.stderr)
    measured = apply_workload(state, work, args.actions, args.block_actions, profiler)
    if profiler is not None:
        import pstats

        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    return report(args, measured, len(state.orders))


def rest_good_til_order(state: ExchangeState, who: bytes) -> None:
    """Block 1 of the run: a stop buy of BTC-PERP at twice the price, good for 89 days. A
    waiting trigger leaves the books, so the workload's flow is the one without the flag."""
    mid = 2
    trigger = 2 * state.mstates[mid].oracle_price_ticks
    order = PlaceOrder(mid, True, KIND_STOP_MARKET, TIF_GTC, 0, 10, trigger, False, 0, 0)
    action = PlaceOrderExtended(order, T0 + 89 * 86_400_000)
    tx = Transaction(TX_VERSION, CHAIN, who, T0, 0, (action,), bytes(64))
    res = apply_block(state, BlockContext(1, T0, b""), [tx])
    if not (res.tx_results[0].actions[0].ok and state.algo.watching):
        raise CliError(f"the good-til order is not waiting: {res.tx_results[0].actions[0]!r}")


def apply_workload(
    state: ExchangeState, work: Workload, actions: int, block_actions: int, profiler: Any
) -> EngineRun:
    """Apply ``actions`` actions in blocks through ``apply_block``, timing only the engine."""
    out = EngineRun()
    out.height = state.height  # 1 after --good-til-order's block
    while out.done < actions:
        n = min(block_actions, actions - out.done)
        txs = work.block(n)
        tx_ids = [bytes(32)] * len(txs)  # ids are the caller's business; not timed here
        out.height += 1
        ctx = BlockContext(out.height, T0 + 500 * out.height, b"")
        if profiler is not None:
            profiler.enable()
        t0 = time.perf_counter()
        c0 = time.process_time()
        res = apply_block(state, ctx, txs, tx_ids)
        out.engine_s += time.perf_counter() - t0
        out.engine_cpu_s += time.process_time() - c0
        if profiler is not None:
            profiler.disable()
        out.done += n
        for tr in res.tx_results:
            for ar in tr.actions:
                out.codes[ar.code] = out.codes.get(ar.code, 0) + 1
        out.fills += sum(1 for e in res.events if e[0] == "fill")
        out.flow.extend(flow_of_block(txs, res.tx_results))
    return out


def report(args: argparse.Namespace, m: EngineRun, open_orders: int) -> dict[str, Any]:
    """Time the bare loop over the same flow, print both figures, return the result dict."""
    c0 = time.process_time()
    bare_s = bare_loop(m.flow, len(MARKETS))
    bare_cpu_s = time.process_time() - c0
    rate = m.done / m.engine_s
    bare_rate = len(m.flow) / bare_s
    print(
        f"engine: {rate:,.0f} actions/s ({m.done} actions, {m.height} blocks, {m.fills} fills, "
        f"{open_orders} open orders at the end; {m.done / m.engine_cpu_s:,.0f} per CPU second); "
        f"bare loop: {bare_rate:,.0f} actions/s",
        file=sys.stderr,
    )
    print(f"state machine build: {build_name()}", file=sys.stderr)
    print(
        "result codes: " + ", ".join(f"{k}={v}" for k, v in sorted(m.codes.items())),
        file=sys.stderr,
    )
    return {
        "bench": "matching",
        "actions": m.done,
        "actions_per_s": round(rate),
        "bare_loop_actions_per_s": round(bare_rate),
        "actions_per_cpu_s": round(m.done / m.engine_cpu_s),
        "bare_loop_actions_per_cpu_s": round(len(m.flow) / bare_cpu_s),
        "fills": m.fills,
        "blocks": m.height,
        "seed": args.seed,
        "gc_freeze": bool(args.gc_freeze),
        "build": build_name(),
    }
