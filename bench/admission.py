"""Admission CPU per transaction in one node: gossip frames of K txs, and client submissions.

A real :class:`node.node.Node` (storage open in a temporary directory, its admission task
running, no peers) admits ``--txs`` fresh single-order transactions signed by ``--accounts``
genesis accounts, two ways:

* ``gossip``: as a peer's frames of ``--frame-txs`` transactions each (``_on_tx_gossip``, then
  the admission task), for every K given;
* ``submit``: one by one through ``Node.submit``, as the API's ``POST /v1/txs`` hands them over.

The figure is the process's CPU time (user + system, all threads: the signature pool too)
per admitted transaction, so it holds on a loaded machine where wall time does not. It leaves
out what is outside the node object: TLS and framing, HTTP. One Ed25519 check (about 57 us)
is the floor of every path.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
from pathlib import Path
from typing import Any

import trio

from client.errors import CliError
from node.config import Config
from node.node import Node, now_ms
from state_machine.codec import encode
from state_machine.crypto import Keypair, sha256
from state_machine.genesis import default_genesis
from state_machine.tx import KIND_LIMIT, TIF_GTC, PlaceOrder, sign_transaction

VALIDATOR = Keypair(sha256(b"perpbft-bench-admission/validator"))
PEER = Keypair(sha256(b"perpbft-bench-admission/peer")).public_key


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--txs", type=int, default=4_000, help="transactions per measurement")
    parser.add_argument("--accounts", type=int, default=64, help="signing accounts")
    parser.add_argument(
        "--frame-txs", default="1,16,64", help="gossip frame sizes to measure, comma separated"
    )
    parser.add_argument("--repeat", type=int, default=2, help="measurements of each kind")


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Setup:
    def __init__(self, accounts: int) -> None:
        self.keys = [
            Keypair(sha256(f"perpbft-bench-admission/{i}".encode())) for i in range(accounts)
        ]
        self.genesis = default_genesis(
            "perpbft-bench", [(VALIDATOR.public_key, 1)], [k.public_key for k in self.keys]
        )
        self.nonce_base = now_ms()

    def txs(self, count: int) -> list[bytes]:
        """Fresh transactions (new nonces on every call), accounts round robin."""
        order = PlaceOrder(2, True, KIND_LIMIT, TIF_GTC, 6_000_000, 1)
        out = []
        n = len(self.keys)
        for i in range(count):
            key = self.keys[i % n]
            out.append(
                sign_transaction(
                    key, self.genesis.chain_id, self.nonce_base + i // n, [order]
                ).to_wire()
            )
        self.nonce_base += count // n + 1
        return out


async def measure(setup: Setup, kind: str, frame_txs: int, count: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="perpbft-bench-admission-") as home:
        node = Node(Config(home=Path(home)), setup.genesis, VALIDATOR)
        node.chain = node.open_chain()
        raws = setup.txs(count)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(node._admission_loop)
                start = cpu_s()
                if kind == "gossip":
                    for i in range(0, count, frame_txs):
                        node._on_tx_gossip(PEER, encode(raws[i : i + frame_txs]))
                        await trio.sleep(0)  # the peer-inbound task yields between frames
                    while node.mempool.admitted_total + sum(node.mempool.rejected.values()) < count:
                        await trio.sleep(0.001)
                else:
                    for raw in raws:
                        await node.submit(raw)
                used = cpu_s() - start
                nursery.cancel_scope.cancel()
        finally:
            node.sigpool.close()
            node.chain.close()
        admitted = node.mempool.admitted_total
        if admitted != count:
            raise CliError(
                f"{count - admitted} transactions were not admitted: {node.mempool.rejected}"
            )
        return {
            "kind": kind,
            "frame_txs": frame_txs if kind == "gossip" else None,
            "cpu_us_per_tx": round(1e6 * used / count, 1),
        }


def run(args: argparse.Namespace) -> dict[str, Any]:
    try:
        frames = [int(k) for k in args.frame_txs.split(",")]
    except ValueError:
        raise CliError("--frame-txs must be integers separated by commas") from None
    if (
        args.txs < 1
        or args.accounts < 1
        or args.repeat < 1
        or any(not 1 <= k <= 512 for k in frames)
    ):
        raise CliError("--txs, --accounts and --repeat must be positive, --frame-txs 1..512")
    if args.txs // args.accounts > 500:
        raise CliError("over 500 transactions per account: add --accounts")
    setup = Setup(args.accounts)
    results = []
    for _ in range(args.repeat):
        for k in frames:
            results.append(trio.run(measure, setup, "gossip", k, args.txs))
            print(f"gossip frames of {k}: {results[-1]['cpu_us_per_tx']} us/tx", file=sys.stderr)
        results.append(trio.run(measure, setup, "submit", 1, args.txs))
        print(f"client submissions: {results[-1]['cpu_us_per_tx']} us/tx", file=sys.stderr)
    return {"bench": "admission", "txs": args.txs, "results": results}
