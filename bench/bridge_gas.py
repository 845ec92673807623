"""Gas of the bridge contract's calls on a real EVM node (anvil), for 4 and 20 validators.

Starts anvil in a temporary directory (``make anvil``), or uses ``--rpc`` (an anvil or Hardhat
node: accounts are funded with their ``anvil_setBalance`` cheat code). For each validator-set
size N it deploys a fresh token and bridge whose N validators weigh 1 each, then measures
``withdraw`` signed by all N validators and by the smallest quorum (more than 2/3), plus
``deposit`` and ``finalize``. Gas is exact and deterministic for a given EVM version; the figure
per extra signature is the ecrecover, the power lookup and the calldata of one signature.
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path
from typing import Any

from web3 import Web3

from evm import chain, voucher
from localnet.evm import EvmUnavailable, LocalEvm, set_balance, wait_ready
from localnet.procs import Procs

ETH_WEI = 10**20
DISPUTE_PERIOD_S = 0  # finalize right away: the bench measures gas, not waiting
ACCOUNT = bytes(range(32))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rpc", default="", help="use this anvil/Hardhat node instead of one")
    parser.add_argument("--sizes", default="4,20", help="validator-set sizes (max 64)")
    parser.add_argument(
        "--base-port", type=int, default=0, help="anvil on this + 9 (default: random)")


def quorum(n: int) -> int:
    """The fewest of n equal-power validators whose power exceeds 2/3."""
    return 2 * n // 3 + 1


def measure(w3: Web3, n: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    keys = sorted((rng.randbytes(31) + b"\x01" for _ in range(n)),
                  key=lambda k: int(voucher.key_address(k), 16))
    user = rng.randbytes(31) + b"\x02"
    set_balance(w3, voucher.key_address(user), ETH_WEI)
    token = chain.deploy_token(w3, user)
    bridge = chain.deploy_bridge(w3, user, token, [voucher.key_address(k) for k in keys], [1] * n,
                                 DISPUTE_PERIOD_S)
    chain.mint(w3, user, token, voucher.key_address(user), 10**12)
    out = {"deposit": chain.deposit(w3, user, token, bridge, ACCOUNT, 10**9).gas_used}
    domain = chain.bridge_domain(w3, bridge)
    for label, signers, wid in (("withdraw_all", n, 1), ("withdraw_quorum", quorum(n), 2)):
        v = voucher.Voucher(wid, voucher.key_address(user), 1_000_000)
        sigs = [voucher.sign_voucher(k, domain, v) for k in keys[:signers]]
        out[label] = chain.submit_withdrawal(w3, user, bridge, v, sigs).gas_used
    out["finalize"] = chain.finalize_withdrawal(w3, user, bridge, 1).gas_used
    out["quorum_signatures"] = quorum(n)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = [int(s) for s in args.sizes.split(",")]
    if not all(1 <= s <= 64 for s in sizes):
        raise SystemExit("--sizes: each 1..64 (the contract's MAX_VALIDATORS)")
    if args.rpc:
        return report(wait_ready(args.rpc), sizes)
    with tempfile.TemporaryDirectory(prefix="perpbft-bench-bridge-") as tmp:
        procs = Procs(Path(tmp))
        base_port = args.base_port or random.randrange(31_000, 38_000, 10)
        try:
            w3 = LocalEvm(Path(tmp)).start(procs, base_port)
        except EvmUnavailable as exc:
            raise SystemExit(str(exc)) from None
        try:
            return report(w3, sizes)
        finally:
            procs.stop(["anvil"])


def report(w3: Web3, sizes: list[int]) -> dict[str, Any]:
    per_size = {str(n): measure(w3, n, seed=n) for n in sizes}
    for n, row in per_size.items():
        print(f"{n:>3} validators: withdraw with {n} signatures {row['withdraw_all']:,} gas, "
              f"with {row['quorum_signatures']} (quorum) {row['withdraw_quorum']:,}; "
              f"deposit {row['deposit']:,}; finalize {row['finalize']:,}")
    low, high = min(sizes), max(sizes)
    if high > low:
        extra = per_size[str(high)]["withdraw_all"] - per_size[str(low)]["withdraw_all"]
        print(f"per extra signature: {extra // (high - low):,} gas")
    return {"client": str(w3.client_version), "gas": per_size}
