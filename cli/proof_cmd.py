"""``perpbft proof account ADDRESS``: a light client of one account.

Fetches the account's state proof from a node and checks it locally against a genesis file the
user holds (``--genesis``), so trust is never delegated to the node: Merkle proofs of the
account's balance and position keys, the certifying header at the next height, and its commit
QC signed by more than 2/3 of the genesis validators (see :mod:`cli.lightclient`). With
``--height`` the answer must also be the state at that height. Prints VERIFIED, or NOT
VERIFIED and every check that failed (exit code 1). ``--proof-file`` checks a saved answer
instead of asking a node; ``--save`` writes the answer for later checks.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from cli.errors import EXIT_OK, EXIT_REJECTED, CliError
from cli.lightclient import verify_account_proof
from cli.trade_common import add_common_arguments, api_get, open_client, print_json
from node.keys import parse_address
from state_machine.genesis import Genesis, GenesisError, genesis_from_json

GENESIS_ENV = "PERPBFT_GENESIS"


def register(sub: Any) -> None:
    proof = sub.add_parser("proof", help="verify state proofs locally (light client)")
    proof_sub = proof.add_subparsers(dest="proof_command", metavar="SUBCOMMAND")
    proof_sub.required = True
    account = proof_sub.add_parser(
        "account", help="fetch and verify an account's proof against a local genesis file"
    )
    account.add_argument("address")
    account.add_argument(
        "--height",
        type=int,
        default=None,
        help="state height the answer must be at (default: the latest, whatever it is)",
    )
    account.add_argument(
        "--genesis",
        default=None,
        help=f"the trusted genesis.json (default: ${GENESIS_ENV})",
    )
    account.add_argument("--proof-file", type=Path, help="verify this saved answer instead")
    account.add_argument("--save", type=Path, help="also write the node's answer to this file")
    add_common_arguments(account, key=True)
    account.set_defaults(func=cmd_proof_account)


def load_trusted_genesis(arg: str | None) -> Genesis:
    text = arg or os.environ.get(GENESIS_ENV)
    if not text:
        raise CliError(
            f"--genesis FILE is required (or set ${GENESIS_ENV}): the proof is checked against "
            "the validator set of a genesis file you trust, not one the node sends"
        )
    path = Path(text)
    try:
        return genesis_from_json(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"cannot read genesis file {path}: {exc.strerror}") from None
    except (GenesisError, UnicodeDecodeError) as exc:
        raise CliError(f"{path}: {exc}") from None


def fetch_or_load(args: argparse.Namespace, address: str) -> Any:
    if args.proof_file is not None:
        try:
            return json.loads(args.proof_file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise CliError(f"cannot read {args.proof_file}: {exc.strerror}") from None
        except ValueError:
            raise CliError(f"{args.proof_file} is not JSON") from None
    if args.height is not None and args.height < 0:
        raise CliError("--height must be non-negative")
    with open_client(args) as client:
        return api_get(client, f"/v1/proofs/accounts/{address}", height=args.height)


def cmd_proof_account(args: argparse.Namespace) -> int:
    try:
        who = parse_address(args.address)
    except ValueError as exc:
        raise CliError(f"address: {exc}") from None
    genesis = load_trusted_genesis(args.genesis)
    body = fetch_or_load(args, who.hex())
    if args.save is not None:
        args.save.write_text(json.dumps(body, indent=2) + "\n")
    check = verify_account_proof(body, genesis, who, args.height)
    if args.json:
        print_json(
            {
                "verified": check.ok,
                "address": who.hex(),
                "height": check.height,
                "state_root": check.state_root,
                "failures": check.failures,
                "values": check.values,
            }
        )
    elif check.ok:
        print(
            f"VERIFIED account {who.hex()} at height {check.height}: "
            f"{len(check.values)} keys under state root {check.state_root}, "
            f"certified by a commit QC of the genesis validators"
        )
    else:
        print(f"NOT VERIFIED account {who.hex()} at height {check.height}:")
        for failure in check.failures:
            print(f"  - {failure}")
    return EXIT_OK if check.ok else EXIT_REJECTED
