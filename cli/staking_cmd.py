"""Staking commands: validators, delegation, the active set.

``perpbft validator list|show|set|params`` read the staking routes (docs/API.md, "Staking");
``perpbft validator create|edit|unjail`` and ``perpbft delegate|undelegate`` sign a staking
action with ``--key`` (the operator's or delegator's account key, not the consensus key) and
wait for its commit; ``perpbft delegations`` shows an account's delegations and unbonding
entries. Amounts are decimal USDC ("1000", "2.5"), commission a percentage with at most two
decimals ("5", "2.25"). Tables, or one JSON object with ``--json``; exit 0 when accepted, 1
when the chain refused (its result code is printed: ``stake_too_small``,
``insufficient_delegation``, ...), 2 on a usage or connection error, like the trader commands.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cli.errors import EXIT_OK, CliError
from cli.trade_common import (
    add_common_arguments,
    address_argument,
    api_get,
    open_client,
    print_committed,
    print_json,
    print_tables,
    sign_and_submit,
    table,
)
from client.staking import (
    commission_bps,
    create_validator,
    delegate,
    edit_validator,
    undelegate,
    unjail,
)
from node.keys import parse_address


def register(sub: Any) -> None:
    validator = sub.add_parser("validator", help="validators: list, show, create, edit, unjail")
    vsub = validator.add_subparsers(dest="validator_command", metavar="SUBCOMMAND")
    vsub.required = True

    listing = vsub.add_parser("list", help="registered validators by stake")
    _common(listing, cmd_list)
    show = vsub.add_parser("show", help="one validator and its delegations")
    show.add_argument("operator", help="operator address or consensus key (64 hex)")
    show.add_argument("--limit", type=int, default=100, help="delegations shown (largest first)")
    _common(show, cmd_show)
    active = vsub.add_parser("set", help="the active set of an epoch (default: the current one)")
    active.add_argument("epoch", nargs="?", default="current")
    _common(active, cmd_set)
    params = vsub.add_parser("params", help="staking parameters, bonded and burnt stake")
    _common(params, cmd_params)

    create = vsub.add_parser("create", help="register --key's account as a validator operator")
    create.add_argument(
        "--consensus-key",
        required=True,
        help="the node's consensus public key: 64 hex, or its key file (validator_key.json)",
    )
    create.add_argument("--p2p-address", required=True, help="host:port other validators dial")
    create.add_argument("--commission", required=True, help="percent of rewards, e.g. 5 or 2.5")
    create.add_argument("--self-stake", required=True, help="USDC bonded from --key's balance")
    _common(create, cmd_create)
    edit = vsub.add_parser("edit", help="change the p2p address or commission")
    edit.add_argument("--p2p-address", help="new host:port (default: unchanged)")
    edit.add_argument("--commission", help="new percent (default: unchanged)")
    _common(edit, cmd_edit)
    unjail = vsub.add_parser("unjail", help="rejoin the candidates after the jail time")
    _common(unjail, cmd_unjail)

    delegate = sub.add_parser("delegate", help="bond USDC to a validator (yours: self-stake)")
    delegate.add_argument("operator", help="the validator's operator address")
    delegate.add_argument("amount", help="USDC, e.g. 250")
    _common(delegate, cmd_delegate)
    undelegate = sub.add_parser(
        "undelegate", help="start unbonding USDC from a validator (paid back after the period)"
    )
    undelegate.add_argument("operator", help="the validator's operator address")
    undelegate.add_argument("amount", help="USDC, e.g. 250")
    _common(undelegate, cmd_undelegate)
    delegations = sub.add_parser("delegations", help="an account's delegations and unbondings")
    delegations.add_argument("address", nargs="?", help="account address (default: --key's)")
    _common(delegations, cmd_delegations)


def _common(parser: argparse.ArgumentParser, func: Any) -> None:
    add_common_arguments(parser, key=True)
    parser.set_defaults(func=func)


# ---- parsing --------------------------------------------------------------------------------


def consensus_key(text: str) -> bytes:
    """64 hex, or a key file whose ``public_key`` is read (its seed is not)."""
    try:
        return parse_address(text)
    except ValueError:
        pass
    path = Path(text)
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        return parse_address(str(body["public_key"]))
    except OSError as exc:
        raise CliError(f"--consensus-key: neither 64 hex nor a readable file: {exc}") from None
    except (ValueError, KeyError, TypeError):
        raise CliError(f"--consensus-key: {path} is not a key file with a public_key") from None


# ---- reads ----------------------------------------------------------------------------------


def _get(args: argparse.Namespace, path: str, **params: Any) -> Any:
    with open_client(args) as client:
        return api_get(client, path, **params)


def _disabled(args: argparse.Namespace, body: dict[str, Any]) -> bool:
    if body.get("enabled") is False and not args.json:
        print(f"staking is not enabled on this chain (height {body.get('height')})")
        return True
    return False


def cmd_list(args: argparse.Namespace) -> int:
    body = _get(args, "/v1/validators")
    if args.json:
        print_json(body)
        return EXIT_OK
    if _disabled(args, body):
        return EXIT_OK
    rows = [
        [
            v["operator"],
            v["stake"],
            v["self_stake"],
            v["power"],
            f"{v['commission_bps'] / 100:g}%",
            "yes" if v["active"] else "no",
            f"until {v['jailed_until_height']}" if v["jailed"] else "no",
            v["p2p_address"] or "-",
        ]
        for v in body["validators"]
    ]
    columns = ["operator", "stake", "self", "power", "commission", "active", "jailed", "p2p"]
    print_tables(
        table(f"validators at height {body['height']}, epoch {body['epoch']}", columns, rows)
    )
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 1000:
        raise CliError("--limit must be between 1 and 1000")
    body = _get(args, f"/v1/validators/{args.operator}", limit=args.limit)
    if args.json:
        print_json(body)
        return EXIT_OK
    print(f"validator {body['operator']}")
    print(f"  consensus key {body['consensus_key']}")
    summary = table(
        f"at height {body['height']}",
        ["stake", "self", "power", "next epoch", "commission", "jailed", "p2p"],
        [
            [
                body["stake"],
                body["self_stake"],
                body["power"],
                body["next_power"],
                f"{body['commission_bps'] / 100:g}%",
                f"until {body['jailed_until_height']}" if body["jailed"] else "no",
                body["p2p_address"] or "-",
            ]
        ],
    )
    delegations = table(
        f"delegations ({body['delegations_total']})",
        ["delegator", "amount"],
        [[d["delegator"], d["amount"]] for d in body["delegations"]],
    )
    print_tables(summary, delegations)
    return EXIT_OK


def cmd_set(args: argparse.Namespace) -> int:
    body = _get(args, f"/v1/epochs/{args.epoch}")
    if args.json:
        print_json(body)
        return EXIT_OK
    rows = [[m["consensus_key"], m["operator"], m["power"]] for m in body["members"]]
    title = (
        f"epoch {body['epoch']} (heights {body['first_height']}..{body['last_height']}), "
        f"total power {body['total_power']}"
    )
    print_tables(table(title, ["consensus key", "operator", "power"], rows))
    return EXIT_OK


def cmd_params(args: argparse.Namespace) -> int:
    body = _get(args, "/v1/staking")
    if args.json:
        print_json(body)
        return EXIT_OK
    if _disabled(args, body):
        return EXIT_OK
    rows = [[k, v] for k, v in body.items() if k != "enabled"]
    print_tables(table("staking", ["parameter", "value"], rows))
    return EXIT_OK


def cmd_delegations(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        address = address_argument(args, args.address)
        body = api_get(client, f"/v1/accounts/{address}/delegations")
    if args.json:
        print_json(body)
        return EXIT_OK
    if _disabled(args, body):
        return EXIT_OK
    print(f"account {body['address']}")
    bonded = table(
        f"delegations at height {body['height']}",
        ["operator", "amount"],
        [[d["operator"], d["amount"]] for d in body["delegations"]],
    )
    unbonding = table(
        "unbonding",
        ["id", "operator", "amount", "started", "paid at height"],
        [
            [u["id"], u["operator"], u["amount"], u["start_height"], u["complete_height"]]
            for u in body["unbondings"]
        ],
    )
    print_tables(bonded, unbonding)
    return EXIT_OK


# ---- actions --------------------------------------------------------------------------------


def _submit(args: argparse.Namespace, action: Any) -> int:
    with open_client(args) as client:
        answer = sign_and_submit(args, client, [action])
    return print_committed(answer, args)


def cmd_create(args: argparse.Namespace) -> int:
    key = consensus_key(args.consensus_key).hex()
    action = create_validator(key, args.p2p_address, args.commission, args.self_stake)
    return _submit(args, action)


def cmd_edit(args: argparse.Namespace) -> int:
    """The action sets both fields; one left out keeps its current value (read first)."""
    if args.p2p_address is None and args.commission is None:
        raise CliError("give --p2p-address, --commission or both")
    address, commission = args.p2p_address, args.commission
    if commission is not None:
        commission_bps(commission)  # a usage mistake fails before the node is asked
    if address is None or commission is None:
        with open_client(args) as client:
            me = address_argument(args, None)
            current = api_get(client, f"/v1/validators/{me}")
        address = current["p2p_address"] if address is None else address
        if commission is None:
            bps = int(current["commission_bps"])
            commission = f"{bps // 100}.{bps % 100:02d}"  # percent, exactly
    return _submit(args, edit_validator(address, commission))


def cmd_unjail(args: argparse.Namespace) -> int:
    return _submit(args, unjail())


def cmd_delegate(args: argparse.Namespace) -> int:
    return _submit(args, delegate(args.operator, args.amount))


def cmd_undelegate(args: argparse.Namespace) -> int:
    return _submit(args, undelegate(args.operator, args.amount))
