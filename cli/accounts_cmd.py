"""Sub-accounts, agent keys and fee tiers from the command line.

``perpbft subaccount create|list|transfer``, ``perpbft agent approve|revoke|list`` and
``perpbft fees``. Like the other trader commands (cli/trade_cmd.py) they talk only to the public
API (``--node``), sign with ``--key`` (``--as`` acts for another account the key may act for),
print tables or one JSON object (``--json``) and exit 0 when accepted, 1 when refused (the code
is printed), 2 on a usage or connection error. Trading for a sub-account or as an agent is the
usual order commands with ``--as ADDRESS``.
"""

from __future__ import annotations

import argparse
from typing import Any

from cli.errors import EXIT_OK, CliError
from cli.trade_common import (
    Catalogue,
    add_common_arguments,
    address_argument,
    api_get,
    format_time_ms,
    open_client,
    print_committed,
    print_json,
    print_tables,
    sign_and_submit,
    table,
)
from node.keys import parse_address
from state_machine.accounts.actions import (
    MAX_NAME_CHARS,
    NAME_CHARS,
    ApproveAgent,
    CreateSubAccount,
    RevokeAgent,
    SubAccountTransfer,
)


def register(sub: Any) -> None:
    _register_subaccount(sub)
    _register_agent(sub)
    fees = sub.add_parser("fees", help="fee tiers, and an account's 14-day volume and tier")
    fees.add_argument("address", nargs="?", help="account address (default: --as, else --key's)")
    add_common_arguments(fees, key=True)
    fees.set_defaults(func=cmd_fees)


def _register_subaccount(sub: Any) -> None:
    parser = sub.add_parser("subaccount", help="create, list and fund sub-accounts")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    create = verbs.add_parser("create", help="create the next sub-account of --key's account")
    create.add_argument("name", help=f"a label, up to {MAX_NAME_CHARS} characters")
    add_common_arguments(create, key=True)
    create.set_defaults(func=cmd_subaccount_create)
    listing = verbs.add_parser("list", help="an account's sub-accounts")
    listing.add_argument("address", nargs="?", help="master address (default: --key's)")
    add_common_arguments(listing, key=True)
    listing.set_defaults(func=cmd_subaccount_list)
    transfer = verbs.add_parser("transfer", help="move funds between master and sub-account")
    transfer.add_argument("subaccount", help="sub-account address")
    direction = transfer.add_mutually_exclusive_group(required=True)
    direction.add_argument("--deposit", action="store_true", help="master -> sub-account")
    direction.add_argument("--withdraw", action="store_true", help="sub-account -> master")
    transfer.add_argument("--asset", default="USDC", help="asset symbol (default USDC)")
    transfer.add_argument("--amount", required=True, help="decimal amount, e.g. 250.5")
    add_common_arguments(transfer, key=True)
    transfer.set_defaults(func=cmd_subaccount_transfer)


def _register_agent(sub: Any) -> None:
    parser = sub.add_parser("agent", help="approve, revoke and list agent keys (trade only)")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    approve = verbs.add_parser("approve", help="let a key place and cancel orders for you")
    approve.add_argument("agent", help="the agent's public key (64 hex)")
    approve.add_argument("--name", default="agent", help=f"up to {MAX_NAME_CHARS} characters")
    approve.add_argument(
        "--expires-at-ms", type=int, default=0, help="block time it ends at (0: until revoked)"
    )
    add_common_arguments(approve, key=True)
    approve.set_defaults(func=cmd_agent_approve)
    revoke = verbs.add_parser("revoke", help="end an agent's approval")
    revoke.add_argument("agent", help="the agent's public key (64 hex)")
    add_common_arguments(revoke, key=True)
    revoke.set_defaults(func=cmd_agent_revoke)
    listing = verbs.add_parser("list", help="the agent keys an account approved")
    listing.add_argument("address", nargs="?", help="account address (default: --key's)")
    add_common_arguments(listing, key=True)
    listing.set_defaults(func=cmd_agent_list)


