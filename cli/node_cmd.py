"""``perpbft init``, ``perpbft start`` and ``perpbft testnet``: node homes and running a node."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from cli.errors import EXIT_OK, CliError
from node.config import HOME_ENV, Config, HomeError, init_home, load_config, resolve_home
from node.overrides import (
    Override,
    config_fields,
    env_name,
    env_overrides,
    flag_name,
    flag_overrides,
)
from node.testnet import DEFAULT_BASE_PORT

CONFIG_DEST = "config:"  # argparse dest prefix of the config key flags


def add_home_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--home",
        default=None,
        help=f"node home directory (default: ${HOME_ENV}, else ~/.perpbft)",
    )


def load_home_config(home_arg: str | None) -> Config:
    """Resolve the home (``--home``, ``$PERPBFT_HOME``, ``~/.perpbft``) and load its config;
    any problem is a one-line CliError (exit code 2) naming the file and the key."""
    try:
        return load_config(resolve_home(home_arg))
    except HomeError as exc:
        raise CliError(str(exc)) from None


def register(sub: Any) -> None:
    init = sub.add_parser(
        "init",
        help="create a node home: config/config.toml, config/node_key.json (0600), data/",
    )
    add_home_argument(init)
    init.add_argument("--moniker", help="human-readable node name (default: the host name)")
    init.add_argument(
        "--force",
        action="store_true",
        help="rewrite config/config.toml of an initialised home (an existing node key is kept)",
    )
    init.add_argument(
        "--full-node",
        action="store_true",
        help="a full node: never votes, follows the validators, serves the API "
        '([role] mode = "full")',
    )
    init.add_argument("--json", action="store_true", help="print JSON instead of text")
    init.set_defaults(func=cmd_init)

    start = sub.add_parser(
        "start",
        help="run the node of a home until SIGINT/SIGTERM",
        description="Run the node of a home. Every config key can be set for this run by a "
        "flag (--p2p.listen HOST:PORT) or an environment variable (PERPBFT_P2P__LISTEN); "
        "a flag beats the environment, which beats the file. See: perpbft config show.",
    )
    add_home_argument(start)
    add_config_flags(start)
    start.set_defaults(func=cmd_start)

    testnet = sub.add_parser(
        "testnet", help="write the homes and shared genesis of an N-validator local network"
    )
    testnet.add_argument("--validators", type=int, default=4)
    testnet.add_argument("--out", type=Path, required=True, help="directory for the homes")
    testnet.add_argument("--chain-id", default="perpbft-localnet")
    testnet.add_argument(
        "--base-port",
        type=int,
        default=DEFAULT_BASE_PORT,
        help=f"node i uses base+10i (p2p), +1 (API), +2 (metrics); default {DEFAULT_BASE_PORT}",
    )
    testnet.add_argument("--demo-accounts", type=int, default=4)
    testnet.add_argument("--block-ms", type=int, default=500)
    testnet.add_argument(
        "--full-nodes", type=int, default=0, help="full nodes to add after the validators"
    )
    testnet.add_argument(
        "--hosts",
        default="",
        help="comma-separated host names or addresses, one per node (validators first); each "
        "node listens on its own, with the same ports on every host (default: all 127.0.0.1)",
    )
    testnet.add_argument("--force", action="store_true", help="write into a non-empty --out")
    testnet.add_argument("--json", action="store_true", help="print JSON instead of text")
    testnet.set_defaults(func=cmd_testnet)


def cmd_init(args: argparse.Namespace) -> int:
    home = resolve_home(args.home)
    try:
        result = init_home(
            home, moniker=args.moniker, force=args.force, role="full" if args.full_node else None
        )
    except HomeError as exc:
        raise CliError(str(exc)) from None
    summary = {
        "home": str(result.home),
        "node_id": result.node_id.hex(),
        "config": str(result.config_path),
        "node_key": str(result.node_key_path),
        "node_key_created": result.key_created,
        "data": str(result.data_path),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        key_note = "" if result.key_created else " (existing key kept)"
        print(f"initialised {result.home}")
        print(f"node id   {summary['node_id']}{key_note}")
        print(f"config    {result.config_path}")
        print(f"node key  {result.node_key_path}")
        print(f"data      {result.data_path}")
    return EXIT_OK


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """A --SECTION.KEY flag for every config key (node/overrides.py)."""
    group = parser.add_argument_group("config keys (override the config file and environment)")
    for dotted, (_, field) in config_fields().items():
        group.add_argument(
            flag_name(dotted),
            dest=CONFIG_DEST + dotted,
            default=None,
            metavar="VALUE",
            help=f"{field.metadata['doc']} (env {env_name(dotted)})",
        )


def config_overrides(args: argparse.Namespace) -> list[Override]:
    """The environment's and then the flags' config keys (later wins), as a usage error if
    one is not a valid value."""
    flags = {
        name.removeprefix(CONFIG_DEST): value
        for name, value in vars(args).items()
        if name.startswith(CONFIG_DEST)
    }
    try:
        return [*env_overrides(os.environ), *flag_overrides(flags)]
    except HomeError as exc:
        raise CliError(str(exc)) from None


def cmd_start(args: argparse.Namespace) -> int:
    from node.fatal import FatalExit
    from node.runner import StartError, run_home

    try:
        run_home(resolve_home(args.home), config_overrides(args))
    except StartError as exc:
        raise CliError(str(exc)) from None
    except FatalExit as exc:  # already logged as one structured event
        return exc.exit_code
    return EXIT_OK


def cmd_testnet(args: argparse.Namespace) -> int:
    from node.testnet import write_testnet
    from state_machine.genesis import GenesisError

    try:
        layout = write_testnet(
            args.out.absolute(),
            args.validators,
            chain_id=args.chain_id,
            base_port=args.base_port,
            demo_accounts=args.demo_accounts,
            block_interval_ms=args.block_ms,
            force=args.force,
            full_nodes=args.full_nodes,
            hosts=tuple(h.strip() for h in args.hosts.split(",") if h.strip()),
        )
    except (HomeError, GenesisError) as exc:
        raise CliError(str(exc)) from None
    summary = layout.summary()
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"wrote {layout.validators} validator and {layout.full_nodes} full node homes to "
            f"{layout.out}"
        )
        for node in summary["nodes"]:  # type: ignore[attr-defined]
            print(f"  {node['home']}  api {node['api']}  p2p {node['p2p']}")
        print(f"demo keys: {', '.join(str(p) for p in layout.demo_keys)}")
        print(f"start one with: perpbft start --home {layout.homes[0]}")
    return EXIT_OK
