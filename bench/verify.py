"""Signature verification throughput: verify_many() on a thread pool vs a bare libsodium loop.

Signs ``--count`` single-order transactions with ``--keys`` distinct keys, then verifies all of
them (1) with :func:`node.sigpool.SignaturePool.verify_many` on ``--threads`` threads and (2) in
a bare single-threaded ``crypto_sign_open`` loop, and reports both rates.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import nacl.bindings

from client.errors import CliError
from node.sigpool import SignaturePool, default_threads
from state_machine.crypto import Keypair
from state_machine.tx import KIND_LIMIT, TIF_GTC, PlaceOrder, sign_transaction


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=int, default=20_000, help="transactions to verify")
    parser.add_argument("--keys", type=int, default=100, help="distinct signing keys")
    parser.add_argument("--threads", type=int, default=default_threads(), help="pool threads")


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.count < 1 or args.keys < 1 or args.threads < 1:
        raise CliError("--count, --keys and --threads must be positive")
    keys = [Keypair(i.to_bytes(32, "big")) for i in range(1, args.keys + 1)]
    print(f"signing {args.count} transactions with {args.keys} keys...", file=sys.stderr)
    items = []
    for i in range(args.count):
        order = PlaceOrder(0, i % 2 == 0, KIND_LIMIT, TIF_GTC, 100_000 + i % 50, 1 + i % 7)
        tx = sign_transaction(keys[i % len(keys)], "perpbft-bench", 1_700_000_000_000 + i, [order])
        items.append((tx.signer, tx.signing_bytes(), tx.signature))

    with SignaturePool(args.threads) as pool:
        pool.verify_many(items[: min(len(items), 256)])  # warm the threads
        t0 = time.perf_counter()
        ok = pool.verify_many(items)
        pool_s = time.perf_counter() - t0
    assert all(ok), "a freshly signed transaction failed verification"

    t0 = time.perf_counter()
    for pk, msg, sig in items:
        nacl.bindings.crypto_sign_open(sig + msg, pk)
    raw_s = time.perf_counter() - t0

    pool_rate = args.count / pool_s
    raw_rate = args.count / raw_s
    print(
        f"verify_many: {pool_rate:,.0f}/s on {args.threads} threads; "
        f"bare loop: {raw_rate:,.0f}/s on one thread",
        file=sys.stderr,
    )
    return {
        "bench": "verify",
        "verifies_per_s": round(pool_rate),
        "raw_single_thread_per_s": round(raw_rate),
        "threads": args.threads,
    }