def _address(text: str, what: str) -> bytes:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise CliError(f"{what}: {exc}") from None


def _name(text: str) -> str:
    if not 0 < len(text) <= MAX_NAME_CHARS or any(c not in NAME_CHARS for c in text):
        raise CliError(f"name: 1-{MAX_NAME_CHARS} letters, digits, space, '-', '_' or '.'")
    return text


def cmd_subaccount_create(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        answer = sign_and_submit(args, client, [CreateSubAccount(_name(args.name))])
    code = print_committed(answer, args)
    result = answer["results"][-1]
    if code == EXIT_OK and not args.json:
        print(f"sub-account {result['order_id']}: {result['message']}")
    return code


def cmd_subaccount_list(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        body = api_get(client, f"/v1/accounts/{address_argument(args, args.address)}/subaccounts")
    if args.json:
        print_json(body)
        return EXIT_OK
    print(f"account {body['address']}")
    if body["master"] is not None:
        print(f"sub-account {body['index']} of {body['master']}")
    rows = [[s["index"], s["name"], s["address"]] for s in body["subaccounts"]]
    title = f"sub-accounts ({len(rows)} of at most {body['max_subaccounts']})"
    print_tables(table(title, ["index", "name", "address"], rows))
    return EXIT_OK


def cmd_subaccount_transfer(args: argparse.Namespace) -> int:
    sub = _address(args.subaccount, "sub-account")
    with open_client(args) as client:
        asset_id, atoms = Catalogue.fetch(client).asset_atoms(args.asset, args.amount)
        action = SubAccountTransfer(sub, bool(args.deposit), asset_id, atoms)
        answer = sign_and_submit(args, client, [action])
    return print_committed(answer, args)


def cmd_agent_approve(args: argparse.Namespace) -> int:
    agent = _address(args.agent, "agent")
    if not 0 <= args.expires_at_ms < 2**64:
        raise CliError("--expires-at-ms must be a block time in ms (0: no expiry)")
    action = ApproveAgent(agent, _name(args.name), args.expires_at_ms)
    with open_client(args) as client:
        answer = sign_and_submit(args, client, [action])
    return print_committed(answer, args)


def cmd_agent_revoke(args: argparse.Namespace) -> int:
    agent = _address(args.agent, "agent")
    with open_client(args) as client:
        answer = sign_and_submit(args, client, [RevokeAgent(agent)])
    return print_committed(answer, args)


def cmd_agent_list(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        body = api_get(client, f"/v1/accounts/{address_argument(args, args.address)}/agents")
    if args.json:
        print_json(body)
        return EXIT_OK
    print(f"account {body['address']}")
    if body["agent_of"] is not None:
        print(f"this key is the agent of {body['agent_of']}")
    rows = [
        [a["name"], a["agent"], format_time_ms(a["expires_at_ms"]) or "never",
         "expired" if a["expired"] else "active"]
        for a in body["agents"]
    ]  # fmt: skip
    title = f"agents ({len(rows)} of at most {body['max_agents']})"
    print_tables(table(title, ["name", "agent", "expires (UTC)", "state"], rows))
    return EXIT_OK


def cmd_fees(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        address = address_argument(args, args.address)
        body = api_get(client, f"/v1/accounts/{address}/fees")
    if args.json:
        print_json(body)
        return EXIT_OK
    print(f"account {body['address']}")
    tier = body["tier"]
    rates = body["rates"]
    where = "the markets' own rates" if tier is None else (
        f"tier {tier}: taker {rates['taker_fee_ppm']} ppm, maker {rates['maker_fee_ppm']} ppm"
    )  # fmt: skip
    print(f"14-day volume {body['volume_14d']} USDC, {where}")
    rows = [[t["tier"], t["min_volume"], t["taker_fee_ppm"], t["maker_fee_ppm"]]
            for t in body["tiers"]]  # fmt: skip
    print_tables(table("fee tiers", ["tier", "from 14-day volume", "taker ppm", "maker ppm"], rows))
    return EXIT_OK
