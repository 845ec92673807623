"""``perpbft proof account ADDRESS``: a light client of one account.

Fetches the account's state proof from a node and checks it locally against a genesis file the
user holds (``--genesis``), so trust is never delegated to the node: Merkle proofs of the
account's balance and position keys, the certifying header at the next height, and its commit
QC signed by more than 2/3 of the genesis validators (see :mod:`cli.lightclient`). With
``--height`` the answer must also be the state at that height. Prints VERIFIED, or NOT
VERIFIED and every check that failed (exit code 1). ``--proof-file`` checks a saved answer
instead of asking a node; ``--save`` writes the answer for later checks.

``perpbft proof KIND IDS...`` does the same for one state record of any kind (``order MARKET
ORDER``, ``position ACCOUNT MARKET``, ``market MARKET``, ... one subcommand per kind of
``node.api.recordkeys.RECORD_KINDS``): the key is derived here from the ids, and the answer must
prove that key's value, or its absence, at the height.

With staking (a ``staking`` genesis section), the QC of a height in epoch e >= 2 is signed by
the set of e, not the genesis set: the command first follows the hand-overs from genesis to
that set, one proven set per epoch (``cli/handover.py``, ``GET /v1/proofs/epoch_sets/{e}``),
from the same node. A hand-over that does not verify, or a node that no longer keeps the
height it is proven at, fails the check (exit 1): ask an archive node.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from cli.errors import EXIT_OK, EXIT_REJECTED, CliError
from cli.handover import TrustedSets, follow_hand_overs
from cli.lightclient import ProofCheck, verify_account_proof, verify_record_proof
from cli.trade_common import add_common_arguments, api_get, open_client, print_json
from client.http import ApiError
from consensus.validators import ValidatorSet
from node.api.recordkeys import RECORD_KINDS, RecordKeyError, record_key, record_kind
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
    _add_proof_options(account)
    account.set_defaults(func=cmd_proof_account)
    for kind in RECORD_KINDS.values():
        record = proof_sub.add_parser(
            kind.name, help=f"fetch and verify the proof of {kind.what} (one state record)"
        )
        for field in kind.fields:
            record.add_argument(field.name, help=field.help)
        _add_proof_options(record)
        record.set_defaults(func=cmd_proof_record, record_kind=kind.name)


def _add_proof_options(parser: Any) -> None:
    parser.add_argument(
        "--height",
        type=int,
        default=None,
        help="state height the answer must be at (default: the latest, whatever it is)",
    )
    parser.add_argument(
        "--genesis",
        default=None,
        help=f"the trusted genesis.json (default: ${GENESIS_ENV})",
    )
    parser.add_argument("--proof-file", type=Path, help="verify this saved answer instead")
    parser.add_argument("--save", type=Path, help="also write the node's answer to this file")
    add_common_arguments(parser, key=True)


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


def fetch_or_load(
    args: argparse.Namespace, address: str, path: str | None = None, params: Any = None
) -> Any:
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
        if path is None:
            return api_get(client, f"/v1/proofs/accounts/{address}", height=args.height)
        return api_get(client, path, height=args.height, **(params or {}))


def certifying_set(
    args: argparse.Namespace, genesis: Genesis, body: Any
) -> tuple[ValidatorSet | None, str, list[str]]:
    """The trusted set whose QC must certify the answer's state (None: the genesis set), a
    phrase naming it, and the failures of the hand-overs followed to reach it."""
    trusted = TrustedSets(genesis)
    height = body.get("height") if isinstance(body, dict) else None
    if not isinstance(height, int) or isinstance(height, bool) or height < 0:
        return None, "the genesis validators", []  # the answer's own check reports it
    epoch = trusted.epoch_of(height + 1)
    if epoch < 2:
        return None, "the genesis validators", []
    with open_client(args) as client:

        def fetch(e: int) -> Any:
            try:
                return client.epoch_set_proof(e)
            except ApiError as exc:
                raise CliError(
                    f"hand-over to epoch {e}: {exc.code}: {exc.message}", EXIT_REJECTED
                ) from None

        failures = follow_hand_overs(trusted, height, fetch)
    epoch = trusted.epoch_of(height + 1)  # with the epoch lengths proven on the way
    phrase = f"the set of epoch {epoch} (followed from genesis over {epoch - 1} hand-overs)"
    return trusted.for_height(height + 1), phrase, failures


def _with_hand_overs(check: ProofCheck, failures: list[str]) -> ProofCheck:
    if failures:
        check.ok = False
        check.failures = failures + check.failures
    return check


def cmd_proof_account(args: argparse.Namespace) -> int:
    try:
        who = parse_address(args.address)
    except ValueError as exc:
        raise CliError(f"address: {exc}") from None
    genesis = load_trusted_genesis(args.genesis)
    body = fetch_or_load(args, who.hex())
    if args.save is not None:
        args.save.write_text(json.dumps(body, indent=2) + "\n")
    validators, signers, hand_over_failures = certifying_set(args, genesis, body)
    check = verify_account_proof(body, genesis, who, args.height, validators)
    check = _with_hand_overs(check, hand_over_failures)
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
            f"certified by a commit QC of {signers}"
        )
    else:
        print(f"NOT VERIFIED account {who.hex()} at height {check.height}:")
        for failure in check.failures:
            print(f"  - {failure}")
    return EXIT_OK if check.ok else EXIT_REJECTED


def cmd_proof_record(args: argparse.Namespace) -> int:
    kind = record_kind(args.record_kind)
    ids = {field.name: getattr(args, field.name) for field in kind.fields}
    try:
        key = record_key(kind, ids)
    except RecordKeyError as exc:
        raise CliError(str(exc)) from None
    genesis = load_trusted_genesis(args.genesis)
    body = fetch_or_load(args, "", f"/v1/proofs/records/{kind.name}", ids)
    if args.save is not None:
        args.save.write_text(json.dumps(body, indent=2) + "\n")
    validators, signers, hand_over_failures = certifying_set(args, genesis, body)
    check = verify_record_proof(body, genesis, key, kind.name, args.height, validators)
    check = _with_hand_overs(check, hand_over_failures)
    what = f"{kind.name} " + " ".join(f"{k}={v}" for k, v in ids.items())
    return _print_record_check(args, what.strip(), key, check, signers)


def _print_record_check(
    args: argparse.Namespace,
    what: str,
    key: bytes,
    check: ProofCheck,
    signers: str = "the genesis validators",
) -> int:
    value = check.values.get(key.hex())
    if args.json:
        print_json(
            {
                "verified": check.ok,
                "record": what,
                "key": key.hex(),
                "height": check.height,
                "state_root": check.state_root,
                "failures": check.failures,
                "exists": check.ok and value is not None,
                "value": value,
            }
        )
    elif check.ok:
        state = "absent" if value is None else f"value {value!r}"
        print(
            f"VERIFIED {what} at height {check.height}: {state} under state root "
            f"{check.state_root}, certified by a commit QC of {signers}"
        )
    else:
        print(f"NOT VERIFIED {what} at height {check.height}:")
        for failure in check.failures:
            print(f"  - {failure}")
    return EXIT_OK if check.ok else EXIT_REJECTED
