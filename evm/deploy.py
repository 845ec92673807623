"""Deploy a bridge for a validator set (``python -m evm.deploy``), for a genesis ceremony or a
test chain; prints one JSON object: chain_id, bridge, token, validators, powers, block.

    python -m evm.deploy --rpc URL --key-file deployer.hex --token 0xUSDC \\
        --validator 0xADDR:POWER ... --dispute-period-s 3600

The deployer key file holds a 32-byte secp256k1 key in hex (it pays the gas and has no role in
the contract afterwards). ``--test-token`` deploys Test USD (contracts/token.vy, the deployer
mints) instead of naming an existing token. Exit codes: 0 deployed, 2 bad arguments, 1 the
chain refused (the message says why).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from eth_utils.address import is_address, to_checksum_address

from evm import chain

MAX_VALIDATORS = 64  # the contract's bound
EXIT_REFUSED, EXIT_USAGE = 1, 2


def parse_member(text: str) -> tuple[str, int]:
    """``0xADDRESS:POWER`` -> (checksum address, power)."""
    address, _, power = text.partition(":")
    if not is_address(address) or not power.isdigit() or not 0 < int(power) < 2**64:
        raise argparse.ArgumentTypeError(f"{text!r}: expected 0xADDRESS:POWER, power 1..2^64-1")
    return to_checksum_address(address), int(power)


def parse_address(text: str) -> str:
    if not is_address(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an EVM address")
    return to_checksum_address(text)


def read_key(path: Path) -> bytes:
    try:
        key = bytes.fromhex(path.read_text().strip().removeprefix("0x"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"--key-file {path}: {exc}") from None
    if len(key) != 32:
        raise SystemExit(f"--key-file {path}: a key is 32 bytes of hex")
    return key


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m evm.deploy", description=__doc__.split("\n")[0])
    p.add_argument("--rpc", required=True, help="JSON-RPC URL of the EVM node")
    p.add_argument("--key-file", type=Path, required=True, help="deployer key (hex)")
    token = p.add_mutually_exclusive_group(required=True)
    token.add_argument("--token", type=parse_address,
                       help="address of the ERC-20 stablecoin the bridge holds")
    token.add_argument("--test-token", action="store_true", help="deploy Test USD first")
    p.add_argument("--validator", type=parse_member, action="append", required=True,
                   metavar="0xADDR:POWER", help="a member of the initial set (repeat)")
    p.add_argument("--dispute-period-s", type=int, required=True)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    members: list[tuple[str, int]] = args.validator
    if len({a for a, _ in members}) != len(members) or len(members) > MAX_VALIDATORS:
        print(f"--validator: distinct addresses, at most {MAX_VALIDATORS}", file=sys.stderr)
        return EXIT_USAGE
    if args.dispute_period_s < 0:
        print("--dispute-period-s: must be >= 0", file=sys.stderr)
        return EXIT_USAGE
    key = read_key(args.key_file)
    w3 = chain.connect(args.rpc)
    try:
        token = chain.deploy_token(w3, key) if args.test_token else str(args.token)
        block = int(w3.eth.block_number)
        bridge = chain.deploy_bridge(w3, key, token, [a for a, _ in members],
                                     [p for _, p in members], args.dispute_period_s)
    except chain.CallRefused as exc:
        print(f"refused: {exc.reason}", file=sys.stderr)
        return EXIT_REFUSED
    ordered = sorted(members, key=lambda m: int(m[0], 16))
    print(json.dumps({
        "chain_id": int(w3.eth.chain_id), "bridge": bridge, "token": token, "block": block,
        "validators": [a for a, _ in ordered], "powers": [p for _, p in ordered],
        "dispute_period_s": args.dispute_period_s,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
